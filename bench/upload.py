"""Upload throughput, worker memory and liveness: the API against a direct S3 PUT.

Starts its own stack (redis-server, SeaweedFS S3, the API under gunicorn with
one gevent worker, as ``tests/conftest.py`` does) and measures, for 10, 45
and 400 MB WAV files (an enterprise key: 500 MB limit):

* **API MB/s**: ``POST /v1/assets/upload`` with http.client, the body
  streamed from the open file with a Content-Length;
* **direct MB/s**: ``Minio.put_object`` of the same file (known length, the
  SDK's defaults: parts of the API's part size, 3 in parallel) to the same
  S3 server — what the object store takes from a client on this machine;
* **ratio** API / direct (medians);
* **machine CPU s per 100 MB** for each path: what every process and the
  kernel used during the upload (``/proc/stat``), medians — on a machine
  where the client, the API and the store share the cores, the ratio cannot
  exceed direct / API CPU once both paths are CPU-bound; split out of it,
  the user + system time of the client (this process, with its probes and
  the latency proxy), the API's gunicorn worker and the store (SeaweedFS);
* **RSS growth** of the gunicorn worker during the upload (peak minus the
  value just before, sampled every 5 ms; the largest over the runs);
* **/healthz p99** (and max) of requests sent every 10 ms, on a separate
  connection, while the upload runs (all runs of a size pooled). The direct
  uploads run under the same two probes (the API idle), so both paths are
  timed with the same measuring load on the machine.

Runs are interleaved: each round uploads every size through the API and
directly, alternating which goes first. All of it twice: against the S3
server itself, and through a delaying TCP proxy inside this script (loopback
only) that holds every chunk, each way, for ``--latency-ms`` (default 5) —
an object store on another host, for the API and the direct client alike.

``--pin-store`` binds SeaweedFS (and the proxy) to the last CPU and
everything else to the others: on a small machine the client, the API and
the store otherwise compete for the same cores, and the API path, which
handles every byte once more than the direct one, loses by its CPU rather
than by waiting.

Options: ``--before DIR`` runs a second API from another checkout (e.g. the
code before a change, ``git archive main | tar -x -C DIR``) in every round,
so both are measured under the same load; ``--parts-in-flight N`` sets
``AUDIOQ_UPLOAD_PARTS_IN_FLIGHT`` for the API; ``--slow N`` then sends N
uploads from one pro key that each send a byte and stall, all at once, with
production's settings, and reports how they were answered, ``/healthz``
meanwhile, and another key's uploads.

Run from the repository root::

    .venv/bin/python bench/upload.py [--reps N] [--sizes 10 45 400] [--latency-ms 5]
        [--before DIR] [--parts-in-flight N] [--pin-store] [--slow N] [--json]

MB here is 2**20 bytes (as in the plan limits and AUDIOQ_UPLOAD_PART_MB).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
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
SIZES_MB = (10, 45, 400)
RSS_TARGET_MB = 40
HEALTHZ_TARGET_MS = 50
RATIO_TARGET = 0.8
SAMPLE_INTERVAL_S = 0.005
HEALTHZ_INTERVAL_S = 0.01
SEND_BLOCK = 1 * MB  # http.client reads the file body in blocks of this size
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")

SAMPLE_RATE = 44100
CHANNELS = 2
BYTES_PER_FRAME = CHANNELS * 2  # PCM_16
WAV_HEADER = 44


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


#: With ``--pin-store``: the CPUs of the store (SeaweedFS and the latency
#: proxy) and of everything else (this script's clients, the API, Redis).
STORE_CPUS: set[int] = set()
OTHER_CPUS: set[int] = set()


def pin(pid: int, cpus: set[int]) -> None:
    """Bind every thread of a process and of its children to ``cpus`` (when pinning)."""
    if not cpus:
        return
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    for proc in procs:
        for tid in os.listdir(f"/proc/{proc.pid}/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(tid), cpus)


# --------------------------------------------------------------------- files


def make_wav(path: Path, size_mb: float, seed: int) -> Path:
    """A valid PCM_16 stereo 44.1 kHz WAV of about ``size_mb``."""
    rng = np.random.default_rng(seed)
    frames = max(1, (int(size_mb * MB) - WAV_HEADER) // BYTES_PER_FRAME)
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


def freshen(path: Path) -> None:
    """Overwrite a few samples with random bytes: new bytes for dedup, same file."""
    with open(path, "r+b") as f:
        f.seek(WAV_HEADER + 4096)
        f.write(os.urandom(32))


# ----------------------------------------------------------------- sampling


class RssSampler:
    """Peak RSS of a process, sampled every ``interval`` seconds in a thread."""

    def __init__(self, proc: psutil.Process, interval: float = SAMPLE_INTERVAL_S) -> None:
        self.proc = proc
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        # /proc/PID/statm directly: a psutil call every 5 ms costs the machine
        # enough CPU to show in the throughput being measured.
        with open(f"/proc/{self.proc.pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_BYTES

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(self.interval * 2)  # a peak right at the response is not missed
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MB


class HealthProbe:
    """``GET /healthz`` every ``interval`` seconds on its own keep-alive
    connection, in a thread; latencies in ms."""

    def __init__(self, port: int, interval: float = HEALTHZ_INTERVAL_S) -> None:
        self.port = port
        self.interval = interval
        self.latencies_ms: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.latencies_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    self.failures += 1
            except OSError:
                self.failures += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self._stop.wait(self.interval)
        conn.close()

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


# -------------------------------------------------------------------- proxy


class DelayProxy:
    """A TCP proxy on loopback that forwards every chunk, each way, ``delay_s``
    after it arrived (latency without a bandwidth cap: the proxy buffers).
    It runs in a process of its own, so that its threads do not compete for
    this process's GIL with the clients being measured."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self._proc = multiprocessing.get_context("fork").Process(
            target=_proxy_serve, args=(listener, target_port, delay_s), daemon=True
        )
        self._proc.start()
        pin(self._proc.pid, STORE_CPUS)
        listener.close()

    def close(self) -> None:
        self._proc.terminate()
        self._proc.join(10)


