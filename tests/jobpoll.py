"""Polling a job through the API until it ends, as a client would."""

from __future__ import annotations

import time


def poll_progress(client, key, job_id: str, timeout: float = 120) -> tuple[dict, list[float]]:
    """The finished job document and every progress value seen on the way."""
    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = client.get(f"/v1/jobs/{job_id}", headers=key.headers).get_json()
        seen.append(doc["progress"])
        if doc["status"] in ("completed", "failed", "cancelled"):
            return doc, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


def poll(client, key, job_id: str, timeout: float = 120) -> dict:
    """The finished job document."""
    return poll_progress(client, key, job_id, timeout)[0]
