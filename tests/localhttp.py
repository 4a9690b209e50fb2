"""A real HTTP server on 127.0.0.1 for tests: serves files and redirects,
and records what it receives (callback deliveries)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """``get[path] = (status, headers, body)``; ``post_status`` is consumed one
    status per POST (then 200); every POST lands in ``received``."""

    get: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    post_status: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for(self, n: int, timeout: float = 30.0, predicate: Callable[[], bool] | None = None) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= n and (predicate is None or predicate()):
                return
            self.arrived.wait(0.1)
            self.arrived.clear()
        raise AssertionError(f"expected {n} requests, got {len(self.received)}")


def start(server: Server) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            status, headers, body = server.get.get(self.path, (404, {}, b"not found"))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            server.received.append(Received(self.path, dict(self.headers.items()), body))
            status = server.post_status.pop(0) if server.post_status else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            server.arrived.set()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd
