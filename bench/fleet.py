"""How the worker fleet scales, and what separate pools buy.

Starts its own stack (redis-server, SeaweedFS S3, the API under gunicorn with
2 gevent workers) with an enterprise key whose limits are lifted for the run,
then:

1. **analysis throughput**: a fixed batch of uncached ``chords`` jobs (beat
   tracking + chord recognition) on distinct 60 s clips, submitted at once (4
   client threads), with a fast pool of 1 process, then of 2: jobs per
   second and the speed-up. The fingerprinting the uploads queued on
   ``analysis`` is drained before the clock starts;
2. **heavy throughput**: a batch of ``separate/2stem`` jobs on distinct
   60 s clips with a heavy pool of 1 process, then 2;
3. **isolation**: the latency of a synchronous ``bpm`` (a distinct 5 s clip
   each time) with the fast pool alone, then while the heavy pool is kept
   saturated with separations. The two pools are pinned to separate cores
   (``taskset``), as separate containers with CPU limits would be.

Uploads happen before the timed part. One fresh worker per case (its
warm-up excluded). Load average is reported: the machine is shared.

    .venv/bin/python bench/fleet.py [--analysis-jobs 24] [--analysis-op chords]
        [--analysis-seconds 60] [--heavy-jobs 4] [--json]

On this machine the client, the API, Redis and S3 share the two cores with
the workers, so two worker processes cannot reach 2x: the figure is what a
second process adds here, not a fleet's scaling.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops import services  # noqa: E402
from shared import db, keys, queue  # noqa: E402
from shared.queue import make_celery  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.storage import Storage  # noqa: E402

LIFTED = {
    "AUDIOQ_PLAN_ENTERPRISE_RATE_PER_S": "100000",
    "AUDIOQ_PLAN_ENTERPRISE_BURST": "100000",
    "AUDIOQ_PLAN_ENTERPRISE_IN_FLIGHT_ANALYSIS": "100000",
    "AUDIOQ_PLAN_ENTERPRISE_IN_FLIGHT_HEAVY": "100000",
    "AUDIOQ_LOG_LEVEL": "WARNING",
}


def clip(seconds: float, seed: int) -> bytes:
    """A drum-and-tone loop: something for the analyses and the model to chew."""
    sr = 44100
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    bpm = 90 + seed % 60
    beat = (t * bpm / 60) % 1.0
    x = 0.2 * np.sin(2 * np.pi * (110 + seed % 100) * t) + 0.3 * np.exp(-30 * beat) * rng.standard_normal(
        len(t)
    )
    buf = io.BytesIO()
    sf.write(buf, np.stack([x, 0.9 * x], axis=1).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[services.Proc] = []
        redis = services.start_redis(tmp / "redis")
        s3 = services.start_s3(tmp / "s3", "fleet", "fleet-secret-123")
        self.procs += [redis, s3]
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AUDIOQ_")},
            **services.stack_env(
                redis_port=redis.ports["redis"],
                s3_port=s3.ports["s3"],
                access_key="fleet",
                secret_key="fleet-secret-123",
                public_url="http://fleet",
            ),
            **LIFTED,
        }
        self.settings = Settings.from_env(self.env)
        Storage(self.settings).ensure_bucket()
        port = services.free_port()
        log = tmp / "api.log"
        api = services.spawn(services.gunicorn_cmd(f"127.0.0.1:{port}", 2), log, env=self.env, cwd=ROOT)
        self.procs.append(services.Proc("api", api, {}, log))
        self.url = f"http://127.0.0.1:{port}"
        services.wait_http(self.url + "/healthz", api, log)
        self.r = db.connect(self.settings)
        secret, _ = keys.create(self.r, self.settings, plan="enterprise", credits=0, name="fleet")
        self.h = {"x-api-key": secret}
        self.celery = make_celery(self.settings)

    def worker(self, name: str, queues: str, concurrency: int, cpus: str | None = None) -> services.Proc:
        cmd = services.celery_worker_cmd(concurrency, queues, name)
        if cpus:
            cmd = ["taskset", "-c", cpus, *cmd]
        log = self.tmp / f"worker-{name}.log"
        p = services.spawn(cmd, log, env=self.env, cwd=ROOT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            replies = self.celery.control.ping(timeout=0.5)
            if any(n.startswith(f"{name}@") for reply in replies for n in reply):
                break
        time.sleep(3)  # pool processes finish their warm-up (JIT) before the clock starts
        # Uploads queue their fingerprinting on `analysis`: let the worker drain it
        # before the clock starts, so a batch times its own jobs only.
        broker = queue.broker_client(self.settings)
        while any(q.depth or q.jobs_waiting for q in queue.stats(self.r, broker) if q.queue in queues):
            time.sleep(0.2)
        proc = services.Proc(name, p, {}, log)
        self.procs.append(proc)
        return proc

    def upload(self, data: bytes) -> str:
        r = httpx.post(f"{self.url}/v1/assets/upload", content=data,
                       headers={**self.h, "Content-Type": "audio/wav"}, timeout=120)  # fmt: skip
        r.raise_for_status()
        return r.json()["asset_id"]

    def submit(self, op: str, asset_id: str, wait: float = 0) -> httpx.Response:
        prefer = f"wait={wait:g}" if wait else "respond-async"
        return httpx.post(f"{self.url}/v1/{op}", json={"asset_id": asset_id},
                          headers={**self.h, "Prefer": prefer}, timeout=120)  # fmt: skip

    def batch(self, op: str, assets: list[str]) -> float:
        """Seconds from the first submission to the last job's end."""
        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as ex:
            ids = [r.json()["job_id"] for r in ex.map(lambda a: self.submit(op, a), assets)]
        pending = set(ids)
        while pending:
            for j in list(pending):
                if self.r.hget(db.job_key(j), "status") in ("completed", "failed", "cancelled"):
                    if self.r.hget(db.job_key(j), "status") != "completed":
                        raise RuntimeError(f"{j}: {self.r.hgetall(db.job_key(j))}")
                    pending.discard(j)
            time.sleep(0.05)
        return time.monotonic() - t0

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def latencies(stack: Stack, assets: list[str]) -> list[float]:
    out = []
    for a in assets:
        t0 = time.perf_counter()
        r = stack.submit("bpm", a, wait=60)
        if r.status_code != 200:
            raise RuntimeError(r.text)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--analysis-jobs", type=int, default=24)
    ap.add_argument("--analysis-op", default="chords", help="the analysis timed (chords: beats + chords)")
    ap.add_argument("--analysis-seconds", type=float, default=60.0, help="clip length of the analysis batch")
    ap.add_argument("--heavy-jobs", type=int, default=4)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    stack = Stack(Path(tempfile.mkdtemp(prefix="audioq-fleet-")))
    out: dict = {"load_start": os.getloadavg()[0]}
    try:
        seed = 0

        def fresh(n: int, seconds: float) -> list[str]:
            nonlocal seed
            seed += n
            with ThreadPoolExecutor(4) as ex:
                return list(ex.map(lambda i: stack.upload(clip(seconds, seed + i)), range(n)))

        for label, op, queues, n, seconds in (
            ("analysis", args.analysis_op, "analysis,maintenance", args.analysis_jobs, args.analysis_seconds),
            ("heavy", "separate/2stem", "heavy", args.heavy_jobs, 60.0),
        ):
            for procs in (1, 2):
                assets = fresh(n, seconds)
                w = stack.worker(f"{label}{procs}", queues, procs)
                took = stack.batch(op, assets)
                w.stop()
                stack.procs.remove(w)
                out[f"{label}_{procs}"] = {"jobs": n, "seconds": took, "jobs_per_s": n / took}
            out[f"{label}_speedup"] = out[f"{label}_2"]["jobs_per_s"] / out[f"{label}_1"]["jobs_per_s"]

        fast = stack.worker("fast", "analysis,maintenance", 1, cpus="0")
        idle = latencies(stack, fresh(args.probes, 5.0))
        heavy = stack.worker("heavy", "heavy", 1, cpus="1")
        backlog = fresh(6, 60.0)
        stop = threading.Event()

        def keep_busy() -> None:  # the heavy pool never runs dry during the probes
            i = 0
            while not stop.is_set():
                stack.submit("separate/2stem", backlog[i % len(backlog)])
                i += 1
                time.sleep(2.0)

        feeder = threading.Thread(target=keep_busy, daemon=True)
        feeder.start()
        time.sleep(5)
        busy = latencies(stack, fresh(args.probes, 5.0))
        stop.set()
        for name, values in (("idle", idle), ("heavy_saturated", busy)):
            out[f"bpm_{name}"] = {
                "p50_ms": 1000 * statistics.median(values),
                "p99_ms": 1000 * float(np.percentile(values, 99)),
            }
        out["isolation_ratio_p50"] = out["bpm_heavy_saturated"]["p50_ms"] / out["bpm_idle"]["p50_ms"]
        heavy.stop()
        fast.stop()
    finally:
        stack.stop()
    out["load_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"load average (1 min): {out['load_start']:.2f} at the start, {out['load_end']:.2f} at the end")
    print("| batch | 1 process | 2 processes | speed-up |\n|---|---|---|---|")
    analysis = f"{args.analysis_op}, {args.analysis_seconds:g} s clips"
    for label, what in (("analysis", analysis), ("heavy", "separate/2stem, 60 s clips")):
        one, two = out[f"{label}_1"], out[f"{label}_2"]
        print(
            f"| {one['jobs']} × {what} | {one['jobs_per_s']:.2f} jobs/s ({one['seconds']:.1f} s) | "
            f"{two['jobs_per_s']:.2f} jobs/s ({two['seconds']:.1f} s) | {out[f'{label}_speedup']:.2f}× |"
        )
    print("\n| sync bpm (5 s clip) | p50 ms | p99 ms |\n|---|---|---|")
    for name, label in (("idle", "fast pool alone"), ("heavy_saturated", "heavy pool saturated")):
        print(f"| {label} | {out[f'bpm_{name}']['p50_ms']:.0f} | {out[f'bpm_{name}']['p99_ms']:.0f} |")
    print(f"\np50 while the heavy pool is saturated / idle: {out['isolation_ratio_p50']:.2f}× (goal ≤ 2×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
