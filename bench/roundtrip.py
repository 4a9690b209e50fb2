"""Submit-to-result latency of cached jobs through the API, next to a raw
Celery round trip of a no-op task on the same Redis.

Starts its own stack, as ``bench/upload.py`` does: redis-server, SeaweedFS S3,
the API under gunicorn (one gevent worker) and a Celery worker (one process),
then:

* creates a ``pro`` key, uploads one short WAV and runs ``POST /v1/lufs``
  once: a cache miss, computed by the worker (its latency is reported on its
  own row);
* sends N more identical requests, each a cache hit answered synchronously
  (``_meta.cache == "hit"`` is checked), one after another over one
  keep-alive ``http.client`` connection, timing each submit-to-result round
  trip on the client; then the same N from 8 threads, each with its own
  connection;
* starts a second, minimal Celery app (a module written to the temp dir:
  broker redis db 2, result backend redis db 3 on the same server, JSON, a
  ``noop()`` task) with a solo-pool worker, and times N
  ``noop.delay().get()`` round trips.

A few warm-up requests/tasks before each timed series are not counted.
Percentiles are numpy's linear interpolation. Target: API p50 under 15 ms.

Run from the repository root::

      .venv/bin/python bench/roundtrip.py [--json] [--n 500]
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import http.client  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import redis  # noqa: E402

from ops import services  # noqa: E402
from shared import db, keys, queue  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.storage import Storage  # noqa: E402
from tests.audiogen import wav  # noqa: E402

ACCESS_KEY, SECRET_KEY = "audioq-bench", "audioq-bench-secret-123"
BUCKET = "audioq-bench"
OP = "lufs"
TARGET_P50_MS = 15.0
THREADS = 8
WARMUP = 20
CREDITS = 1_000_000
NOOP_MODULE = "audioq_bench_noop"

NOOP_SOURCE = '''"""A minimal Celery app for bench/roundtrip.py: one no-op task, results kept."""

import os

from celery import Celery

app = Celery(
    "audioq_bench_noop",
    broker=os.environ["BENCH_NOOP_BROKER"],
    backend=os.environ["BENCH_NOOP_BACKEND"],
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop():
    return None
'''


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------- stats


def summarize(ms: list[float], **extra: object) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    return {
        "n": int(a.size),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p90_ms": round(float(np.percentile(a, 90)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
        "mean_ms": round(float(a.mean()), 2),
        "min_ms": round(float(a.min()), 2),
        **extra,
    }


# ----------------------------------------------------------------------- api


class ApiClient:
    """One keep-alive connection; ``lufs()`` returns (ms, response body)."""

    def __init__(self, port: int, secret: str, asset_id: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.connect()  # set-up outside the timed part
        self.body = json.dumps({"asset_id": asset_id}).encode()
        self.headers = {"x-api-key": secret, "Content-Type": "application/json"}

    def lufs(self) -> tuple[float, dict]:
        t0 = time.perf_counter()
        self.conn.request("POST", f"/v1/{OP}", body=self.body, headers=self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        dt = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise RuntimeError(f"POST /v1/{OP} returned {resp.status}: {raw[:500]!r}")
        if resp.will_close:
            raise RuntimeError("the server closed the keep-alive connection")
        return dt, json.loads(raw)

    def hit(self) -> tuple[float, int]:
        """One cached request: (client ms, server-side _meta.latency_ms)."""
        dt, body = self.lufs()
        meta = body.get("_meta", {})
        if meta.get("cache") != "hit":
            raise RuntimeError(f"expected a cache hit, got {meta!r}")
        return dt, int(meta.get("latency_ms", -1))

    def close(self) -> None:
        self.conn.close()


def upload(port: int, secret: str, data: bytes) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(
            "POST",
            "/v1/assets/upload",
            body=data,
            headers={"x-api-key": secret, "Content-Type": "audio/wav", "Content-Length": str(len(data))},
        )
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    if resp.status not in (200, 201):
        raise RuntimeError(f"upload returned {resp.status}: {raw[:500]!r}")
    return json.loads(raw)["asset_id"]


def sequential(port: int, secret: str, asset_id: str, n: int) -> tuple[list[float], list[int]]:
    c = ApiClient(port, secret, asset_id)
    try:
        for _ in range(WARMUP):
            c.hit()
        client_ms, server_ms = [], []
        for _ in range(n):
            dt, srv = c.hit()
            client_ms.append(dt)
            server_ms.append(srv)
    finally:
        c.close()
    return client_ms, server_ms


def concurrent(port: int, secret: str, asset_id: str, n: int, threads: int) -> tuple[list[float], float]:
    """n requests in total shared by ``threads`` threads; returns (ms, wall s)."""
    clients = [ApiClient(port, secret, asset_id) for _ in range(threads)]
    for c in clients:
        c.hit()  # warm each connection
    lock = threading.Lock()
    left = [n]
    out: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def work(c: ApiClient) -> None:
        mine: list[float] = []
        try:
            start.wait()
            while True:
                with lock:
                    if left[0] == 0:
                        break
                    left[0] -= 1
                mine.append(c.hit()[0])
        except BaseException as e:
            errors.append(e)
        finally:
            with lock:
                out.extend(mine)

    ts = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    for c in clients:
        c.close()
    if errors:
        raise errors[0]
    return out, wall


def commandstats(r: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}


def redis_ping_ms(r: redis.Redis, n: int = 200) -> float:
    for _ in range(20):
        r.ping()
    ms = []
    for _ in range(n):
        t0 = time.perf_counter()
        r.ping()
        ms.append((time.perf_counter() - t0) * 1000)
    return float(np.median(ms))


# -------------------------------------------------------------------- celery


def raw_celery(redis_port: int, tmp: Path, base_env: dict, n: int, children: list) -> dict:
    mod_dir = tmp / "noop"
    mod_dir.mkdir()
    (mod_dir / f"{NOOP_MODULE}.py").write_text(NOOP_SOURCE)
    noop_env = {
        "BENCH_NOOP_BROKER": f"redis://127.0.0.1:{redis_port}/2",
        "BENCH_NOOP_BACKEND": f"redis://127.0.0.1:{redis_port}/3",
    }
    env = dict(base_env)
    env.update(noop_env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(mod_dir), env.get("PYTHONPATH", "")) if p)
    log_path = tmp / "noop-worker.log"
    cmd = [
        sys.executable, "-m", "celery", "-A", NOOP_MODULE, "worker",
        "-c", "1", "--pool", "solo", "--loglevel=WARNING",
    ]  # fmt: skip
    log("starting the no-op Celery worker (solo pool, broker db 2, results db 3) ...")
    proc = services.spawn(cmd, log_path, env=env, cwd=mod_dir)
    children.append(proc)

    # The same module on this side, configured by the same variables.
    os.environ.update(noop_env)
    sys.path.insert(0, str(mod_dir))
    try:
        mod = importlib.import_module(NOOP_MODULE)
    finally:
        sys.path.remove(str(mod_dir))
    app, noop = mod.app, mod.noop
    try:
        services.wait_celery(app, proc, log_path, "no-op worker")
        for _ in range(WARMUP):
            noop.delay().get(timeout=10)
        ms = []
        for _ in range(n):
            t0 = time.perf_counter()
            noop.delay().get(timeout=10)
            ms.append((time.perf_counter() - t0) * 1000)
        return summarize(ms)
    finally:
        app.close()


# --------------------------------------------------------------------- stack


def run(n: int, tmp: Path) -> dict:
    procs: list[services.Proc] = []
    children: list = []  # Popen objects: gunicorn, workers
    try:
        log("starting redis-server and SeaweedFS S3 ...")
        redis_proc = services.start_redis(tmp / "redis")
        procs.append(redis_proc)
        s3_proc = services.start_s3(tmp / "s3", ACCESS_KEY, SECRET_KEY)
        procs.append(s3_proc)
        redis_port = redis_proc.ports["redis"]

        api_port = services.free_port()
        stack = services.stack_env(
            redis_port=redis_port,
            s3_port=s3_proc.ports["s3"],
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            public_url=f"http://127.0.0.1:{api_port}",
            bucket=BUCKET,
        )
        stack["AUDIOQ_LOG_LEVEL"] = "WARNING"
        # The round trip is what is measured, not the per-key limiter: lift it.
        stack["AUDIOQ_PLAN_PRO_RATE_PER_S"] = "1000000"
        stack["AUDIOQ_PLAN_PRO_BURST"] = "1000000"
        settings = Settings.from_env(stack)
        Storage(settings).ensure_bucket()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOQ_")}
        env.update(stack)

        log("starting the API under gunicorn (1 gevent worker) and a Celery worker (-c 1) ...")
        gunicorn_log, worker_log = tmp / "gunicorn.log", tmp / "worker.log"
        gunicorn = services.spawn(
            services.gunicorn_cmd(f"127.0.0.1:{api_port}", workers=1), gunicorn_log, env=env, cwd=REPO_ROOT
        )
        children.append(gunicorn)
        worker = services.spawn(services.celery_worker_cmd(concurrency=1), worker_log, env=env, cwd=REPO_ROOT)
        children.append(worker)
        services.wait_http(f"http://127.0.0.1:{api_port}/healthz", gunicorn, gunicorn_log)
        client_app = queue.make_celery(settings)
        try:
            services.wait_celery(client_app, worker, worker_log, "celery worker")
        finally:
            client_app.close()

        r = db.connect(settings)
        secret, rec = keys.create(r, settings, plan="pro", credits=CREDITS, name="bench-queue")
        asset_id = upload(api_port, secret, wav(seconds=2.0, seed=7))
        log(f"key {rec.id} (pro, {CREDITS} credits), asset {asset_id}")

        # The first request: a cache miss, computed by the worker.
        c = ApiClient(api_port, secret, asset_id)
        try:
            miss_ms, body = c.lufs()
        finally:
            c.close()
        if body.get("_meta", {}).get("cache") != "miss":
            raise RuntimeError(f"expected the first {OP} to be a cache miss, got {body.get('_meta')!r}")
        miss = summarize([miss_ms], server_ms=body["_meta"].get("latency_ms"))
        log(f"  cache miss: {miss_ms:.1f} ms")

        log(f"{n} cached {OP} jobs, one keep-alive connection ...")
        before = commandstats(r)
        seq_ms, seq_server = sequential(api_port, secret, asset_id, n)
        after = commandstats(r)
        # Server-wide counts (commands run inside Lua included; the Celery
        # worker's heartbeats and polling are background noise, dropped below 0.1).
        per_req = {
            cmd: round((after[cmd] - before.get(cmd, 0)) / (n + WARMUP), 2)
            for cmd in after
            if (after[cmd] - before.get(cmd, 0)) / (n + WARMUP) >= 0.1 and cmd != "info"
        }
        seq = summarize(seq_ms, server_p50_ms=float(np.median(seq_server)))
        log(f"  {seq}")

        log(f"{n} cached {OP} jobs, {THREADS} threads ...")
        par_ms, wall = concurrent(api_port, secret, asset_id, n, THREADS)
        par = summarize(
            par_ms, threads=THREADS, wall_s=round(wall, 3), req_per_s=round(len(par_ms) / wall, 1)
        )
        log(f"  {par}")

        ping_ms = redis_ping_ms(r)
        r.close()

        celery = raw_celery(redis_port, tmp, env, n, children)
        log(f"  raw celery: {celery}")

        return {
            "n": n,
            "op": OP,
            "warmup": WARMUP,
            "cpus": os.cpu_count(),
            "api_cache_miss": miss,
            "api_sync": seq,
            "api_threads": par,
            "raw_celery_noop": celery,
            "redis_ping_p50_ms": round(ping_ms, 3),
            "redis_commands_per_cached_request": dict(sorted(per_req.items(), key=lambda kv: -kv[1])),
            "target_p50_ms": TARGET_P50_MS,
            "p50_ok": seq["p50_ms"] < TARGET_P50_MS,
        }
    except BaseException:
        for name in ("gunicorn.log", "worker.log", "noop-worker.log"):
            p = tmp / name
            if p.exists():
                log(f"--- {name} (tail) ---\n" + p.read_text()[-3000:])
        raise
    finally:
        for p in reversed(children):
            services.stop_process(p)
        for proc in reversed(procs):
            proc.stop()


def table(res: dict) -> str:
    rows = [
        ("API cached job, sync (1 connection)", res["api_sync"]),
        (f"API cached job, {res['api_threads']['threads']} threads", res["api_threads"]),
        ("raw Celery no-op round trip", res["raw_celery_noop"]),
        ("API first job (cache miss, worker computes)", res["api_cache_miss"]),
    ]
    lines = [
        "| path | n | p50 ms | p90 ms | p99 ms | max ms | mean ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['n']} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | {s['p99_ms']:.2f} "
            f"| {s['max_ms']:.2f} | {s['mean_ms']:.2f} |"
        )
    par = res["api_threads"]
    lines.append("")
    lines.append(
        f"{par['threads']} threads: {par['req_per_s']:.0f} requests/s ({par['n']} in {par['wall_s']:.2f} s)"
    )
    verdict = "yes" if res["p50_ok"] else "NO"
    lines.append(
        f"API cached job p50 {res['api_sync']['p50_ms']:.2f} ms "
        f"< {res['target_p50_ms']:g} ms target: {verdict} "
        f"(server-side _meta.latency_ms p50 {res['api_sync']['server_p50_ms']:g} ms)"
    )
    cmds = ", ".join(f"{k} {v:g}" for k, v in res["redis_commands_per_cached_request"].items())
    lines.append(
        f"Redis commands per cached request (incl. inside Lua): {cmds}; "
        f"Redis PING p50 {res['redis_ping_p50_ms']:.3f} ms"
    )
    lines.append(
        f"(client-side submit-to-result times; {res['warmup']} warm-up calls per series not counted; "
        f"{res['cpus']} CPUs shared by client, API, workers and Redis)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--n", type=int, default=500, help="timed requests/tasks per series (default 500)")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be at least 1")
    tmp = Path(tempfile.mkdtemp(prefix="audioq-bench-queue-"))
    try:
        res = run(args.n, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=2) if args.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
