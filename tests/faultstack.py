"""A disposable stack for the fault tests: its own redis-server (AOF on, so
it can be killed and restarted), optionally a separate broker Redis, its own
S3 server (restartable on the same ports and data), API processes, workers
and beat, each of which a test can kill, stop and start again.

Heartbeats are faster than production's (1 s beats, stale after 6 s, a sweep
every 2 s) so that recoveries take seconds here; production's defaults (5 s,
60 s, 15 s) scale every recovery time by about ten (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from ops import services
from shared import db, keys
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ACCESS, SECRET = "faults", "faults-secret-123"

FAST_RECOVERY = {
    "AUDIOQ_JOB_HEARTBEAT_S": "1",
    "AUDIOQ_JOB_STALE_S": "6",
    "AUDIOQ_RECOVER_INTERVAL_S": "2",
}


class FaultStack:
    def __init__(self, base: Path, *, separate_broker: bool = False, env: dict[str, str] | None = None):
        self.base = base
        self.procs: dict[str, services.Proc] = {}
        self.redis_port = services.free_port()
        self.broker_port = services.free_port() if separate_broker else self.redis_port
        self.s3_ports = services._weed_ports(None)
        self.start_redis()
        if separate_broker:
            self.start_broker()
        self.start_s3()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AUDIOQ_")},
            **services.stack_env(
                redis_port=self.redis_port,
                s3_port=self.s3_ports["s3"],
                access_key=ACCESS,
                secret_key=SECRET,
                public_url="http://faults",
                bucket="faults",
            ),
            "AUDIOQ_BROKER_URL": f"redis://127.0.0.1:{self.broker_port}/1",
            **FAST_RECOVERY,
            **(env or {}),
        }
        self.settings = Settings.from_env(self.env)
        from shared.storage import Storage

        Storage(self.settings).ensure_bucket()
        self.r = db.connect(self.settings)

    # ----------------------------------------------------------- services

    def start_redis(self) -> None:
        self.procs["redis"] = services.start_redis(self.base / "redis", self.redis_port, persist=True)

    def start_broker(self) -> None:
        self.procs["broker"] = services.start_redis(self.base / "broker", self.broker_port, persist=True)

    def start_s3(self) -> None:
        self.procs["s3"] = services.start_s3(self.base / "s3", ACCESS, SECRET, fixed_ports=self.s3_ports)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a whole process group (the process and its children)."""
        p = self.procs[name].popen
        os.killpg(p.pid, sig)
        p.wait(30)

    def start_api(self, name: str = "api") -> str:
        port = services.free_port()
        log = self.base / f"{name}.log"
        p = services.spawn(services.gunicorn_cmd(f"127.0.0.1:{port}", 1), log, env=self.env, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        services.wait_http(url + "/healthz", p, log)
        self.procs[name] = services.Proc(name, p, {"api": port}, log)
        return url

    def start_worker(
        self, name: str, queues: str = "analysis,heavy,maintenance", concurrency: int = 1
    ) -> None:
        log = self.base / f"worker-{name}.log"
        cmd = services.celery_worker_cmd(concurrency=concurrency, queues=queues, name=name)
        p = services.spawn(cmd, log, env=self.env, cwd=ROOT)
        self.procs[f"worker-{name}"] = services.Proc(name, p, {}, log)
        from shared.queue import make_celery

        app = make_celery(self.settings)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise services.ServiceError(f"worker {name} exited: {log.read_text()[-3000:]}")
            replies = app.control.ping(timeout=0.5)
            if any(n.startswith(f"{name}@") for reply in replies for n in reply):
                return
        raise services.ServiceError(f"worker {name} did not answer a ping: {log.read_text()[-3000:]}")

    def start_beat(self) -> None:
        log = self.base / "beat.log"
        cmd = [
            services.sys.executable, "-m", "celery", "-A", "workers.app", "beat", "--loglevel=INFO",
            "--schedule", str(self.base / "celerybeat-schedule"),
        ]  # fmt: skip
        self.procs["beat"] = services.Proc("beat", services.spawn(cmd, log, env=self.env, cwd=ROOT), {}, log)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout=5)
        self.r.close()

    # ----------------------------------------------------------- clients

    def key(self, plan: str = "pro", credits: int = 1000) -> tuple[str, str]:
        secret, rec = keys.create(self.r, self.settings, plan=plan, credits=credits, name="faults")
        return secret, rec.id

    def balance(self, key_id: str) -> int:
        return keys.balance(self.r, key_id)

    def job(self, job_id: str) -> dict:
        return self.r.hgetall(db.job_key(job_id))

    def wait_job(self, job_id: str, *, until, timeout: float) -> dict:
        """Poll the job record until ``until(record)``; the record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                h = self.job(job_id)
            except Exception:  # Redis restarting
                h = {}
            if h and until(h):
                return h
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not reach the state within {timeout} s: {self.job(job_id)}")

    def running(self, job_id: str, min_progress: float = 0.05, timeout: float = 120) -> dict:
        """Wait until the job runs and has reported ``min_progress``."""
        return self.wait_job(
            job_id,
            until=lambda h: h.get("status") == "running" and float(h.get("progress") or 0) >= min_progress,
            timeout=timeout,
        )

    def final(self, job_id: str, timeout: float) -> dict:
        """Wait until the job has ended."""
        return self.wait_job(
            job_id, until=lambda h: h.get("status") in ("completed", "failed", "cancelled"), timeout=timeout
        )


def upload(url: str, secret: str, data: bytes) -> str:
    resp = httpx.post(
        f"{url}/v1/assets/upload",
        content=data,
        headers={"x-api-key": secret, "Content-Type": "audio/wav"},
        timeout=60,
    )
    assert resp.status_code in (200, 201), resp.text
    return resp.json()["asset_id"]


def submit(url: str, secret: str, op: str, asset_id: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/{op}",
        json={"asset_id": asset_id},
        headers={"x-api-key": secret, "Prefer": "respond-async", **headers},
        timeout=60,
    )
