"""Load on the API as production runs it, loopback only, under two minutes.

Starts its own stack (redis-server, SeaweedFS S3, the API under gunicorn with
2 gevent workers as docker-compose.yml runs it, a fast worker pool of 2
processes), creates an enterprise key whose request rate limit is lifted for
the run (``AUDIOQ_PLAN_ENTERPRISE_RATE_PER_S``, ``..._CONCURRENT_UPLOADS``: the point is the server's
capacity, not the limiter's), then:

1. **cached**: 20 client threads, each posting the same 1 s WAV to
   ``POST /v1/lufs`` as raw bytes for ``--seconds`` (dedup + result cache:
   every answer after the first is a cache hit);
2. **uncached**: 20 client threads posting distinct 1 s WAVs to ``/v1/bpm``
   (each a real job on the workers, answered synchronously);
3. **uploads**: 20 concurrent 10 MB uploads of distinct bytes.

For each: requests, throughput, p50/p99 latency, errors (non-2xx or
exceptions), and the API workers' RSS (sum over gunicorn's worker processes)
before, at peak (sampled every 20 ms) and after.

    .venv/bin/python bench/load.py [--seconds 20] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops import services  # noqa: E402
from shared import db, keys  # noqa: E402
from shared.settings import Settings  # noqa: E402

CLIENTS = 20


def wav_bytes(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 44100)) / 44100
    x = 0.3 * np.sin(2 * np.pi * (220 + seed % 200) * t) + 0.01 * rng.standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, np.stack([x, x], axis=1).astype(np.float32), 44100, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class RssSampler:
    """Sum of the RSS of gunicorn's worker processes, sampled in a thread."""

    def __init__(self, master_pid: int) -> None:
        self.master = psutil.Process(master_pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        return sum(p.memory_info().rss for p in self.master.children())

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.now())
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self.before = self.now()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.after = self.now()


def run_clients(seconds: float, request) -> dict:
    """``request(client, i)`` -> bool (ok) in CLIENTS threads for ``seconds``."""
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop(worker: int) -> None:
        nonlocal errors
        with httpx.Client(timeout=60) as client:
            i = 0
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    ok = request(client, worker * 100_000 + i)
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    errors += not ok
                i += 1

    t0 = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as ex:
        list(ex.map(loop, range(CLIENTS)))
    wall = time.monotonic() - t0
    return {
        "requests": len(lat),
        "per_s": len(lat) / wall,
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * float(np.percentile(lat, 99)) if lat else float("nan"),
        "errors": errors,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="audioq-load-"))
    procs: list[services.Proc] = []
    try:
        procs.append(redis := services.start_redis(tmp / "redis"))
        procs.append(s3 := services.start_s3(tmp / "s3", "load", "load-secret-123"))
        env = {
            **{k: v for k, v in __import__("os").environ.items() if not k.startswith("AUDIOQ_")},
            **services.stack_env(
                redis_port=redis.ports["redis"],
                s3_port=s3.ports["s3"],
                access_key="load",
                secret_key="load-secret-123",
                public_url="http://load",
            ),
            "AUDIOQ_PLAN_ENTERPRISE_RATE_PER_S": "100000",
            "AUDIOQ_PLAN_ENTERPRISE_BURST": "100000",
            "AUDIOQ_PLAN_ENTERPRISE_IN_FLIGHT_ANALYSIS": "100000",
            # 20 clients posting raw bodies at once: each holds an upload slot
            "AUDIOQ_PLAN_ENTERPRISE_CONCURRENT_UPLOADS": "100",
        }
        settings = Settings.from_env(env)
        from shared.storage import Storage

        Storage(settings).ensure_bucket()
        port = services.free_port()
        api_log = tmp / "api.log"
        api = services.spawn(services.gunicorn_cmd(f"127.0.0.1:{port}", 2), api_log, env=env, cwd=ROOT)
        procs.append(services.Proc("api", api, {}, api_log))
        url = f"http://127.0.0.1:{port}"
        services.wait_http(url + "/healthz", api, api_log)
        wlog = tmp / "worker.log"
        worker = services.spawn(
            services.celery_worker_cmd(2, "analysis,maintenance", "fast"), wlog, env=env, cwd=ROOT
        )
        procs.append(services.Proc("worker", worker, {}, wlog))
        from shared.queue import make_celery

        services.wait_celery(make_celery(settings), worker, wlog)
        secret, _ = keys.create(db.connect(settings), settings, plan="enterprise", credits=0, name="load")
        h = {"x-api-key": secret, "Content-Type": "audio/wav"}
        time.sleep(5)  # let the workers finish warming up

        same = wav_bytes(1.0, 1)
        httpx.post(f"{url}/v1/lufs", content=same, headers=h, timeout=60)  # the one cache miss

        rows = []
        for name, op, body in (
            ("cached lufs (raw bytes, cache hit)", "lufs", lambda i: same),
            ("uncached bpm (distinct 1 s clips)", "bpm", lambda i: wav_bytes(1.0, 1000 + i)),
        ):
            bodies = {}

            def request(client, i, op=op, body=body, bodies=bodies):
                data = bodies.get(i) or body(i)
                r = client.post(f"{url}/v1/{op}", content=data, headers=h)
                return r.status_code == 200

            with RssSampler(api.pid) as rss:
                res = run_clients(args.seconds, request)
            mb = {"rss_before_mb": rss.before, "rss_peak_mb": rss.peak, "rss_after_mb": rss.after}
            rows.append({"case": name, **res, **{k: v / 2**20 for k, v in mb.items()}})

        big = [wav_bytes(10 * 2**20 / (44100 * 4), 5000 + i) for i in range(CLIENTS)]
        with RssSampler(api.pid) as rss, ThreadPoolExecutor(CLIENTS) as ex:
            t0 = time.monotonic()

            def put(i: int) -> tuple[bool, float]:
                s = time.perf_counter()
                try:
                    r = httpx.post(f"{url}/v1/assets/upload", content=big[i], headers=h, timeout=120)
                    return r.status_code in (200, 201), time.perf_counter() - s
                except httpx.HTTPError:
                    return False, time.perf_counter() - s

            results = list(ex.map(put, range(CLIENTS)))
            wall = time.monotonic() - t0
        lat = [dt for _, dt in results]
        rows.append({
            "case": f"{CLIENTS} concurrent 10 MB uploads",
            "requests": CLIENTS,
            "per_s": CLIENTS / wall,
            "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * float(np.percentile(lat, 99)),
            "errors": sum(not ok for ok, _ in results),
            "rss_before_mb": rss.before / 2**20,
            "rss_peak_mb": rss.peak / 2**20,
            "rss_after_mb": rss.after / 2**20,
        })  # fmt: skip
    finally:
        for p in reversed(procs):
            p.stop()
    load = __import__("os").getloadavg()[0]
    if args.json:
        print(json.dumps({"rows": rows, "load_1min": load}))
        return 0
    print(f"load average (1 min) at the end: {load:.2f}; {args.seconds:g} s per case, {CLIENTS} clients")
    print("| case | requests | req/s | p50 ms | p99 ms | errors | API RSS before / peak / after, MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['requests']} | {r['per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
            f"{r['errors']} | {r['rss_before_mb']:.0f} / {r['rss_peak_mb']:.0f} / {r['rss_after_mb']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
