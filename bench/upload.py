"""Upload throughput and worker memory: the API against a direct S3 PUT.

Starts its own stack (redis-server, SeaweedFS S3, the API under gunicorn with
one gevent worker, as ``tests/conftest.py`` does), then for each file size:

* uploads fresh WAV files through ``POST /v1/assets/upload`` (http.client,
  body streamed from the open file with a Content-Length), and
* PUTs the same bytes straight to the same S3 server with ``minio.Minio``
  (same part size as the API, one part at a time),

and reports the median throughput of each and their ratio. It also samples the
RSS of the gunicorn *worker* every 5 ms during a 45 MB upload (after a small
warm-up upload) and reports its growth; the target is under 30 MB.

Run from the repository root::

    .venv/bin/python bench/upload.py [--json] [--reps N]

MB here is 2**20 bytes (as in the plan limits and AUDIOQ_UPLOAD_PART_MB).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import http.client  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import soundfile  # noqa: E402
from minio import Minio  # noqa: E402

from ops import services  # noqa: E402
from shared import db, keys  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.storage import Storage  # noqa: E402

MB = 1024 * 1024
ACCESS_KEY, SECRET_KEY = "audioq-bench", "audioq-bench-secret-123"
API_BUCKET = "audioq-bench"
DIRECT_BUCKET = "audioq-bench-direct"
SIZES_MB = (10, 45)
RSS_SIZE_MB = 45
RSS_TARGET_MB = 30
SAMPLE_INTERVAL_S = 0.005
SEND_BLOCK = 1 * MB  # http.client reads the file body in blocks of this size

SAMPLE_RATE = 44100
CHANNELS = 2
BYTES_PER_FRAME = CHANNELS * 2  # PCM_16
WAV_HEADER = 44

_seq = itertools.count()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------- files


def make_wav(dir_: Path, size_mb: float) -> Path:
    """A valid PCM_16 stereo 44.1 kHz WAV of about ``size_mb``, never the same
    bytes twice (seeded by the clock and a counter), so dedup cannot kick in."""
    n = next(_seq)
    seed = time.time_ns() ^ (os.getpid() << 20) ^ n
    rng = np.random.default_rng(seed)
    frames = max(1, (int(size_mb * MB) - WAV_HEADER) // BYTES_PER_FRAME)
    path = dir_ / f"bench-{size_mb:g}mb-{n}.wav"
    t = np.arange(SAMPLE_RATE, dtype=np.float64) / SAMPLE_RATE
    with soundfile.SoundFile(
        path, "w", samplerate=SAMPLE_RATE, channels=CHANNELS, subtype="PCM_16", format="WAV"
    ) as f:
        left = frames
        while left:
            k = min(left, SAMPLE_RATE)  # one second per block: bounded memory
            freq = rng.uniform(110, 1760, size=CHANNELS)
            tone = 0.3 * np.sin(2 * np.pi * np.outer(t[:k], freq))
            noise = rng.normal(0, 0.1, size=(k, CHANNELS))
            f.write(np.clip(tone + noise, -1, 1).astype(np.float32))
            left -= k
    return path


# ----------------------------------------------------------------------- rss


class RssSampler:
    """Sample a process's RSS every ``interval`` seconds in a background thread."""

    def __init__(self, proc: psutil.Process, interval: float = SAMPLE_INTERVAL_S) -> None:
        self.proc = proc
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self.proc.memory_info().rss
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.baseline = self.proc.memory_info().rss
        self.peak = self.baseline
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # One more interval so a peak right at the response is not missed.
        time.sleep(self.interval * 2)
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.after = self.proc.memory_info().rss

    def result(self) -> dict:
        return {
            "baseline_mb": round(self.baseline / MB, 1),
            "peak_mb": round(self.peak / MB, 1),
            "growth_mb": round((self.peak - self.baseline) / MB, 1),
            "after_mb": round(self.after / MB, 1),
            "samples": self.samples,
        }


