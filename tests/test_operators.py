"""What operators see: Prometheus /metrics (under several gunicorn worker
processes), access logs carrying the trace id (text and JSON), and the
operator CLI's jobs and queues commands, against the real stack."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from audiogen import wav
from conftest import ROOT, _child_env, run_cli

from ops import services
from shared.storage import original_name


@pytest.fixture
def api_two_workers(stack_env, service_dir, clean):
    """The API under gunicorn with two worker processes (metrics must sum
    them), JSON logs; yields (url, log path)."""
    port = services.free_port()
    log = service_dir / f"gunicorn-2w-{port}.log"
    env = _child_env(stack_env, {"AUDIOQ_LOG_FORMAT": "json"})
    p = services.spawn(services.gunicorn_cmd(f"127.0.0.1:{port}", workers=2), log, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        services.wait_http(url + "/healthz", p, log)
        yield url, log
    finally:
        services.stop_process(p)


def scrape(url: str) -> dict[str, float]:
    """``{'name{label="v",...}': value}`` from the Prometheus text format."""
    out = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _wait(client, key, job_id: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        doc = client.get(f"/v1/jobs/{job_id}", headers=key.headers).get_json()
        if doc["status"] in ("completed", "failed", "cancelled"):
            return doc
        time.sleep(0.1)
    raise AssertionError(doc)


def test_metrics_count_jobs_fleet_wide_and_requests_across_processes(
    api_two_workers, client, api_key, upload, worker, storage
):
    url, _ = api_two_workers
    key = api_key(credits=50)
    h = {**key.headers, "Prefer": "respond-async"}
    done = []
    for seed in (1, 2, 3):
        aid = upload(key, wav(1.0, seed=seed))
        done.append(client.post("/v1/bpm", json={"asset_id": aid}, headers=h).get_json()["job_id"])
    broken = upload(key, wav(1.0, seed=4))
    storage.delete(original_name(broken))  # its job will fail (our side: refunded)
    done.append(client.post("/v1/bpm", json={"asset_id": broken}, headers=h).get_json()["job_id"])
    statuses = [_wait(client, key, j)["status"] for j in done]
    assert statuses == ["completed", "completed", "completed", "failed"]
    for _ in range(20):
        assert httpx.get(f"{url}/v1/account", headers=key.headers, timeout=30).status_code == 200

    m = scrape(url)
    assert m['audioq_jobs_total{op="bpm",status="submitted"}'] == 4
    assert m['audioq_jobs_total{op="bpm",status="completed"}'] == 3
    assert m['audioq_jobs_total{op="bpm",status="failed"}'] == 1
    assert m['audioq_job_run_seconds_count{op="bpm"}'] == 4
    assert m['audioq_job_queue_wait_seconds_count{op="bpm"}'] == 4
    assert m["audioq_credits_charged_total"] == 4 and m["audioq_credits_refunded_total"] == 1
    assert m["audioq_assets"] == 4 and m["audioq_asset_bytes"] > 0
    # Both gunicorn processes answered some of the 20; the sum is exact.
    assert m['audioq_http_requests_total{method="GET",route="/v1/account",status="200"}'] == 20
    assert m['audioq_http_request_seconds_count{route="/v1/account"}'] == 20
    deadline = time.monotonic() + 20  # workers record themselves every 10 s (the test flushed Redis)
    while m['audioq_workers_online{queue="heavy"}'] < 1 and time.monotonic() < deadline:
        time.sleep(1)
        m = scrape(url)
    assert m['audioq_workers_online{queue="heavy"}'] >= 1
    for name in m:  # labels stay few: route templates, never ids
        labels = name.partition("{")[2]
        assert "job_" not in labels and "afa_" not in labels and "key_" not in labels, name


def test_queue_depth_and_oldest_age_while_no_worker_takes_jobs(
    api_two_workers, client, api_key, upload, worker, celery_app
):
    url, _ = api_two_workers
    key = api_key(credits=50)
    aid = upload(key, wav(1.0, seed=11))
    celery_app.control.cancel_consumer("analysis", reply=True, timeout=5)
    try:
        h = {**key.headers, "Prefer": "respond-async"}
        ids = [
            client.post("/v1/lufs", json={"asset_id": aid}, headers=h).get_json()["job_id"] for _ in range(5)
        ]
        first = scrape(url)
        time.sleep(1.5)
        second = scrape(url)
        assert first['audioq_queue_depth{queue="analysis"}'] >= 5  # (+ the fingerprint task of the upload)
        assert first['audioq_queue_jobs_waiting{queue="analysis"}'] == 5
        assert second['audioq_queue_oldest_age_seconds{queue="analysis"}'] >= (
            first['audioq_queue_oldest_age_seconds{queue="analysis"}'] + 1.0
        )
        cli = run_cli(_env_of(client), "queues", "--json")
        assert cli.returncode == 0, cli.stderr
        row = next(q for q in json.loads(cli.stdout) if q["queue"] == "analysis")
        assert row["jobs_waiting"] == 5 and row["oldest_age_s"] > 1.0
    finally:
        celery_app.control.add_consumer("analysis", reply=True, timeout=5)
    assert [_wait(client, key, j)["status"] for j in ids] == ["completed"] * 5
    assert scrape(url)['audioq_queue_jobs_waiting{queue="analysis"}'] == 0


def _env_of(client) -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k.startswith("AUDIOQ_")}


def test_access_log_lines_carry_the_callers_trace_id(api_two_workers, api_key):
    url, log = api_two_workers
    key = api_key()
    trace = "trace-for-the-log-1234"
    resp = httpx.get(f"{url}/v1/assets", headers={**key.headers, "X-Request-Id": trace}, timeout=30)
    assert resp.status_code == 200 and resp.headers["X-Trace-Id"] == trace
    httpx.get(f"{url}/v1/jobs/job_nope", headers={**key.headers, "X-Request-Id": trace + "-2"}, timeout=30)
    deadline = time.monotonic() + 10
    lines: list[dict] = []
    while time.monotonic() < deadline and len(lines) < 2:
        lines = [
            json.loads(line)
            for line in log.read_text().splitlines()
            if line.startswith("{") and '"audioq.access"' in line and trace in line
        ]
        time.sleep(0.2)
    ok, missing = sorted(lines, key=lambda d: d["trace_id"])
    assert ok["method"] == "GET" and ok["route"] == "/v1/assets" and ok["status"] == 200
    assert ok["key_id"] == key.id and ok["duration_ms"] >= 0 and ok["level"] == "INFO"
    assert missing["route"] == "/v1/jobs/<job_id>" and missing["status"] == 404
    assert key.secret not in log.read_text()  # the key itself is never logged


def test_text_access_log_of_the_session_api(live_api, api_key, service_dir):
    key = api_key()
    httpx.get(f"{live_api}/v1/assets", headers={**key.headers, "X-Request-Id": "text-trace-0042"}, timeout=30)
    time.sleep(0.5)
    text = (service_dir / "gunicorn.log").read_text()
    assert re.search(
        r"audioq\.access trace=text-trace-0042 job=- GET /v1/assets 200 [\d.]+ms key=" + key.id, text
    )


def test_operator_cli_lists_shows_and_cancels_jobs(stack_env, client, api_key, upload, worker, celery_app):
    key = api_key(credits=20)
    aid = upload(key, wav(1.0, seed=21))
    done = client.post(
        "/v1/bpm", json={"asset_id": aid}, headers={**key.headers, "Prefer": "wait=60"}
    ).get_json()
    celery_app.control.cancel_consumer("analysis", reply=True, timeout=5)
    try:
        queued = client.post(
            "/v1/key", json={"asset_id": aid}, headers={**key.headers, "Prefer": "respond-async"}
        ).get_json()
        rows = json.loads(run_cli(stack_env, "jobs", "list", "--key", key.id, "--json").stdout)
        assert [r["job_id"] for r in rows] == [queued["job_id"], done["job_id"]]
        only = json.loads(
            run_cli(stack_env, "jobs", "list", "--status", "queued", "--op", "key", "--json").stdout
        )
        assert [r["job_id"] for r in only] == [queued["job_id"]]
        shown = json.loads(run_cli(stack_env, "jobs", "show", done["job_id"], "--json").stdout)
        assert shown["status"] == "completed" and shown["attempts"] == 1 and shown["worker"]
        out = run_cli(stack_env, "jobs", "cancel", queued["job_id"])
        assert out.returncode == 0 and "was queued; refunded" in out.stdout
        assert (
            client.get(f"/v1/jobs/{queued['job_id']}", headers=key.headers).get_json()["status"]
            == "cancelled"
        )
    finally:
        celery_app.control.add_consumer("analysis", reply=True, timeout=5)


def test_histogram_buckets_read_back_what_the_scripts_wrote(r, api_key, upload, client, worker):
    """Buckets are counted by Lua and read by Python: every observation lands
    in some bucket, and the +Inf bucket equals the count."""
    from shared import metrics

    key = api_key(credits=10)
    for seed in (31, 32):
        aid = upload(key, wav(1.0, seed=seed))
        client.post("/v1/lufs", json={"asset_id": aid}, headers={**key.headers, "Prefer": "wait=60"})
    snap = metrics.snapshot(r, ["lufs"])
    for hist in (snap.run["lufs"], snap.wait["lufs"]):
        assert hist.count == 2 and hist.buckets[-1] == (float("inf"), 2)
        assert [c for _, c in hist.buckets] == sorted(c for _, c in hist.buckets)
    raw = r.hgetall(metrics.run_key("lufs"))
    slots = {k for k in raw if k not in ("count", "sum")}
    assert slots <= {metrics._slot(b) for b in metrics.RUN_BUCKETS} | {"+Inf"}, slots
