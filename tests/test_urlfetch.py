"""The SSRF-guarded fetcher against real HTTP(S) servers on 127.0.0.1.

Loopback is the one network a test can serve from, so the "fetch works"
tests allowlist it (as an operator would allowlist ``minio.internal``) and
the "refused" tests leave it out — and check that the server never saw a
request. Deadline and size limits are exercised with servers that drip,
stall, lie about Content-Length or stream chunked bodies.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.errors import ApiError
from shared.urlfetch import check_url, open_url, parse_allowlist, refusal

LOOPBACK = ["127.0.0.0/8", "::1/128"]
BODY = os.urandom(200_000)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host")))
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        route = parts[0]
        if route == "audio":
            self._send(200, BODY, Content_Type="audio/wav")
        elif route == "status":
            self._send(int(parts[1]), b"nope")
        elif route == "redirect":
            self._send(int(query.get("code", 302)), Location=query["to"])
        elif route == "noloc":
            self._send(302)
        elif route == "hops":
            n = int(parts[1])
            if n:
                self._send(307, Location=f"/hops/{n - 1}")
            else:
                self._send(200, b"done")
        elif route == "chunked":
            self._chunked(int(query["n"]))
        elif route == "declared":  # claims 10 MB, sends 1 kB
            self.send_response(200)
            self.send_header("Content-Length", "10000000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.close_connection = True
        elif route == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"x" * 100)
            self.close_connection = True
        elif route == "drip":  # one byte every 50 ms: each recv is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self._drip(1000, 0.05)
        elif route == "stall":  # headers only after 2 s
            time.sleep(2)
            self._send(200, b"late")
        else:
            self._send(404)

    def _chunked(self, n: int) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for start in range(0, n, 16384):
                chunk = BODY[start : min(n, start + 16384)]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading

    def _drip(self, n: int, every_s: float) -> None:
        deadline = time.monotonic() + 3
        try:
            for _ in range(n):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(every_s)
                if time.monotonic() > deadline:
                    break
        except OSError:
            pass
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.requests: list[tuple[str, str | None]] = []

    def handle_error(self, request, client_address) -> None:
        pass  # clients hang up on purpose in these tests

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


def _serve(tls: ssl.SSLContext | None = None):
    server = _Server(tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def server():
    srv, thread = _serve()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _fetch(url: str, allow=LOOPBACK, *, timeout_s: float = 5, max_bytes: int = 10_000_000, **kw) -> bytes:
    with open_url(url, allow=allow, timeout_s=timeout_s, max_bytes=max_bytes, **kw) as r:
        return r.read()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- fetching


def test_fetch_streams_the_body_with_its_metadata(server):
    url = server.url("/audio/my%20track.wav?sig=a%2Fb&x=1", host="localhost")
    with open_url(url, allow=LOOPBACK, timeout_s=5, max_bytes=len(BODY)) as r:
        assert (r.status, r.content_type, r.content_length) == (200, "audio/wav", len(BODY))
        assert r.final_url == url
        assert r.name == "my track.wav"
        pieces = []
        while chunk := r.read(50_000):
            assert len(chunk) <= 50_000
            pieces.append(chunk)
    assert b"".join(pieces) == BODY
    assert len(pieces) >= 4
    # The request went out as given, with the host name (not the address) in Host.
    assert server.requests[-1] == ("/audio/my%20track.wav?sig=a%2Fb&x=1", f"localhost:{server.port}")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/audio/x/song.mp3", "song.mp3"),
        ("/audio/a%2F..%2Fetc%5Cb.wav", "b.wav"),
        ("/audio/", ""),
        ("/audio/%0Aa.wav", "a.wav"),
    ],
)
def test_the_name_is_a_safe_last_path_segment(server, path, name):
    with open_url(server.url(path), allow=LOOPBACK, timeout_s=5, max_bytes=len(BODY)) as r:
        assert r.name == name


def test_a_hostname_allowlist_entry_allows_that_name_only(server):
    assert _fetch(server.url("/audio/a.wav", host="localhost"), allow=["localhost"]) == BODY
    with pytest.raises(ApiError) as e:
        _fetch(server.url("/audio/a.wav"), allow=["localhost"])
    assert e.value.status == 400


def test_a_network_allowlist_entry_allows_that_network_only(server):
    with pytest.raises(ApiError) as e:
        _fetch(server.url("/audio/a.wav"), allow=["10.0.0.0/8", "other.internal"])
    assert e.value.status == 400


# --------------------------------------------------------------------------- refused addresses

REFUSED_HOSTS = [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",  # the same, in hex
    "2130706433",  # 127.0.0.1 as one decimal number
    "017700000001",  # ... in octal
    "0x7f.1",
    "127.1",
    "0.0.0.0",
    "[::]",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",  # cloud metadata
    "[fe80::1]",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[fec0::1]",
    "224.0.0.1",
    "[ff02::1]",
    "240.0.0.1",
    "255.255.255.255",
    "[2002:7f00:1::]",  # 6to4 wrapping 127.0.0.1
    "[64:ff9b::a9fe:a9fe]",  # NAT64 wrapping 169.254.169.254
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_non_public_addresses_are_refused_without_connecting(server, host):
    seen = len(server.requests)
    t0 = time.monotonic()
    with pytest.raises(ApiError) as e:
        _fetch(f"http://{host}:{server.port}/audio/a.wav", allow=[], timeout_s=2)
    assert e.value.status == 400, e.value.message
    assert "non-public address" in e.value.message
    assert len(server.requests) == seen
    assert time.monotonic() - t0 < 1  # refused, not timed out


def test_check_url_refuses_literal_addresses_and_leaves_names_to_the_fetch():
    for host in ("127.0.0.1", "[::ffff:127.0.0.1]", "169.254.169.254", "[fc00::1]"):
        with pytest.raises(ApiError) as e:
            check_url(f"http://{host}/a.wav", [])
        assert e.value.status == 400
        check_url(f"http://{host}/a.wav", ["0.0.0.0/0", "::/0"])
    check_url("http://localhost/a.wav", [])  # no DNS here; open_url resolves and refuses
    check_url("https://example.com:8443/a%20b.wav?x=1#frag", [])


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"],
)
def test_public_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "shared"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("fec0::1", "site-local"),
        ("::ffff:10.0.0.1", "private, as IPv4 in IPv6"),
        ("192.0.2.1", "private"),  # documentation (TEST-NET-1)
    ],
)
def test_non_public_addresses_are_named(address, why):
    assert refusal(ipaddress.ip_address(address)).startswith(why)


def test_allowlist_entries_are_parsed_strictly():
    allow = parse_allowlist(["127.0.0.0/8", " ::1/128 ", "MinIO.Internal", ""])
    assert allow.allows_address(ipaddress.ip_address("127.9.9.9"))
    assert allow.allows_address(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not allow.allows_address(ipaddress.ip_address("10.0.0.1"))
    assert allow.allows_host("minio.internal") and not allow.allows_host("minio.internal.evil.com")
    for bad in (["10.0.0.0/33"], ["not a host"], ["300.1.2.3"]):
        with pytest.raises(ValueError):
            parse_allowlist(bad)
    with pytest.raises(ValueError):
        parse_allowlist("127.0.0.0/8")  # a string, not a list of entries


# --------------------------------------------------------------------------- schemes and syntax


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.wav",
        "gopher://127.0.0.1:70/_stats",
        "javascript:alert(1)",
        "data:audio/wav;base64,AAAA",
        "//example.com/a.wav",
        "example.com/a.wav",
        "http:///a.wav",
        "http://user:secret@example.com/a.wav",
        "http://example.com:0/a.wav",
        "http://example.com:99999/a.wav",
        "http://exa mple.com/a.wav",
        "http://example.com/a b.wav",
        "http://%31%32%37.0.0.1/a.wav",
        "http://[::1/a.wav",
        "",
        "http://example.com/" + "a" * 3000,
    ],
)
def test_bad_urls_are_400(url):
    with pytest.raises(ApiError) as e:
        check_url(url, LOOPBACK)
    assert e.value.status == 400
    assert e.value.message.startswith("url ")
    with pytest.raises(ApiError) as e:
        _fetch(url)
    assert e.value.status == 400


def test_messages_name_the_field():
    with pytest.raises(ApiError) as e:
        check_url("ftp://example.com/", [], field="callbackUrl")
    assert e.value.message == "callbackUrl must be an http or https URL (got ftp:)"


# --------------------------------------------------------------------------- redirects


def test_redirects_are_followed_and_rechecked(server):
    url = server.url("/redirect?code=301&to=/audio/next.wav")
    with open_url(url, allow=LOOPBACK, timeout_s=5, max_bytes=len(BODY)) as r:
        assert r.read() == BODY
        assert r.final_url == server.url("/audio/next.wav")
        assert r.name == "next.wav"
    assert _fetch(server.url("/hops/5")) == b"done"
    with pytest.raises(ApiError) as e:
        _fetch(server.url("/hops/6"))
    assert (e.value.status, "more than 5 redirects" in e.value.message) == (422, True)


@pytest.mark.parametrize(
    "target",
    ["http://127.0.0.1:{port}/audio/a.wav", "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd"],
)
def test_a_redirect_to_a_refused_url_is_400(server, target):
    # Only the name "localhost" is allowlisted; the redirect leads elsewhere.
    to = target.format(port=server.port)
    seen = len(server.requests)
    with pytest.raises(ApiError) as e:
        _fetch(server.url(f"/redirect?to={to}", host="localhost"), allow=["localhost"], timeout_s=2)
    assert e.value.status == 400
    assert e.value.message.startswith(f"url redirected to {to}, which ")
    assert len(server.requests) == seen + 1  # the redirect itself, nothing after it


def test_a_redirect_without_location_is_422(server):
    with pytest.raises(ApiError) as e:
        _fetch(server.url("/noloc"))
    assert e.value.status == 422


# --------------------------------------------------------------------------- size


def test_a_declared_length_over_the_limit_is_refused_before_reading(server):
    with (
        pytest.raises(ApiError) as e,
        open_url(server.url("/declared"), allow=LOOPBACK, timeout_s=5, max_bytes=10**6),
    ):
        pytest.fail("the body must not be offered")
    assert e.value.status == 413
    assert "(1000000 bytes)" in e.value.message


def test_the_limit_is_inclusive(server):
    assert _fetch(server.url("/audio/a.wav"), max_bytes=len(BODY)) == BODY
    with pytest.raises(ApiError) as e:
        _fetch(server.url("/audio/a.wav"), max_bytes=len(BODY) - 1)
    assert e.value.status == 413


def test_a_chunked_body_over_the_limit_stops_while_streaming(server):
    got = 0
    with (
        pytest.raises(ApiError) as e,
        open_url(server.url("/chunked?n=150000"), allow=LOOPBACK, timeout_s=5, max_bytes=100_000) as r,
    ):
        assert r.content_length is None
        while chunk := r.read(8192):
            got += len(chunk)
    assert e.value.status == 413
    assert got <= 100_000


def test_a_chunked_body_under_the_limit_arrives_whole(server):
    assert _fetch(server.url("/chunked?n=150000"), max_bytes=150_000) == BODY[:150_000]


# --------------------------------------------------------------------------- time


def test_a_dripping_body_hits_the_overall_deadline(server):
    t0 = time.monotonic()
    got = 0
    with (
        pytest.raises(ApiError) as e,
        open_url(server.url("/drip"), allow=LOOPBACK, timeout_s=0.6, max_bytes=10**6) as r,
    ):
        while chunk := r.read(4096):
            got += len(chunk)
    elapsed = time.monotonic() - t0
    assert e.value.status == 504
    assert 0.55 < elapsed < 1.2
    assert got < 1000  # the body was not complete when the deadline struck


def test_a_server_that_stalls_before_answering_hits_the_deadline(server):
    t0 = time.monotonic()
    with pytest.raises(ApiError) as e:
        _fetch(server.url("/stall"), timeout_s=0.5)
    assert e.value.status == 504
    assert "0.5 s" in e.value.message
    assert time.monotonic() - t0 < 1.2


# --------------------------------------------------------------------------- upstream failures


@pytest.mark.parametrize("status", [404, 403, 500, 503])
def test_upstream_errors_are_422_naming_the_status(server, status):
    with pytest.raises(ApiError) as e:
        _fetch(server.url(f"/status/{status}"))
    assert e.value.status == 422
    assert f"answered {status} " in e.value.message


def test_connection_refused_and_unknown_hosts_are_422():
    with pytest.raises(ApiError) as e:
        _fetch(f"http://127.0.0.1:{_free_port()}/a.wav")
    assert (e.value.status, "connection refused" in e.value.message) == (422, True)
    with pytest.raises(ApiError) as e:
        _fetch("http://no-such-host.invalid/a.wav")
    assert (e.value.status, "cannot resolve host no-such-host.invalid" in e.value.message) == (422, True)


def test_a_body_shorter_than_its_content_length_is_422(server):
    with pytest.raises(ApiError) as e:
        _fetch(server.url("/truncated"))
    assert e.value.status == 422
    assert "100 of 5000 bytes" in e.value.message


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An HTTPS server whose self-signed certificate names only "localhost"."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    srv, thread = _serve(server_ctx)
    yield srv, ssl.create_default_context(cafile=str(cert))
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_https_connects_to_the_checked_address_and_verifies_the_name(tls_server):
    srv, client_ctx = tls_server
    assert _fetch(srv.url("/audio/a.wav", host="localhost"), tls=client_ctx) == BODY
    assert srv.requests[-1] == ("/audio/a.wav", f"localhost:{srv.port}")
    # Same address, but the URL names it by IP, which the certificate does not cover.
    with pytest.raises(ApiError) as e:
        _fetch(srv.url("/audio/a.wav"), tls=client_ctx)
    assert (e.value.status, "certificate is not valid" in e.value.message) == (422, True)
    # The system's CAs do not trust a self-signed certificate.
    with pytest.raises(ApiError) as e:
        _fetch(srv.url("/audio/a.wav", host="localhost"))
    assert (e.value.status, "certificate is not valid" in e.value.message) == (422, True)
