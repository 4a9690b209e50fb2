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


def test_openapi_lists_every_route_and_operation(client):
    from shared import operations

    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    for op in operations.OPERATIONS.values():
        assert (f"/v1/{op.name}" in spec["paths"]) == op.public
    for path in (
        "/v1/assets/upload",
        "/assets",
        "/v1/jobs/{id}",
        "/readyz",
        "/tasks",
        "/tasks/{id}",
        "/v1/account",
    ):
        assert path in spec["paths"]
    page = client.get("/docs")
    assert page.status_code == 200 and b"/v1/bpm" in page.data
