"""Real services for the test session: redis-server and SeaweedFS's S3 gateway
on free loopback ports (started the same way `audioq stack up` starts them),
plus a Celery worker and a gunicorn API process for the tests that need them.
Each test starts from an empty Redis and an empty bucket."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops import services
from shared import db, keys
from shared.queue import make_celery
from shared.settings import Settings
from shared.storage import Storage

ROOT = Path(__file__).resolve().parent.parent
ACCESS_KEY, SECRET_KEY = "audioq-test", "audioq-test-secret-123"


@pytest.fixture(scope="session")
def service_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def redis_server(service_dir):
    proc = services.start_redis(service_dir / "redis")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def s3_server(service_dir):
    proc = services.start_s3(service_dir / "s3", ACCESS_KEY, SECRET_KEY)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def stack_env(redis_server, s3_server) -> dict[str, str]:
    """The AUDIOQ_* settings of the test stack; the test process gets them too,
    so code that reads settings itself (the Celery app) talks to this stack."""
    env = services.stack_env(
        redis_port=redis_server.ports["redis"],
        s3_port=s3_server.ports["s3"],
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        public_url="http://testserver",
        bucket="audioq-test",
    )
    # The tests' URL inputs and callback receivers are local servers.
    env["AUDIOQ_FETCH_ALLOWLIST"] = "127.0.0.0/8,::1/128"
    os.environ.update(env)
    return env


@pytest.fixture(scope="session")
def base_settings(stack_env) -> Settings:
    s = Settings.from_env(stack_env)
    Storage(s).ensure_bucket()
    return s


@pytest.fixture
def settings(base_settings) -> Settings:
    return base_settings


@pytest.fixture
def storage(settings, clean) -> Storage:
    return Storage(settings)


@pytest.fixture
def r(settings, clean):
    conn = db.connect(settings)
    yield conn
    conn.close()


@pytest.fixture
def clean(base_settings):
    """Empty application Redis, broker queues and bucket before the test."""
    conn = db.connect(base_settings)
    conn.flushdb()  # app state only: the broker db keeps its queue bindings
    st = Storage(base_settings)
    st.delete_many([o.name for o in st.list()])
    conn.close()


@pytest.fixture
def app(settings, clean):
    from web import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class Key:
    secret: str
    id: str
    plan: str

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.secret}


@pytest.fixture
def api_key(r, settings):
    """``api_key(plan="pro", credits=100, test=False) -> Key`` (a real key in Redis)."""

    def make(plan: str = "pro", credits: int = 100, name: str = "test", test: bool = False) -> Key:
        secret, rec = keys.create(r, settings, plan=plan, credits=credits, name=name, test=test)
        return Key(secret, rec.id, plan)

    return make


@pytest.fixture
def upload(client):
    """``upload(key, data, content_type="audio/wav") -> asset id`` via the v1 route."""

    def do(key: Key, data: bytes, content_type: str = "audio/wav") -> str:
        resp = client.post(
            "/v1/assets/upload", data=data, headers={**key.headers, "Content-Type": content_type}
        )
        assert resp.status_code in (200, 201), resp.get_json()
        return resp.get_json()["asset_id"]

    return do


@pytest.fixture
def http_server():
    """A real HTTP server on 127.0.0.1 (tests/localhttp.py): serves files,
    records what is POSTed to it (callback deliveries)."""
    import localhttp

    server = localhttp.Server()
    httpd = localhttp.start(server)
    yield server
    httpd.shutdown()


def _child_env(stack_env: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOQ_")}
    env.update(stack_env)
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def celery_app(base_settings):
    """A Celery client of the test stack's broker (as the API has one): sends
    tasks by name and controls workers."""
    return make_celery(base_settings)


@pytest.fixture(scope="session")
def worker(stack_env, service_dir, celery_app):
    """A real Celery worker on every queue (prefork, 2 processes)."""
    log = service_dir / "worker.log"
    p = services.spawn(services.celery_worker_cmd(concurrency=2), log, env=_child_env(stack_env), cwd=ROOT)
    try:
        services.wait_celery(celery_app, p, log)
        yield services.Proc("worker", p, {}, log)
    finally:
        services.stop_process(p)


@pytest.fixture(scope="session")
def live_api(stack_env, service_dir):
    """The API under gunicorn with gevent workers, as production runs it.

    Returns its base URL."""
    port = services.free_port()
    log = service_dir / "gunicorn.log"
    p = services.spawn(
        services.gunicorn_cmd(f"127.0.0.1:{port}", workers=1), log, env=_child_env(stack_env), cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        services.wait_http(url + "/healthz", p, log)
    except services.ServiceError:
        services.stop_process(p)
        raise
    yield url
    services.stop_process(p)


def run_cli(stack_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The ``audioq`` console script, as an operator runs it."""
    exe = Path(sys.executable).parent / "audioq"
    return subprocess.run(
        [str(exe), *args], env=_child_env(stack_env), capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def stack(tmp_path):
    """The fault tests' disposable stacks (``tests/faultstack.py``): call it to
    build one (keyword arguments go to ``FaultStack``); all are stopped after
    the test."""
    from faultstack import FaultStack

    made: list[FaultStack] = []

    def build(**kw) -> FaultStack:
        s = FaultStack(tmp_path / f"stack{len(made)}", **kw)
        made.append(s)
        return s

    yield build
    for s in made:
        s.stop()
