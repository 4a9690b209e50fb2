"""Operator tooling: the ``audioq`` command, the local stack launcher, model
set-up and the gunicorn settings (kept here, outside ``web``, so gunicorn can
load them without importing the app before gevent patches the standard library)."""
