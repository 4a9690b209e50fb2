"""One task module per domain; tasks are thin and take ids."""