def gunicorn_worker(master_pid: int, timeout: float = 30) -> psutil.Process:
    master = psutil.Process(master_pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = master.children()
        if len(kids) == 1:
            return kids[0]
        time.sleep(0.1)
    raise RuntimeError(f"expected one gunicorn worker under pid {master_pid}, found {master.children()}")


# -------------------------------------------------------------------- upload


def api_upload(port: int, secret: str, path: Path, worker: psutil.Process | None = None) -> dict:
    """POST the file to /v1/assets/upload, streaming it; returns timing (and RSS)."""
    size = path.stat().st_size
    headers = {"Content-Type": "audio/wav", "Content-Length": str(size), "x-api-key": secret}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300, blocksize=SEND_BLOCK)
    sampler = RssSampler(worker) if worker is not None else None
    try:
        with open(path, "rb") as f:
            conn.connect()  # connection set-up outside the timed part
            if sampler:
                sampler.__enter__()
            try:
                t0 = time.perf_counter()
                conn.request("POST", "/v1/assets/upload", body=f, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                dt = time.perf_counter() - t0
            finally:
                if sampler:
                    sampler.__exit__(None, None, None)
    finally:
        conn.close()
    if resp.status != 201:
        raise RuntimeError(f"upload of {path.name} returned {resp.status}: {raw[:500]!r}")
    body = json.loads(raw)
    if body.get("size_bytes") != size:
        raise RuntimeError(f"API stored {body.get('size_bytes')} bytes, sent {size}")
    out = {"bytes": size, "seconds": dt, "mb_s": size / MB / dt, "asset_id": body["asset_id"]}
    if sampler:
        out["rss"] = sampler.result()
    return out


def direct_upload(client: Minio, path: Path, part_size: int) -> dict:
    size = path.stat().st_size
    with open(path, "rb") as f:
        t0 = time.perf_counter()
        client.put_object(
            DIRECT_BUCKET,
            f"direct/{path.name}",
            f,
            length=size,
            part_size=part_size,
            content_type="application/octet-stream",
            num_parallel_uploads=1,
        )
        dt = time.perf_counter() - t0
    return {"bytes": size, "seconds": dt, "mb_s": size / MB / dt}


# --------------------------------------------------------------------- stack


def run(reps: int, tmp: Path) -> dict:
    procs: list = []
    gunicorn = None
    gunicorn_log = tmp / "gunicorn.log"
    try:
        log("starting redis-server and SeaweedFS S3 ...")
        redis_proc = services.start_redis(tmp / "redis")
        procs.append(redis_proc)
        s3_proc = services.start_s3(tmp / "s3", ACCESS_KEY, SECRET_KEY)
        procs.append(s3_proc)

        api_port = services.free_port()
        stack = services.stack_env(
            redis_port=redis_proc.ports["redis"],
            s3_port=s3_proc.ports["s3"],
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            public_url=f"http://127.0.0.1:{api_port}",
            bucket=API_BUCKET,
        )
        stack["AUDIOQ_LOG_LEVEL"] = "WARNING"
        settings = Settings.from_env(stack)
        Storage(settings).ensure_bucket()
        direct = Minio(settings.s3_endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
        if not direct.bucket_exists(DIRECT_BUCKET):
            direct.make_bucket(DIRECT_BUCKET)

        r = db.connect(settings)
        secret, rec = keys.create(r, settings, plan="enterprise", credits=0, name="bench")
        r.close()
        plan = settings.plan("enterprise")
        log(f"key {rec.id} (enterprise, {plan.max_upload_bytes // MB} MB limit)")

        env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOQ_")}
        env.update(stack)
        log("starting the API under gunicorn (1 gevent worker) ...")
        gunicorn = services.spawn(
            services.gunicorn_cmd(f"127.0.0.1:{api_port}", workers=1), gunicorn_log, env=env, cwd=REPO_ROOT
        )
        services.wait_http(f"http://127.0.0.1:{api_port}/healthz", gunicorn, gunicorn_log)
        worker = gunicorn_worker(gunicorn.pid)

        files = tmp / "files"
        files.mkdir()

        def fresh(size_mb: float) -> Path:
            return make_wav(files, size_mb)

        # Warm-up: imports, first-request set-up, connection pools, first S3 calls.
        for _ in range(2):
            p = fresh(1)
            api_upload(api_port, secret, p)
            direct_upload(direct, p, settings.upload_part_bytes)
            p.unlink()

        log(f"RSS of the worker (pid {worker.pid}) during a {RSS_SIZE_MB} MB upload ...")
        p = fresh(RSS_SIZE_MB)
        time.sleep(0.5)  # let the worker settle
        rss_run = api_upload(api_port, secret, p, worker)
        p.unlink()
        rss = {"size_mb": RSS_SIZE_MB, "worker_pid": worker.pid, **rss_run["rss"]}
        log(f"  {rss}")

        sizes = []
        for size_mb in SIZES_MB:
            api_runs, direct_runs, rss_runs = [], [], []
            for i in range(reps):
                p = fresh(size_mb)
                a = api_upload(api_port, secret, p, worker)
                d = direct_upload(direct, p, settings.upload_part_bytes)
                p.unlink()
                api_runs.append(a["mb_s"])
                direct_runs.append(d["mb_s"])
                rss_runs.append(a["rss"]["growth_mb"])
                log(
                    f"  {size_mb} MB #{i + 1}: API {a['mb_s']:.1f} MB/s ({a['seconds']:.2f} s, "
                    f"worker RSS +{a['rss']['growth_mb']} MB), "
                    f"direct {d['mb_s']:.1f} MB/s ({d['seconds']:.2f} s)"
                )
            api_med, direct_med = statistics.median(api_runs), statistics.median(direct_runs)
            sizes.append(
                {
                    "size_mb": size_mb,
                    "bytes": a["bytes"],
                    "api_mb_s": round(api_med, 1),
                    "direct_mb_s": round(direct_med, 1),
                    "ratio": round(api_med / direct_med, 2),
                    "api_runs_mb_s": [round(x, 1) for x in api_runs],
                    "direct_runs_mb_s": [round(x, 1) for x in direct_runs],
                    "api_rss_growth_runs_mb": rss_runs,
                }
            )
        rss["final_worker_rss_mb"] = round(worker.memory_info().rss / MB, 1)
        return {
            "reps": reps,
            "part_size_mb": settings.upload_part_bytes // MB,
            "sizes": sizes,
            "rss": rss,
            "rss_target_mb": RSS_TARGET_MB,
            "rss_ok": rss["growth_mb"] < RSS_TARGET_MB,
        }
    except BaseException:
        if gunicorn_log.exists():
            log("--- gunicorn log (tail) ---\n" + gunicorn_log.read_text()[-3000:])
        raise
    finally:
        if gunicorn is not None:
            services.stop_process(gunicorn)
        for proc in reversed(procs):
            proc.stop()


def table(res: dict) -> str:
    lines = [
        "| size | API MB/s | direct minio MB/s | ratio (API/direct) |",
        "|---|---|---|---|",
    ]
    for s in res["sizes"]:
        lines.append(
            f"| {s['size_mb']} MB | {s['api_mb_s']:.1f} | {s['direct_mb_s']:.1f} | {s['ratio']:.2f} |"
        )
    rss = res["rss"]
    verdict = "OK" if res["rss_ok"] else "OVER TARGET"
    lines.append("")
    lines.append(
        f"Worker RSS during a {rss['size_mb']} MB upload: baseline {rss['baseline_mb']:.1f} MB, "
        f"peak {rss['peak_mb']:.1f} MB, growth {rss['growth_mb']:.1f} MB "
        f"(target < {res['rss_target_mb']} MB: {verdict})"
    )
    lines.append(
        f"(medians of {res['reps']} runs; MB = 2^20 bytes; part size {res['part_size_mb']} MB, "
        "one part at a time on both paths)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per size (default 3)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="audioq-bench-"))
    try:
        res = run(args.reps, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=2) if args.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
