"""Audio algorithms: pure functions over numpy arrays, returning dataclasses.

No Celery, Redis or S3 in here, so each can be tested and benchmarked alone.
"""
