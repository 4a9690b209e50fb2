"""Code that both the web front end and the workers import."""