def _proxy_serve(listener: socket.socket, target_port: int, delay_s: float) -> None:
    while True:
        client, _ = listener.accept()
        upstream = socket.create_connection(("127.0.0.1", target_port))
        for a, b in ((client, upstream), (upstream, client)):
            _proxy_pipe(a, b, delay_s)


def _proxy_pipe(src: socket.socket, dst: socket.socket, delay_s: float) -> None:
    q: collections.deque[tuple[float, bytes]] = collections.deque()
    ready = threading.Condition()

    def receive() -> None:
        # Into one reused buffer, copied out at the size received: a fresh
        # 1 MB buffer per recv() (mapped and unmapped by malloc each time)
        # cost the proxy CPU in proportion to how many segments the sender
        # wrote, which is not what the proxy is there to add.
        buf = bytearray(1024 * 1024)
        while True:
            try:
                n = src.recv_into(buf)
            except OSError:
                n = 0
            data = bytes(buf[:n])
            with ready:
                q.append((time.monotonic() + delay_s, data))
                ready.notify()
            if not data:
                return

    def send() -> None:
        while True:
            with ready:
                while not q:
                    ready.wait()
                due, data = q.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    threading.Thread(target=receive, daemon=True).start()
    threading.Thread(target=send, daemon=True).start()


# -------------------------------------------------------------------- upload


