"""docker-compose.yml and the Dockerfile agree with the code (parse only; no Docker, no services).

The compose services get exactly the AUDIOQ_* names ``ops.services.stack_env``
gives a local stack, every AUDIOQ_* name in the file is one shared/settings.py
reads, and the roles run the commands the design describes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from ops import services

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SETTINGS = ROOT / "shared" / "settings.py"

APP_SERVICES = ("web", "worker", "beat", "flower")
NAME = re.compile(r"AUDIOQ_[A-Z0-9_]+")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _services(compose: dict) -> dict:
    return compose["services"]


def _argv(command: str | list[str]) -> list[str]:
    """A compose command as an argv list (compose accepts a string or a list)."""
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _option(argv: list[str], short: str, long: str) -> str | None:
    """The value of ``-x VALUE``, ``--long VALUE`` or ``--long=VALUE``."""
    for i, a in enumerate(argv):
        if a in (short, long) and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(long + "="):
            return a.split("=", 1)[1]
    return None


def _env_names(service: dict) -> set[str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", ...] form
        return {item.split("=", 1)[0] for item in env}
    return set(env)


def _stack_env_names() -> set[str]:
    return set(
        services.stack_env(redis_port=1, s3_port=2, access_key="a", secret_key="b", public_url="http://x")
    )


def test_services_exist(compose):
    svc = _services(compose)
    for name in ("redis", "minio", *APP_SERVICES):
        assert name in svc, f"service {name!r} missing from docker-compose.yml"


def test_redis_has_aof_on(compose):
    argv = _argv(_services(compose)["redis"]["command"])
    assert "--appendonly" in argv, argv
    assert argv[argv.index("--appendonly") + 1] == "yes", argv


def test_worker_consumes_every_queue_with_events(compose):
    argv = _argv(_services(compose)["worker"]["command"])
    assert argv[:4] == ["celery", "-A", "workers.app", "worker"], argv
    queues = set((_option(argv, "-Q", "--queues") or "").split(","))
    assert queues == {"analysis", "heavy", "maintenance"}, argv
    assert "-E" in argv or "--task-events" in argv, "worker must send task events for Flower"


def test_worker_matches_local_stack_queues(compose):
    local = services.celery_worker_cmd()
    argv = _argv(_services(compose)["worker"]["command"])
    assert set(_option(argv, "-Q", "--queues").split(",")) == set(_option(local, "-Q", "--queues").split(","))


def test_web_runs_gunicorn_gevent(compose):
    argv = _argv(_services(compose)["web"]["command"])
    assert argv[0] == "gunicorn" or argv[:3] == ["python", "-m", "gunicorn"], argv
    assert "web:create_app()" in argv, argv
    assert _option(argv, "-c", "--config") == "python:ops.gunicorn_conf", argv
    from ops import gunicorn_conf

    assert gunicorn_conf.worker_class == "gevent"


def test_beat_and_flower_commands(compose):
    svc = _services(compose)
    assert _argv(svc["beat"]["command"])[:4] == ["celery", "-A", "workers.app", "beat"]
    assert _argv(svc["flower"]["command"])[:4] == ["celery", "-A", "workers.app", "flower"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_env_names_equal_stack_env(compose, name):
    env = _env_names(_services(compose)[name])
    assert {n for n in env if n.startswith("AUDIOQ_")} == _stack_env_names()


def test_every_audioq_name_is_read_by_settings():
    settings_text = SETTINGS.read_text()
    used = set(NAME.findall(COMPOSE.read_text()))
    assert used, "no AUDIOQ_* names found in docker-compose.yml"
    unknown = sorted(
        n
        for n in used
        if f'"{n}"' not in settings_text and f'"{n.removeprefix("AUDIOQ_")}"' not in settings_text
    )
    assert not unknown, f"docker-compose.yml uses names shared/settings.py never reads: {unknown}"


def test_secrets_have_no_default(compose):
    env = _services(compose)["web"]["environment"]
    for name in ("AUDIOQ_S3_ACCESS_KEY", "AUDIOQ_S3_SECRET_KEY"):
        value = str(env[name])
        assert re.fullmatch(r"\$\{" + name + r":?\?[^}]*\}", value), f"{name} must be required: {value}"
    minio_env = _services(compose)["minio"]["environment"]
    assert "AUDIOQ_S3_ACCESS_KEY" in str(minio_env["MINIO_ROOT_USER"])
    assert "AUDIOQ_S3_SECRET_KEY" in str(minio_env["MINIO_ROOT_PASSWORD"])


def test_app_services_wait_for_healthy_backends(compose):
    svc = _services(compose)
    assert "healthcheck" in svc["redis"] and "healthcheck" in svc["web"]
    assert "/healthz" in " ".join(_argv(svc["web"]["healthcheck"]["test"]))
    for name in APP_SERVICES:
        deps = svc[name].get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        assert deps.get("redis", {}).get("condition") == "service_healthy", name
        assert svc[name].get("restart"), f"{name} has no restart policy"


def test_dockerfile_cmd_uses_gevent():
    text = DOCKERFILE.read_text()
    joined = re.sub(r"\\\n", " ", text)  # fold continuation lines
    cmds = [line for line in joined.splitlines() if line.strip().startswith("CMD")]
    assert len(cmds) == 1, cmds
    cmd = cmds[0]
    assert "gunicorn" in cmd and "web:create_app()" in cmd, cmd
    assert "python:ops.gunicorn_conf" in cmd, cmd
    assert "0.0.0.0:8000" in cmd, cmd
    assert re.search(r"^USER\s+(?!root\b)\S+", text, re.M), "the image must run as a non-root user"
