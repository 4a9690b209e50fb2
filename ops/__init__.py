"""Operator tooling: the ``audioq`` command and the local stack launcher."""