def machine_cpu_s() -> float:
    """CPU seconds used so far by the whole machine, every process and the kernel."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


#: Whose CPU time is split out of the machine's: this process (the client,
#: with its probes and the latency proxy), the API's gunicorn worker, the store.
CPU_PARTS = ("client", "api", "store")


class CpuMeter:
    """CPU seconds per 100 MB of an upload: the machine's, and each of
    ``CPU_PARTS`` (user + system time of its processes, from psutil)."""

    def __init__(self, worker: psutil.Process, store: psutil.Process, size: int) -> None:
        self._parts = {"client": [psutil.Process()], "api": [worker], "store": [store, *store.children(True)]}
        self._scale = 100 * MB / size

    def _now(self) -> dict[str, float]:
        now = {"machine": machine_cpu_s()}
        for name, procs in self._parts.items():
            now[name] = sum(sum(p.cpu_times()[:2]) for p in procs)
        return now

    def __enter__(self) -> CpuMeter:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.per_100mb = {k: (end[k] - self._start[k]) * self._scale for k in end}


def api_upload(port: int, secret: str, path: Path, worker: psutil.Process, store: psutil.Process) -> dict:
    """POST the file to /v1/assets/upload, streaming it, while sampling the
    worker's RSS and probing /healthz."""
    size = path.stat().st_size
    headers = {"Content-Type": "audio/wav", "Content-Length": str(size), "x-api-key": secret}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600, blocksize=SEND_BLOCK)
    with open(path, "rb") as f:
        conn.connect()  # connection set-up outside the timed part
        with RssSampler(worker) as rss, HealthProbe(port) as health:
            t0 = time.perf_counter()
            with CpuMeter(worker, store, size) as cpu:
                conn.request("POST", "/v1/assets/upload", body=f, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            dt = time.perf_counter() - t0
    conn.close()
    if resp.status != 201:
        raise RuntimeError(f"upload of {path.name} returned {resp.status}: {raw[:500]!r}")
    body = json.loads(raw)
    if body.get("size_bytes") != size:
        raise RuntimeError(f"API stored {body.get('size_bytes')} bytes, sent {size}")
    return {
        "mb_s": size / MB / dt,
        "seconds": dt,
        "cpu_per_100mb": cpu.per_100mb,
        "rss_growth_mb": rss.growth_mb,
        "healthz_ms": health.latencies_ms,
        "healthz_failures": health.failures,
        "asset_id": body["asset_id"],
    }


def direct_upload(
    client: Minio, path: Path, part_size: int, port: int, worker: psutil.Process, store: psutil.Process
) -> dict:
    """``put_object`` of the file, under the same probes as an API upload
    (the worker's RSS sampled, ``/healthz`` of the idle API every 10 ms), so
    both paths run with the same measuring load on the machine."""
    size = path.stat().st_size
    name = f"direct/{path.name}"
    with open(path, "rb") as f, RssSampler(worker), HealthProbe(port):
        t0 = time.perf_counter()
        with CpuMeter(worker, store, size) as cpu:
            client.put_object(DIRECT_BUCKET, name, f, length=size, part_size=part_size)
        dt = time.perf_counter() - t0
    client.remove_object(DIRECT_BUCKET, name)
    return {"mb_s": size / MB / dt, "seconds": dt, "cpu_per_100mb": cpu.per_100mb}


# --------------------------------------------------------------------- stack


def start_api(tmp: Path, stack: dict[str, str], port: int, name: str, root: Path = REPO_ROOT):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOQ_")}
    env.update(stack)
    log_path = tmp / f"{name}.log"
    proc = services.spawn(services.gunicorn_cmd(f"127.0.0.1:{port}", workers=1), log_path, env=env, cwd=root)
    services.wait_http(f"http://127.0.0.1:{port}/healthz", proc, log_path)
    pin(proc.pid, OTHER_CPUS)
    master = psutil.Process(proc.pid)
    deadline = time.monotonic() + 30
    while len(master.children()) != 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"expected one gunicorn worker, found {master.children()}")
        time.sleep(0.1)
    return proc, master.children()[0], log_path


