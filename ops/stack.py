"""The whole stack on one machine, without Docker: ``audioq stack up``.

Redis (AOF on), the S3 server, the API under gunicorn (gevent workers), two
Celery worker pools as production runs them (fast: ``analysis,maintenance``;
heavy: ``heavy``, one process), Celery beat and Flower, all as child
processes with their data and logs under one folder (``.data/`` by default,
git-ignored). Ctrl-C, or ``audioq stack down`` from another shell, stops them
all: ``down`` asks the launcher to stop, so it stops its children in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import time
import urllib.request
from pathlib import Path

from ops import services
from ops.services import Proc, ServiceError

DEFAULT_PORTS = {"api": 8000, "redis": 6390, "s3": 8333, "flower": 5555}


def _dev_secrets(data: Path) -> dict[str, str]:
    """S3 credentials for the local stack, made once and kept in the data folder."""
    path = data / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    s = {"access_key": "audioq-dev", "secret_key": secrets.token_hex(20)}
    path.write_text(json.dumps(s))
    path.chmod(0o600)
    return s


def _check_ports(ports: dict[str, int]) -> None:
    busy = [f"{k} {v}" for k, v in ports.items() if not services.port_free(v)]
    if busy:
        raise ServiceError(
            "port(s) in use: " + ", ".join(busy) + " (is a stack already running? `audioq stack down`)"
        )


def _wait_ready(url: str, procs: list[Proc], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise ServiceError(f"{p.name} exited; see {p.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise ServiceError(f"{url} did not become ready within {timeout} s")


def _dev_key(data: Path, env: dict[str, str]) -> str:
    """Reuse the development key while Redis still knows it, else make one."""
    os.environ.update(env)
    from shared import db, keys
    from shared.settings import Settings

    settings = Settings.from_env()
    r = db.connect(settings)
    path = data / "dev-key.txt"
    if path.exists():
        key = path.read_text().strip()
        if keys.authenticate(r, key) is not None:
            return key
    key, _ = keys.create(r, settings, plan="pro", credits=100_000, name="local-dev")
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def up(root: Path, data: Path, ports: dict[str, int], workers: int = 2) -> int:
    data = data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    launcher = data / "stack.pid"
    if launcher.exists() and _alive(int(launcher.read_text())):
        raise ServiceError(f"a stack is already running from {data} (`audioq stack down --data {data}`)")
    _check_ports(ports)
    sec = _dev_secrets(data)
    public_url = f"http://127.0.0.1:{ports['api']}"
    env = services.stack_env(
        redis_port=ports["redis"],
        s3_port=ports["s3"],
        access_key=sec["access_key"],
        secret_key=sec["secret_key"],
        public_url=public_url,
    )
    child_env = {**os.environ, **env}
    logs = data / "logs"
    procs: list[Proc] = []
    started = time.monotonic()

    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for p in reversed(procs):
            p.stop()
        (data / "stack.pids").unlink(missing_ok=True)
        launcher.unlink(missing_ok=True)

    try:
        procs.append(services.start_redis(data / "redis", ports["redis"], persist=True))
        procs.append(services.start_s3(data / "s3", sec["access_key"], sec["secret_key"], ports["s3"]))
        py = sys.executable
        commands = {
            "api": services.gunicorn_cmd(f"127.0.0.1:{ports['api']}", workers),
            # Separate pools, as in production: fast analyses never wait
            # behind a separation; the heavy pool is one process.
            "worker-fast": services.celery_worker_cmd(
                concurrency=workers, queues="analysis,maintenance", name="fast"
            ),
            "worker-heavy": services.celery_worker_cmd(concurrency=1, queues="heavy", name="heavy"),
            "beat": [py, "-m", "celery", "-A", "workers.app", "beat", "--loglevel=INFO",
                     "--schedule", str(data / "celerybeat-schedule")],
            "flower": [py, "-m", "celery", "-A", "workers.app", "flower",
                       f"--port={ports['flower']}", "--address=127.0.0.1"],
        }  # fmt: skip
        for name, cmd in commands.items():
            log = logs / f"{name}.log"
            procs.append(Proc(name, services.spawn(cmd, log, env=child_env, cwd=root), {}, log))
        (data / "stack.pids").write_text("\n".join(str(p.popen.pid) for p in procs))
        launcher.write_text(str(os.getpid()))
        _wait_ready(public_url + "/readyz", procs)
        key = _dev_key(data, env)
    except BaseException:
        stop_all()
        raise

    print(
        f"""
audioq is running ({time.monotonic() - started:.1f} s to ready)

  API        {public_url}   (docs: {public_url}/docs)
  Flower     http://127.0.0.1:{ports["flower"]}
  Redis      redis://127.0.0.1:{ports["redis"]}   S3  http://127.0.0.1:{ports["s3"]}
  data/logs  {data}

  API key    {key}

Try it:

  curl -s -X POST {public_url}/v1/assets/upload \\
       -H 'x-api-key: {key}' -H 'Content-Type: audio/wav' \\
       --data-binary @your-track.wav

  curl -s {public_url}/v1/assets -H 'x-api-key: {key}'

Stop with Ctrl-C (or `.venv/bin/audioq stack down` from another shell).
""",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while all(p.alive() for p in procs):
            time.sleep(0.5)
        dead = [p for p in procs if not p.alive()]
        if not stopping:
            print(f"{dead[0].name} exited; see {dead[0].log_path}. Stopping the stack.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping...", flush=True)
        return 0
    finally:
        stop_all()
        print("stopped", flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def down(data: Path, timeout: float = 60) -> int:
    """Ask the launcher to stop (it stops its children in order, as Ctrl-C
    does); if it is gone, stop the children it recorded."""
    data = data.resolve()
    launcher = data / "stack.pid"
    pids_file = data / "stack.pids"
    if launcher.exists() and _alive(pid := int(launcher.read_text())):
        os.kill(pid, signal.SIGTERM)
        # The launcher removes its pid file once every child has stopped.
        deadline = time.monotonic() + timeout
        while launcher.exists() and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not launcher.exists():
            print("stopped")
            return 0
    if not pids_file.exists():
        print("no stack is running from", data)
        return 0
    for child in reversed([int(x) for x in pids_file.read_text().split()]):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signal.SIGTERM)
    pids_file.unlink(missing_ok=True)
    launcher.unlink(missing_ok=True)
    print("stopped")
    return 0
