"""The operator CLI and the health endpoints."""

from __future__ import annotations

import json

from conftest import run_cli
from redis.client import NEVER_DECODE

from shared import keys


def test_keys_create_list_credit_revoke(stack_env, client, r):
    out = run_cli(
        stack_env, "keys", "create", "--plan", "pro", "--credits", "12000", "--name", "acme", "--json"
    )
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    assert made["plan"] == "pro" and made["credits"] == 12000 and made["key"].startswith("aq_")
    # only a hash is stored: the secret appears nowhere in Redis
    for k in r.keys("*"):
        if r.type(k) == "hash":
            assert made["key"] not in r.hvals(k)
        elif r.type(k) == "string":  # read as bytes: fingerprint blobs are binary
            assert r.execute_command("GET", k, **{NEVER_DECODE: []}) != made["key"].encode()
        assert made["key"] not in k
    assert client.get("/v1/assets", headers={"x-api-key": made["key"]}).status_code == 200

    listed = json.loads(run_cli(stack_env, "keys", "list", "--json").stdout)
    assert [(k["id"], k["credits"], k["name"]) for k in listed] == [(made["id"], 12000, "acme")]

    out = run_cli(stack_env, "keys", "credit", made["id"], "500")
    assert out.returncode == 0 and "12500" in out.stdout
    assert keys.balance(r, made["id"]) == 12500
    out = run_cli(stack_env, "keys", "credit", made["id"], "-99999")
    assert out.returncode == 2 and keys.balance(r, made["id"]) == 12500

    assert run_cli(stack_env, "keys", "revoke", made["id"]).returncode == 0
    assert client.get("/v1/assets", headers={"x-api-key": made["key"]}).status_code == 401


def test_cli_refuses_bad_input(stack_env, clean):
    assert run_cli(stack_env, "keys", "create", "--plan", "gold", "--name", "x").returncode != 0
    out = run_cli(stack_env, "keys", "revoke", "key_nope")
    assert out.returncode == 2 and "Cannot find key" in out.stderr


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readyz_reports_a_dead_s3(settings, clean):
    from web import create_app

    app = create_app(settings.replace(s3_endpoint="127.0.0.1:1"))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["statusCode"] == 503 and "s3" in body["message"]


def test_readyz_reports_a_dead_redis(settings, clean):
    from web import create_app

    app = create_app(settings.replace(redis_url="redis://127.0.0.1:1/0"))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503 and "redis" in resp.get_json()["message"]


def test_readyz_reports_a_dead_broker(settings, clean):
    """A web process whose broker is gone is not ready (every submission
    would be a 503), though its Redis and S3 answer."""
    from ops import services
    from web import create_app

    dead = f"redis://127.0.0.1:{services.free_port()}/1"
    resp = create_app(settings.replace(broker_url=dead)).test_client().get("/readyz")
    body = resp.get_json()
    assert resp.status_code == 503 and body["code"] == "not_ready"
    assert "broker" in body["message"] and "redis:" not in body["message"]


def test_readyz_lists_the_workers_online_per_queue(client, worker):
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the worker records itself every 10 s
        body = client.get("/readyz").get_json()
        if body["workers"]:
            break
        time.sleep(0.5)
    assert body["broker"] == "ok"
    assert {q: body["workers"][q]["online"] for q in ("analysis", "heavy", "maintenance")} == {
        "analysis": 1,
        "heavy": 1,
        "maintenance": 1,
    }
    assert body["workers"]["heavy"]["missing_models"] == 0


def test_openapi_lists_every_route_and_operation(client):
    from shared import operations

    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    for op in operations.OPERATIONS.values():
        assert (f"/v1/{op.name}" in spec["paths"]) == op.public
    for path in (
        "/v1/assets/upload",
        "/assets",
        "/v1/jobs/{job_id}",
        "/readyz",
        "/tasks",
        "/tasks/{task_id}",
        "/v1/account",
    ):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_a_worker_without_its_models_says_so_and_fails_jobs_cleanly(
    stack_env, service_dir, tmp_path, client, api_key, upload, r, celery_app
):
    """No 500 per job: the worker logs the missing model at start, readiness
    names it, and a job that needs it fails 503 model_missing, refunded."""
    import time

    from audiogen import wav
    from conftest import ROOT, _child_env, run_cli

    from ops import services
    from shared import fleet, keys

    empty = tmp_path / "models"
    empty.mkdir()
    log = service_dir / "worker-nomodels.log"
    env = _child_env(stack_env, {"AUDIOQ_MODEL_DIR": str(empty)})
    cmd = services.celery_worker_cmd(concurrency=1, queues="heavy", name="nomodels")
    p = services.spawn(cmd, log, env=env, cwd=ROOT)
    others: list[str] = []
    try:
        deadline = time.monotonic() + 90
        me = None
        while time.monotonic() < deadline and me is None:
            me = next((w for w in fleet.online(r) if w.node.startswith("nomodels@")), None)
            time.sleep(0.5)
        assert me is not None, log.read_text()[-2000:]
        assert me.missing_models == ["basic-pitch-nmp.onnx", "spleeter-2stems.onnx"]
        assert "models missing" in log.read_text() and "audioq models fetch" in log.read_text()
        health = run_cli(stack_env, "health", "worker")
        assert health.returncode == 1 and "basic-pitch-nmp.onnx" in health.stdout
        # Only this worker takes heavy jobs meanwhile (the session's worker may be up too).
        others = [n for reply in celery_app.control.ping(timeout=1) for n in reply if n != me.node]
        if others:
            celery_app.control.cancel_consumer("heavy", destination=others, reply=True, timeout=5)
        key = api_key(credits=50)
        aid = upload(key, wav(2.0, seed=8))
        h = {**key.headers, "Prefer": "wait=60"}
        resp = client.post("/v1/transcribe", json={"asset_id": aid}, headers=h)
        body = resp.get_json()
        assert resp.status_code == 503 and body["code"] == "model_missing", body
        assert keys.balance(r, key.id) == 50  # refunded
    finally:
        if others:
            celery_app.control.add_consumer("heavy", destination=others, reply=True, timeout=5)
        services.stop_process(p)