def measure(
    label: str,
    s3_port: int,
    redis_port: int,
    tmp: Path,
    files: dict[int, Path],
    reps: int,
    extra: dict[str, str],
    store: psutil.Process,
    before: Path | None = None,
) -> dict:
    """Interleaved rounds of API and direct uploads of every size, with the
    API and the direct client both pointed at ``s3_port``; with ``before``, a
    second API run from that checkout takes part in every round too."""
    api_port = services.free_port()
    stack = services.stack_env(
        redis_port=redis_port,
        s3_port=s3_port,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        public_url=f"http://127.0.0.1:{api_port}",
        bucket=API_BUCKET,
    )
    stack["AUDIOQ_LOG_LEVEL"] = "WARNING"
    stack.update(extra)
    settings = Settings.from_env(stack)
    storage = Storage(settings)
    storage.ensure_bucket()
    direct = Minio(f"127.0.0.1:{s3_port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    if not direct.bucket_exists(DIRECT_BUCKET):
        direct.make_bucket(DIRECT_BUCKET)
    r = db.connect(settings)
    secret, _ = keys.create(r, settings, plan="enterprise", credits=0, name="bench")
    r.close()

    apis = {"api": (api_port, *start_api(tmp, stack, api_port, f"api-{label}"))}
    if before is not None:
        port = services.free_port()
        apis["before"] = (port, *start_api(tmp, {**stack, "AUDIOQ_PUBLIC_URL": f"http://127.0.0.1:{port}"},
                                           port, f"before-{label}", before))  # fmt: skip
    probe = (api_port, apis["api"][2], store)  # what the direct uploads' probes and meter watch
    try:
        for path in files.values():  # warm-up: imports, pools, first S3 calls
            for port, _, worker, _ in apis.values():
                freshen(path)
                storage.delete(f"originals/{api_upload(port, secret, path, worker, store)['asset_id']}")
            direct_upload(direct, path, settings.upload_part_bytes, *probe)
            break
        runs: dict[int, dict[str, list]] = {
            size: {
                "api": [],
                "before": [],
                "direct": [],
                "rss": [],
                "healthz": [],
                "failures": [],
                "api_cpu": [],
                "direct_cpu": [],
            }
            for size in files
        }
        for rep in range(reps):
            for size, path in files.items():
                order = [*apis, "direct"]
                if rep % 2:
                    order.reverse()
                for which in order:
                    freshen(path)
                    if which == "direct":
                        d = direct_upload(direct, path, settings.upload_part_bytes, *probe)
                        runs[size]["direct"].append(d["mb_s"])
                        runs[size]["direct_cpu"].append(d["cpu_per_100mb"])
                        continue
                    port, _, worker, _ = apis[which]
                    a = api_upload(port, secret, path, worker, store)
                    storage.delete(f"originals/{a['asset_id']}")
                    runs[size][which].append(a["mb_s"])
                    if which == "api":
                        runs[size]["api_cpu"].append(a["cpu_per_100mb"])
                        runs[size]["rss"].append(a["rss_growth_mb"])
                        runs[size]["healthz"].extend(a["healthz_ms"])
                        runs[size]["failures"].append(a["healthz_failures"])
                last = {
                    k: v[-1] for k, v in runs[size].items() if k in ("api", "before", "direct", "rss") and v
                }
                log(
                    f"  [{label}] {size} MB round {rep + 1}: API {last['api']:.1f} MB/s "
                    f"(worker RSS +{last['rss']:.1f} MB), direct {last['direct']:.1f} MB/s"
                    + (f", before {last['before']:.1f} MB/s" if "before" in last else "")
                )
    except BaseException:
        for _, _, _, log_path in apis.values():
            log(f"--- {log_path.name} (tail) ---\n{log_path.read_text()[-3000:]}")
        raise
    finally:
        for _, proc, _, _ in apis.values():
            services.stop_process(proc)
    rows = []
    for size, d in runs.items():
        api_med, direct_med = statistics.median(d["api"]), statistics.median(d["direct"])
        rows.append(
            {
                "store": label,
                "size_mb": size,
                "api_mb_s": round(api_med, 1),
                "direct_mb_s": round(direct_med, 1),
                "ratio": round(api_med / direct_med, 2),
                "api_cpu_s_per_100mb": _median_cpu(d["api_cpu"]),
                "direct_cpu_s_per_100mb": _median_cpu(d["direct_cpu"]),
                "rss_growth_mb": round(max(d["rss"]), 1),
                "healthz_p99_ms": round(p99(d["healthz"]), 1),
                "healthz_max_ms": round(max(d["healthz"], default=float("nan")), 1),
                "healthz_samples": len(d["healthz"]),
                "healthz_failures": sum(d["failures"]),
                "before_mb_s": round(statistics.median(d["before"]), 1) if d["before"] else None,
                "api_runs_mb_s": [round(x, 1) for x in d["api"]],
                "before_runs_mb_s": [round(x, 1) for x in d["before"]],
                "direct_runs_mb_s": [round(x, 1) for x in d["direct"]],
                "rss_runs_mb": [round(x, 1) for x in d["rss"]],
            }
        )
    return {"rows": rows, "part_size_mb": settings.upload_part_bytes // MB,
            "parts_in_flight": settings.upload_parts_in_flight}  # fmt: skip


def _median_cpu(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 2) for k in ("machine", *CPU_PARTS)}


# ---------------------------------------------------------------- slow flood


