"""gunicorn settings: ``gunicorn -c python:ops.gunicorn_conf 'web:create_app()'``.

gevent workers (``ops/gunicorn_worker.py``): a request that waits for a job (``Prefer: wait``, the
synchronous default of fast operations) parks a greenlet, not an OS worker,
so a handful of processes can hold hundreds of waiting requests.
"""

from __future__ import annotations

import socket
import time

# gevent's worker, answering gunicorn's own errors (414, 431, a malformed
# request) in the API's JSON error shape instead of HTML.
worker_class = "ops.gunicorn_worker.ApiWorker"
# Connections one worker process holds at once (each a greenlet: tens of KB
# while idle or trickling). Uploads cannot fill them: a key has at most its
# plan's concurrent_uploads bodies receiving (429 beyond, answered at once),
# and a body slower than AUDIOQ_UPLOAD_MIN_KB_S after the grace period is cut
# off (408). What bounds a worker's memory is the uploads receiving at full
# speed, about (AUDIOQ_UPLOAD_PARTS_IN_FLIGHT + 1) parts each (20 MB at the
# defaults), not this number. docs/operations.md sizes it.
worker_connections = 1000
timeout = 120
graceful_timeout = 30

# When the app refuses a request before reading its body (413 while
# streaming, 401/415 on an upload...), gunicorn would otherwise read and
# discard the rest of the body to keep the connection alive: a 400 MB upload
# would still be received in full. Instead close the connection, after a short,
# bounded linger so the client reads the error before the reset.
_LINGER_BYTES = 4 * 1024 * 1024
_LINGER_S = 2.0


def post_request(worker, req, environ, resp):
    if not environ.get("audioq.unread_body"):
        return
    req.must_close = True
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.5)
        deadline, drained = time.monotonic() + _LINGER_S, 0
        while drained < _LINGER_BYTES and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            drained += len(data)
    except OSError:
        pass


# /metrics under several worker processes: prometheus-client's multiprocess
# mode, its files in AUDIOQ_METRICS_DIR (a fresh temporary folder when unset),
# emptied at start; the variables are set before the workers fork and import
# the app, and a dead worker's live gauges are dropped.
def on_starting(server):
    import os
    import tempfile
    from pathlib import Path

    from shared.settings import Settings

    folder = Settings.from_env().metrics_dir or tempfile.mkdtemp(prefix="audioq-metrics-")
    path = Path(folder)
    if path.exists():
        for f in path.glob("*.db"):
            f.unlink()
    else:
        path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # read by prometheus-client itself
    os.environ["AUDIOQ_METRICS_DIR"] = folder


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
