"""GET /v1/jobs/{id}/events: server-sent events of a job's status and
progress, through gunicorn's gevent workers as production runs them, with a
real worker separating stems; and the stream's time bound, keep-alives and
reconnection (Last-Event-ID) on a job no worker takes."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import soundfile as sf
import synth
from audioq_client import sse

from shared import assets as assets_mod
from shared import jobs, operations

SR = 44100


@pytest.fixture(scope="module")
def mix_wav() -> bytes:
    x, _ = synth.separation_mix(24.0, sr=SR, seed=5)  # a few segments: progress between queued and done
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@dataclass
class Event:
    event: str  # "" for a comment line
    data: dict
    id: str
    comment: str


def parsed(lines) -> list[Event]:
    """The stream's events with their JSON data decoded (the client's parser)."""
    return [Event(e.event, json.loads(e.data) if e.data else {}, e.id, e.comment) for e in sse.parse(lines)]


def events(http: httpx.Client, path: str, headers: dict[str, str]) -> list[Event]:
    with http.stream("GET", path, headers=headers, timeout=120) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["cache-control"] == "no-cache"
        return parsed(resp.iter_lines())


def test_events_follow_a_job_to_its_end_through_gevent_workers(live_api, worker, api_key, mix_wav):
    key = api_key(credits=100)
    with httpx.Client(base_url=live_api, headers=key.headers) as http:
        up = http.post("/v1/assets/upload", content=mix_wav, headers={"Content-Type": "audio/wav"})
        assert up.status_code == 201, up.text
        sub = http.post("/v1/separate/2stem", json={"asset_id": up.json()["asset_id"]})
        assert sub.status_code == 202, sub.text
        job_id = sub.json()["job_id"]

        got = events(http, f"/v1/jobs/{job_id}/events", {})
        progress = [e for e in got if e.event == "progress"]
        assert progress and got[-1].event == "done"
        assert [e.data["job_id"] for e in progress] == [job_id] * len(progress)
        values = [e.data["progress"] for e in progress]
        assert values == sorted(values), values
        statuses = [e.data["status"] for e in progress]
        assert statuses[-1] == "completed" and values[-1] == 1.0
        assert set(statuses) <= {"queued", "running", "completed"}
        assert len(progress) >= 3, statuses  # saw it queued or running, then moving on
        assert len({e.id for e in progress}) == len(progress)  # every event a new state
        doc = got[-1].data
        assert doc["job_id"] == job_id and doc["status"] == "completed"
        assert set(doc["result"]["stems"]) == {"vocals", "accompaniment"}
        shown = http.get(f"/v1/jobs/{job_id}").json()
        # the same document, but for links presigned at each read and the request's _meta
        signed_anew = ("result", "_meta")
        assert {k: v for k, v in doc.items() if k not in signed_anew} == {
            k: v for k, v in shown.items() if k not in signed_anew
        }
        assert doc["result"]["stems"].keys() == shown["result"]["stems"].keys()

        # Reconnecting after the end with the last id: nothing old again, just the document.
        again = events(http, f"/v1/jobs/{job_id}/events", {"Last-Event-ID": got[-1].id})
        assert [e.event for e in again] == ["done"] and again[0].data["status"] == "completed"

        # Unknown (or another tenant's) job: a JSON 404, not a stream.
        missing = http.get("/v1/jobs/job_doesnotexist000000000000/events")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/json"
        assert missing.json()["code"] == "job_not_found"
        assert http.get(f"/v1/jobs/{job_id}/events", headers={"x-api-key": "aq_wrong"}).status_code == 401


@pytest.fixture
def bounded_client(settings, clean):
    """The API with a 1.5 s stream bound and a keep-alive every 0.4 s."""
    from web import create_app

    app = create_app(settings.replace(events_max_s=1.5, events_heartbeat_s=0.4))
    app.config["TESTING"] = True
    return app.test_client()


def idle_job(r, key, asset_id: str) -> jobs.Job:
    """A job that is recorded but never sent to a queue: it stays queued."""
    asset = assets_mod.get(r, key.id, asset_id)
    return jobs.submit(
        r,
        owner=key.id,
        op=operations.get("separate/2stem"),
        options={},
        asset_id=asset.id,
        sha256=asset.sha256,
        cost=0,
        billed=False,
        trace_id="t",
        queue_timeout_s=600,
        job_ttl_s=600,
    ).job


def test_open_streams_do_not_hold_the_api_process(live_api, api_key, upload, r):
    """The test API runs one gevent worker process: with streams open on it,
    other requests are still answered at once."""
    key = api_key()
    job = idle_job(r, key, upload(key, synth_wav()))
    streams = [httpx.Client(base_url=live_api, headers=key.headers) for _ in range(3)]
    try:
        opened = []
        for http in streams:
            cm = http.stream("GET", f"/v1/jobs/{job.id}/events", timeout=30)
            resp = cm.__enter__()
            opened.append(cm)
            lines = resp.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: progress"
        with httpx.Client(base_url=live_api, headers=key.headers, timeout=5) as other:
            assert other.get(f"/v1/jobs/{job.id}").json()["status"] == "queued"
            assert other.get("/healthz").status_code == 200
    finally:
        for cm in opened:
            cm.__exit__(None, None, None)
        for http in streams:
            http.close()


def test_an_idle_stream_keeps_alive_then_ends_for_a_reconnect(bounded_client, api_key, upload, r, settings):
    key = api_key()
    job = idle_job(r, key, upload(key, synth_wav()))

    def read(headers: dict[str, str]) -> list[Event]:
        resp = bounded_client.get(f"/v1/jobs/{job.id}/events", headers={**key.headers, **headers})
        assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
        return parsed(resp.get_data(as_text=True).split("\n"))

    first = read({})
    assert [e.event for e in first if e.event] == ["progress"]
    assert first[0].data == {"job_id": job.id, "status": "queued", "progress": 0.0}
    comments = [e.comment for e in first if not e.event]
    assert comments.count("keep-alive") >= 2
    assert "reconnect" in comments[-1]  # ended by the bound, not by the job

    # Reconnecting with the last id seen: no repeat of the unchanged state.
    assert [e.event for e in read({"Last-Event-ID": first[0].id}) if e.event] == []

    bounded_client.delete(f"/v1/jobs/{job.id}", headers=key.headers)
    after = read({"Last-Event-ID": first[0].id})
    assert [(e.event, e.data["status"]) for e in after if e.event] == [
        ("progress", "cancelled"),
        ("done", "cancelled"),
    ]


def synth_wav() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, synth.chord_progression("A", "minor", 2.0, sr=22050, seed=1), 22050, format="WAV")
    return buf.getvalue()