def _slow_upload(port: int, secret: str) -> tuple[int, str, float]:
    """An upload that promises 10 MB, sends one byte and stalls; (status, code,
    seconds until answered)."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(
            f"POST /v1/assets/upload HTTP/1.1\r\nHost: bench\r\nx-api-key: {secret}\r\n"
            f"Content-Type: audio/wav\r\nContent-Length: {10 * MB}\r\n\r\nR".encode()
        )
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    (
                        ln.split(b":")[1]
                        for ln in head.split(b"\r\n")
                        if ln.lower().startswith(b"content-length")
                    ),
                    0,
                )
            )
            while len(body) < length:
                body += sock.recv(65536)
            status, code = int(head.split()[1]), json.loads(body).get("code", "")
        except (OSError, ValueError, IndexError):
            status, code = 0, "connection failed"
    return status, code, time.perf_counter() - t0


def slow_flood(n: int, redis_port: int, s3_port: int, s3_pid: int, tmp: Path) -> dict:
    """``n`` uploads from one pro key that send a byte and stall, at once,
    with production's settings; meanwhile /healthz is probed and another key
    uploads a small file five times."""
    api_port = services.free_port()
    stack = services.stack_env(
        redis_port=redis_port, s3_port=s3_port, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
        public_url=f"http://127.0.0.1:{api_port}", bucket=API_BUCKET,
    )  # fmt: skip
    stack["AUDIOQ_LOG_LEVEL"] = "WARNING"
    settings = Settings.from_env(stack)
    r = db.connect(settings)
    slow_secret, _ = keys.create(r, settings, plan="pro", credits=10, name="slow")
    other_secret, _ = keys.create(r, settings, plan="pro", credits=10, name="other")
    r.close()
    small = make_wav(tmp / "small.wav", 1, seed=7)
    proc, worker, log_path = start_api(tmp, stack, api_port, "api-slow")
    try:
        from concurrent.futures import ThreadPoolExecutor

        with HealthProbe(api_port) as health, ThreadPoolExecutor(200) as pool:
            t0 = time.perf_counter()
            flood = [pool.submit(_slow_upload, api_port, slow_secret) for _ in range(n)]
            time.sleep(1.0)
            other = []
            for _ in range(5):
                freshen(small)
                t = time.perf_counter()
                try:
                    api_upload(api_port, other_secret, small, worker, psutil.Process(s3_pid))
                    other.append((201, time.perf_counter() - t))
                except RuntimeError as e:  # the status is in the message
                    other.append((str(e)[:60], time.perf_counter() - t))
            results = [f.result() for f in flood]
            elapsed = time.perf_counter() - t0
    finally:
        services.stop_process(proc)
    codes = collections.Counter(f"{st} {code}" for st, code, _ in results)
    held = [sec for st, _, sec in results if st == 408]
    return {
        "n": n,
        "answers": dict(codes.most_common()),
        "refused_within_s_p99": round(p99([sec for st, _, sec in results if st == 429]), 2),
        "held_answered_after_s": [round(x, 1) for x in held],
        "healthz_p99_ms": round(p99(health.latencies_ms), 1),
        "healthz_max_ms": round(max(health.latencies_ms, default=float("nan")), 1),
        "healthz_probes": len(health.latencies_ms),
        "healthz_failures": health.failures,
        "other_key_uploads": [st for st, _ in other],
        "other_key_upload_s_median": round(statistics.median(t for _, t in other), 3),
        "seconds": round(elapsed, 1),
    }


def run(
    reps: int,
    sizes: list[int],
    latency_ms: float,
    tmp: Path,
    extra: dict[str, str],
    slow: int,
    before: Path | None = None,
) -> dict:
    procs: list = []
    try:
        log("starting redis-server and SeaweedFS S3 ...")
        redis_proc = services.start_redis(tmp / "redis")
        procs.append(redis_proc)
        s3_proc = services.start_s3(tmp / "s3", ACCESS_KEY, SECRET_KEY)
        procs.append(s3_proc)
        pin(s3_proc.popen.pid, STORE_CPUS)
        pin(redis_proc.popen.pid, OTHER_CPUS)
        pin(os.getpid(), OTHER_CPUS)
        files_dir = tmp / "files"
        files_dir.mkdir()
        log(f"writing WAV files of {sizes} MB ...")
        files = {size: make_wav(files_dir / f"bench-{size}mb.wav", size, seed=size) for size in sizes}
        load_before = os.getloadavg()
        rp, sp = redis_proc.ports["redis"], s3_proc.ports["s3"]
        store = psutil.Process(s3_proc.popen.pid)
        local = measure("local", sp, rp, tmp, files, reps, extra, store, before)
        proxy = DelayProxy(sp, latency_ms / 1000)
        try:
            delayed = measure(f"+{latency_ms:g} ms", proxy.port, rp, tmp, files, reps, extra, store, before)
        finally:
            proxy.close()
        flood = slow_flood(slow, rp, sp, s3_proc.popen.pid, tmp) if slow else None
        return {
            "before": str(before) if before else None,
            "slow_flood": flood,
            "reps": reps,
            "latency_ms": latency_ms,
            "part_size_mb": local["part_size_mb"],
            "parts_in_flight": local["parts_in_flight"],
            "pinned": {"store": sorted(STORE_CPUS), "other": sorted(OTHER_CPUS)} if STORE_CPUS else None,
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "rows": local["rows"] + delayed["rows"],
        }
    finally:
        for proc in reversed(procs):
            proc.stop()


def _cpu_cell(cpu: dict[str, float], parts: tuple[str, ...]) -> str:
    return f"{cpu['machine']:.2f} ({' / '.join(f'{cpu[p]:.2f}' for p in parts)})"


def table(res: dict) -> str:
    before = res.get("before")
    lines = [
        "| store | size | API MB/s | direct MB/s | ratio | "
        + ("API before MB/s (ratio) | " if before else "")
        + "CPU s per 100 MB, API path: machine (client / API worker / store) | "
        + "direct: machine (client / store) | worker RSS growth (max) | "
        + "/healthz p99 (max) during upload |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if before else ""),
    ]
    for s in res["rows"]:
        was = f"{s['before_mb_s']:.1f} ({s['before_mb_s'] / s['direct_mb_s']:.2f}) | " if before else ""
        lines.append(
            f"| {s['store']} | {s['size_mb']} MB | {s['api_mb_s']:.1f} | {s['direct_mb_s']:.1f} | "
            f"{s['ratio']:.2f} | {was}{_cpu_cell(s['api_cpu_s_per_100mb'], CPU_PARTS)} | "
            f"{_cpu_cell(s['direct_cpu_s_per_100mb'], ('client', 'store'))} | "
            f"{s['rss_growth_mb']:.1f} MB | {s['healthz_p99_ms']:.1f} ms "
            f"({s['healthz_max_ms']:.1f} ms, {s['healthz_samples']} probes"
            + (f", {s['healthz_failures']} failed" if s["healthz_failures"] else "")
            + ") |"
        )
    lines.append("")
    lines.append(
        f"Medians of {res['reps']} interleaved rounds; MB = 2^20 bytes; part size {res['part_size_mb']} MB, "
        f"{res['parts_in_flight']} parts in flight (API), the SDK's 3 parallel parts (direct). "
        f"Targets: ratio >= {RATIO_TARGET} at 45 MB and above, RSS growth < {RSS_TARGET_MB} MB, "
        f"/healthz p99 < {HEALTHZ_TARGET_MS} ms. Load average (1/5/15 min) before "
        f"{'/'.join(map(str, res['load_before']))}, after {'/'.join(map(str, res['load_after']))}."
        + (
            f" Pinned: the store on CPU {res['pinned']['store']}, the rest on CPU {res['pinned']['other']}."
            if res.get("pinned")
            else ""
        )
    )
    flood = res.get("slow_flood")
    if flood:
        lines.append("")
        lines.append(
            f"{flood['n']} uploads from one pro key, each sending one byte then stalling, at once "
            f"(production settings): answers {flood['answers']}; refusals answered within "
            f"{flood['refused_within_s_p99']} s (p99); the held ones answered after "
            f"{flood['held_answered_after_s']} s. Meanwhile /healthz p99 {flood['healthz_p99_ms']} ms "
            f"(max {flood['healthz_max_ms']} ms, {flood['healthz_probes']} probes, "
            f"{flood['healthz_failures']} failed); another key's 1 MB uploads: "
            f"{flood['other_key_uploads']}, median {flood['other_key_upload_s_median']} s."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES_MB), help="file sizes in MB")
    ap.add_argument("--latency-ms", type=float, default=5.0, help="added S3 latency, each way (default 5)")
    ap.add_argument("--parts-in-flight", type=int, help="AUDIOQ_UPLOAD_PARTS_IN_FLIGHT for the API")
    ap.add_argument(
        "--slow", type=int, default=0, metavar="N", help="then N stalled uploads from one key at once"
    )
    ap.add_argument(
        "--before",
        type=Path,
        metavar="DIR",
        help="also run the API from this checkout (e.g. main) in every round",
    )
    ap.add_argument(
        "--pin-store",
        action="store_true",
        help="SeaweedFS (and the latency proxy) on the last CPU, everything else on the others: "
        "a store with CPUs of its own, as on another host",
    )
    args = ap.parse_args(argv)
    if args.pin_store:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            ap.error("--pin-store needs at least 2 CPUs")
        STORE_CPUS.add(cpus[-1])
        OTHER_CPUS.update(cpus[:-1])
    extra = {"AUDIOQ_UPLOAD_PARTS_IN_FLIGHT": str(args.parts_in_flight)} if args.parts_in_flight else {}
    tmp = Path(tempfile.mkdtemp(prefix="audioq-bench-"))
    try:
        res = run(args.reps, args.sizes, args.latency_ms, tmp, extra, args.slow, args.before)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=2) if args.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
