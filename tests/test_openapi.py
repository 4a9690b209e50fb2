"""The OpenAPI document: valid OpenAPI 3.1, complete (every Flask route is
documented and every documented path exists), and true — schemathesis fuzzes
the live API (gunicorn + a real worker) against it and finds no 5xx and no
answer that contradicts it."""

from __future__ import annotations

import os
import re
import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared import operations
from shared.settings import Settings
from web import openapi

# Pages for people, not API routes: the playground and the docs page itself
# (and their static files).
UNDOCUMENTED = {"/", "/playground", "/docs", "/docs/getting-started.md"}


def _template(rule: str) -> str:
    """``/v1/jobs/<job_id>`` and ``/v1/jobs/{job_id}`` -> ``/v1/jobs/{}``."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", rule)


def test_document_is_valid_openapi_31(client):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on any error


def test_every_route_is_documented_and_every_documented_path_exists(app, client):
    doc = client.get("/openapi.json").get_json()
    documented = {(_template(p), m.upper()) for p, item in doc["paths"].items() for m in item}
    served = {
        (_template(rule.rule), m)
        for rule in app.url_map.iter_rules()
        if not rule.endpoint.endswith("static") and rule.rule not in UNDOCUMENTED
        for m in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served - documented == set(), "routes missing from web/openapi.py"
    assert documented - served == set(), "documented routes that do not exist"


def test_every_operation_has_its_result_schema_and_options(client):
    doc = client.get("/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    for op in operations.OPERATIONS.values():
        assert schemas[openapi.result_name(op)]["required"], op.name
        if not op.public:
            continue
        post = doc["paths"][f"/v1/{op.name}"]["post"]
        query = {p["name"] for p in post["parameters"] if "name" in p}
        assert set(op.options) <= query
        assert set(op.options) <= set(
            post["requestBody"]["content"]["application/json"]["schema"]["properties"]
        )
        assert post["summary"].startswith(f"{op.name}: {op.cost} credit")
    ids = [o["operationId"] for item in doc["paths"].values() for o in item.values()]
    assert len(ids) == len(set(ids))
    assert set(doc["webhooks"]) == {"job.completed", "job.failed", "job.cancelled"}


def test_every_example_is_valid(client):
    """The examples people read in /docs are true to the schemas."""
    doc = client.get("/openapi.json").get_json()
    checked = 0
    for name, schema in doc["components"]["schemas"].items():
        for example in schema.get("examples", []):
            conforms(doc, example, name)
            checked += 1
    for item in doc["paths"].values():
        for op in item.values():
            media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "example" in media:
                wrapper = {**media["schema"], "components": doc["components"]}
                from jsonschema import Draft202012Validator

                Draft202012Validator(wrapper).validate(media["example"])
                checked += 1
    assert checked >= 20


def test_separation_stems_are_the_registry_stems():
    from workers.dsp import separation

    assert separation.STEMS == operations.STEMS


# ----------------------------------------------------- real answers, typed


def conforms(doc: dict, instance: object, name: str) -> None:
    """``instance`` is valid against ``#/components/schemas/{name}``."""
    from jsonschema import Draft202012Validator

    wrapper = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    Draft202012Validator(wrapper, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(instance)


def test_real_results_of_every_operation_match_the_document(client, api_key, upload, worker):
    """Each operation run for real on a short song: the 202, the finished job
    document (its result against the operation's result schema), a sync
    answer, the task document and every listing conform to /openapi.json."""
    import io

    import soundfile as sf
    import synth
    from jobpoll import poll

    doc = client.get("/openapi.json").get_json()
    buf = io.BytesIO()
    sf.write(
        buf,
        synth.chord_progression("A", "minor", 5.0, sr=44100, seed=4, with_drums=True),
        44100,
        "PCM_16",
        format="WAV",
    )
    key = api_key(plan="enterprise", credits=0)
    aid = upload(key, buf.getvalue())
    h = {**key.headers, "Prefer": "respond-async"}
    accepted = {}
    for op in operations.OPERATIONS.values():
        if op.public:
            resp = client.post(f"/v1/{op.name}", json={"asset_id": aid}, headers=h)
            assert resp.status_code == 202, resp.get_json()
            conforms(doc, resp.get_json(), "Accepted")
            accepted[op.name] = resp.get_json()["job_id"]
    task = client.post(
        "/tasks",
        json={
            "assetId": aid,
            "targets": [
                {"model": "instrumental", "formats": ["mp3"]},
                {"model": "drums", "formats": ["flac"]},
            ],
        },
        headers=key.headers,
    )
    assert task.status_code == 201
    conforms(doc, task.get_json(), "Task")
    for name, job_id in accepted.items():
        job = poll(client, key, job_id, timeout=240)
        assert job["status"] == "completed", (name, job["error"])
        conforms(doc, job, "Job")
        conforms(doc, job["result"], openapi.result_name(operations.OPERATIONS[name]))
    task_doc = poll(client, key, task.get_json()["id"], timeout=240)
    assert task_doc["status"] == "completed"
    finished = client.get(f"/tasks/{task_doc['job_id']}", headers=key.headers).get_json()
    assert finished["status"] == "completed" and all(t["output"] for t in finished["targets"])
    conforms(doc, finished, "Task")
    conforms(doc, task_doc, "Job")  # a task is a job of tasks/separate too

    sync = client.post("/v1/key-bpm", json={"asset_id": aid}, headers=key.headers)
    assert sync.status_code == 200
    conforms(doc, sync.get_json(), "KeyBpmResult")
    conforms(doc, sync.get_json(), "Answer")
    for path, name in (
        ("/v1/jobs?limit=200", "JobPage"),
        ("/v1/assets", "AssetPage"),
        (f"/v1/assets/{aid}", "Asset"),
        (f"/assets/{aid}", "TasksAssetDetail"),
        ("/v1/account", "Account"),
    ):
        resp = client.get(path, headers=key.headers)
        assert resp.status_code == 200
        conforms(doc, resp.get_json(), name)
    for item in client.get("/tasks", headers=key.headers).get_json():
        conforms(doc, item, "Task")
    for item in client.get("/assets", headers=key.headers).get_json():
        conforms(doc, item, "TasksAsset")


# ----------------------------------------------------------------- fuzzing

FUZZ_ENV = {
    # Fuzzing is a burst of requests from one key: the rate limit would
    # answer most of them 429 (documented, but it would hide the routes).
    "AUDIOQ_PLAN_ENTERPRISE_RATE_PER_S": "10000",
    "AUDIOQ_PLAN_ENTERPRISE_BURST": "10000",
    # Fast operations answer 202 rather than wait long for a busy worker.
    "AUDIOQ_SYNC_WAIT_S": "5",
}


@pytest.fixture(scope="module")
def fuzz_api(stack_env, service_dir, worker):
    """The API under gunicorn (as production runs it) with the fuzz settings."""
    from conftest import ROOT, _child_env

    from ops import services

    port = services.free_port()
    log = service_dir / "gunicorn-fuzz.log"
    p = services.spawn(
        services.gunicorn_cmd(f"127.0.0.1:{port}", workers=1),
        log,
        env=_child_env(stack_env, FUZZ_ENV),
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        services.wait_http(url + "/healthz", p, log)
        yield url
    finally:
        services.stop_process(p)


@pytest.fixture
def fuzz_key(api_key, upload):
    """An enterprise key that owns one real asset (a short clip)."""
    from audiogen import wav

    key = api_key(plan="enterprise", credits=0)
    return key, upload(key, wav(3.0))


@schemathesis.serializer("audio/wav")
def _raw_audio(ctx, value) -> bytes:
    """Bodies for ``audio/*``: whatever bytes were generated (not audio, so
    this fuzzes the upload path's refusals)."""
    return value if isinstance(value, bytes) else str(value).encode()


# The document the API serves, built without a server (schemathesis's lazy
# fixture loader does not run under pytest 9); the requests go to fuzz_api.
schema = schemathesis.openapi.from_dict(openapi.document(Settings()))


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    # CI runs the same examples every time (a failure there is reproducible);
    # a developer's runs explore new ones.
    derandomize=bool(os.environ.get("CI")),
    database=None if os.environ.get("CI") else settings.default.database,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_live_api_keeps_its_document(case, fuzz_api, fuzz_key, r):
    key, asset_id = fuzz_key
    # In half of the valid requests the generated asset id is swapped for a
    # real one, so that options are fuzzed on real jobs, not only on a 404.
    # (An invalid request stays as generated: it must be refused.)
    if case.meta is not None and case.meta.generation.mode.is_positive:
        if (
            isinstance(case.body, dict)
            and "asset_id" in case.body
            and zlib.crc32(repr(case.body).encode()) % 2
        ):
            case.body["asset_id"] = asset_id
        if case.query and "asset_id" in case.query and zlib.crc32(repr(case.query).encode()) % 2:
            case.query["asset_id"] = asset_id
    case.call_and_validate(
        base_url=fuzz_api,
        headers=key.headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
            negative_data_rejection,
            ignored_auth,
        ],
        timeout=30,
    )
