"""Celery workers: ``celery -A workers.app worker -Q analysis,heavy,maintenance``."""
