"""Outbound HTTP to URLs that users give us, guarded against SSRF.

Used to fetch audio from the ``url`` of ``POST /tasks`` (:func:`open_url`)
and, through :mod:`shared.webhooks`, to POST callbacks. Both point our
servers at an address a client chose, so every request goes through one
guard:

* **Scheme**: ``http`` and ``https`` only; no credentials in the URL.
* **Address**: the host is resolved once (``socket.getaddrinfo``) and the
  request is refused (400) if *any* resolved address is not public unicast:
  unspecified, loopback, private (RFC 1918), shared (100.64.0.0/10),
  link-local (169.254.0.0/16 — the cloud metadata service — and fe80::/10),
  multicast, reserved or documentation ranges, unique-local (fc00::/7) or
  site-local (fec0::/10) IPv6, and IPv6 forms that embed such an IPv4
  address (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64
  ``64:ff9b::/96``). Spellings such as ``http://2130706433/`` or
  ``http://0x7f.1/`` are caught because the check runs on what the resolver
  returns, not on the text.
* **Pinning**: the connection goes to an address that was checked — there
  is no second lookup, so a DNS answer that changes between check and
  connect (DNS rebinding) cannot steer it — while the ``Host`` header, TLS
  SNI and certificate verification use the original host name.
* **Allowlist**: operator entries, each a CIDR network (``127.0.0.0/8``,
  ``::1/128``) whose addresses are allowed, or an exact host name
  (``minio.internal``) whose addresses are all allowed.
* **Redirects** (fetch only): at most :data:`MAX_REDIRECTS`, every hop
  re-checked (scheme and address) as if it had been given directly.
* **Time**: a connect timeout per address tried and one deadline for the
  whole exchange — DNS, connect, TLS, request, headers, every body read —
  so a server dripping one byte at a time cannot hold a worker past it.
  (The resolver call itself cannot be interrupted; the deadline is checked
  right after it.)
* **Size**: a declared ``Content-Length`` above ``max_bytes`` is refused
  before any body is read; otherwise reading stops as soon as more than
  ``max_bytes`` arrived (chunked or undeclared bodies).

Status codes of the :class:`~shared.errors.ApiError` raised by
:func:`open_url` (never a bare exception, never a 500):

=====  =====================================================================
400    the URL is refused: scheme, syntax, credentials, or a non-public
       address without an allowlist entry — also when a redirect leads there
413    the body is larger than ``max_bytes``
422    the URL could not be fetched and the client must fix it: the remote
       answered 4xx/5xx (the message names the status), the host does not
       resolve, the connection is refused or broken, TLS fails, the body is
       cut short, or too many redirects. 422 rather than 502 because the
       remote is the client's resource, not a backend of ours: a 5xx would
       tell the client that audioq failed.
504    the remote did not finish within ``timeout_s`` (or accept a
       connection within the connect timeout). 504 rather than 408: 408
       says the *client* was slow sending its request, which it was not.
=====  =====================================================================

Blocking sockets throughout: fine in Celery prefork workers and under
gunicorn's gevent workers (whose monkey-patching makes them cooperative).
"""

from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import quote, unquote, urljoin, urlsplit

from shared.errors import ApiError

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
MAX_URL_LENGTH = 2048
CONNECT_TIMEOUT_S = 5.0
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHARED_V4 = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
# Lower-case LDH labels (underscores occur in real names); anything else,
# percent-escapes included, is refused rather than guessed at.
_HOST_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters left as they are when re-quoting a path or query: RFC 3986
# reserved + unreserved, and '%' so existing escapes survive.
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


# --------------------------------------------------------------------------- allowlist


@dataclass(frozen=True)
class Allowlist:
    """Parsed operator allowlist: networks whose addresses may be reached and
    host names that may be reached whatever they resolve to."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    def allows_host(self, host: str) -> bool:
        return host.rstrip(".") in self.hosts

    def allows_address(self, ip: IPAddress) -> bool:
        candidates = [ip]
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            candidates.append(embedded)
        return any(c in net for c in candidates for net in self.networks if c.version == net.version)


def parse_allowlist(entries: Sequence[str]) -> Allowlist:
    """Parse allowlist entries (CIDR networks or exact host names).

    Raises ValueError for an entry that is neither — an operator's typo such
    as ``10.0.0.0/33`` must not silently become a host name. Call it once at
    settings load to fail early; the fetch functions call it (cached) too.
    """
    if isinstance(entries, str):
        raise ValueError("allowlist must be a sequence of entries, not one string")
    return _parse_allowlist(tuple(entries))


@functools.lru_cache(maxsize=32)
def _parse_allowlist(entries: tuple[str, ...]) -> Allowlist:
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        looks_numeric = "/" in entry or ":" in entry or re.fullmatch(r"[0-9.]+", entry)
        if looks_numeric:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                raise ValueError(f"allowlist entry {raw!r} is not a valid CIDR network") from None
        else:
            host = _ascii_host(entry)
            if host is None:
                raise ValueError(f"allowlist entry {raw!r} is neither a CIDR network nor a host name")
            hosts.add(host.rstrip("."))
    return Allowlist(tuple(networks), frozenset(hosts))


# --------------------------------------------------------------------------- addresses


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms
    that reach an IPv4 host: IPv4-mapped, 6to4, NAT64."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be reached without an allowlist entry ("loopback",
    "private", ...), or None if it is a public unicast address."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        why = refusal(embedded)
        return f"{why}, as IPv4 in IPv6" if why else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_V4:
        return "shared (carrier-grade NAT)"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


def _not_public(field: str, where: str, why: str) -> ApiError:
    return ApiError(
        400,
        f"{field} is refused: {where} a non-public address ({why}); fetching from private, loopback, "
        "link-local or reserved networks is not allowed",
        "url_refused",
    )


# --------------------------------------------------------------------------- URL checks


@dataclass(frozen=True)
class _Target:
    url: str  # as requested, without fragment
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal without brackets
    port: int
    request_target: str  # path + query, ASCII
    literal: IPAddress | None


def _ascii_host(host: str) -> str | None:
    try:
        ascii_host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
    except UnicodeError:
        return None
    return ascii_host if _HOST_RE.match(ascii_host) and len(ascii_host) <= 253 else None


def _parse(url: str, allowlist: Allowlist, field: str) -> _Target:
    if not isinstance(url, str) or not url:
        raise ApiError(400, f"{field} must be a non-empty http or https URL", "invalid_url")
    if len(url) > MAX_URL_LENGTH:
        raise ApiError(400, f"{field} is too long (at most {MAX_URL_LENGTH} characters)", "invalid_url")
    if _CONTROL_OR_SPACE.search(url):
        raise ApiError(
            400, f"{field} contains spaces or control characters; percent-encode them", "invalid_url"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ApiError(400, f"{field} is not a valid URL (bad host or port)", "invalid_url") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        got = f" (got {scheme}:)" if scheme else ""
        raise ApiError(400, f"{field} must be an http or https URL{got}", "invalid_url")
    if parts.username is not None or parts.password is not None:
        raise ApiError(400, f"{field} must not contain credentials (user:password@)", "invalid_url")
    if not parts.hostname:
        raise ApiError(400, f"{field} has no host", "invalid_url")
    if port == 0:
        raise ApiError(400, f"{field} has an invalid port", "invalid_url")

    literal: IPAddress | None
    try:
        literal = ipaddress.ip_address(parts.hostname)
        host = str(literal)
    except ValueError:
        literal = None
        ascii_host = _ascii_host(parts.hostname)
        if ascii_host is None:
            raise ApiError(400, f"{field} has an invalid host name", "invalid_url") from None
        host = ascii_host
    if literal is not None and literal.version == 6 and "%" in host:
        raise ApiError(400, f"{field} must not carry an IPv6 zone id", "invalid_url")
    if literal is not None and not allowlist.allows_address(literal):
        why = refusal(literal)
        if why is not None:
            raise _not_public(field, "it points to", why)

    path = quote(parts.path or "/", safe=_SAFE_PATH)
    query = quote(parts.query, safe=_SAFE_QUERY)
    return _Target(
        url=parts._replace(fragment="").geturl(),
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        request_target=path + (f"?{query}" if query else ""),
        literal=literal,
    )


def check_url(url: str, allow: Sequence[str], *, field: str = "url") -> None:
    """Cheap checks, no DNS: scheme, syntax, credentials, and — when the host
    is an IP literal — the address guard. Raises ApiError(400) naming
    ``field``. Host names are resolved and checked only when a request is
    made (:func:`open_url`, :func:`shared.webhooks.deliver`), as they must be:
    their answer can change by then."""
    _parse(url, parse_allowlist(allow), field)


# --------------------------------------------------------------------------- connections


class FetchFailed(Exception):
    """Talking to the remote failed (DNS, connect, TLS, broken connection) or
    the deadline passed. Callers turn it into their own error type."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out


class Deadline:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = float(timeout_s)
        self.at = time.monotonic() + self.timeout_s

    def remaining(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left


class _PinnedSocket:
    """What http.client sees as its socket: sends and reads under the deadline.

    http.client closes its connection as soon as it has read the headers of
    a ``Connection: close`` response and leaves the socket to the response's
    reader, as ``socket.makefile`` does; the reference count here keeps the
    socket open until that reader is closed too."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock = sock
        self._deadline = deadline
        self._readers = 0
        self._closed = False

    def sendall(self, data) -> None:
        self._sock.settimeout(self._deadline.remaining())
        self._sock.sendall(data)

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_DeadlineReader(self))

    def recv_into(self, b) -> int:
        # Each recv gets only the time left: a body dripped byte by byte
        # cannot outlast the deadline (a per-recv timeout would be reset by
        # every byte).
        self._sock.settimeout(self._deadline.remaining())
        return self._sock.recv_into(b)

    def release(self) -> None:
        self._readers -= 1
        if self._closed and self._readers <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._readers <= 0:
            self._sock.close()


class _DeadlineReader(io.RawIOBase):
    """The raw side of a response's buffered reader."""

    def __init__(self, sock: _PinnedSocket) -> None:
        self._sock: _PinnedSocket | None = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._sock is None:
            raise ValueError("read from a closed response")
        return self._sock.recv_into(b)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.release()
            self._sock = None
        super().close()


@functools.cache
def _default_tls() -> ssl.SSLContext:
    # Created on first use, i.e. after gevent's monkey-patching when there is one.
    return ssl.create_default_context()


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP/1.1 connection to addresses resolved and checked beforehand;
    ``host`` only names the server (Host header, SNI, certificate)."""

    def __init__(
        self,
        target: _Target,
        addresses: list[tuple[int, tuple]],
        deadline: Deadline,
        connect_timeout_s: float,
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(target.host, target.port)
        # The Host header leaves out the scheme's default port.
        self.default_port = 443 if target.scheme == "https" else 80
        self._target = target
        self._addresses = addresses
        self._deadline = deadline
        self._connect_timeout_s = connect_timeout_s
        self._tls = tls

    def connect(self) -> None:
        sock = self._connect_any()
        if self._target.scheme == "https":
            try:
                sock.settimeout(self._deadline.remaining())
                sock = (self._tls or _default_tls()).wrap_socket(sock, server_hostname=self._target.host)
            except BaseException:
                sock.close()
                raise
        self.sock = _PinnedSocket(sock, self._deadline)  # type: ignore[assignment]

    def _connect_any(self) -> socket.socket:
        error: OSError | None = None
        for family, sockaddr in self._addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(min(self._connect_timeout_s, self._deadline.remaining()))
                sock.connect(sockaddr)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as e:
                sock.close()
                error = e
        if isinstance(error, TimeoutError):
            raise FetchFailed(
                f"could not connect to {self._target.host} within {self._connect_timeout_s:g} s",
                timed_out=True,
            )
        raise FetchFailed(f"could not connect to {self._target.host}: {_describe(error)}")


def _describe(e: BaseException | None) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not valid ({e.verify_message})"
    if isinstance(e, ssl.SSLError):
        return f"TLS failed ({e.reason or e})"
    if isinstance(e, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(e, http.client.HTTPException):
        return f"the server's answer is not valid HTTP ({type(e).__name__})"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__


def _resolve(
    target: _Target, allowlist: Allowlist, field: str, deadline: Deadline
) -> list[tuple[int, tuple]]:
    """Resolve once and check every answer; return (family, sockaddr) pairs."""
    try:
        infos = socket.getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError):
        raise FetchFailed(f"cannot resolve host {target.host}") from None
    deadline.remaining()
    host_allowed = allowlist.allows_host(target.host)
    addresses: list[tuple[int, tuple]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not host_allowed and not allowlist.allows_address(ip):
            why = refusal(ip)
            if why is not None:
                log.info("refused %s: %s resolves to %s (%s)", field, target.host, ip, why)
                where = "it points to" if target.literal is not None else f"host {target.host} resolves to"
                raise _not_public(field, where, why)
        if (family, sockaddr) not in addresses:
            addresses.append((family, sockaddr))
    if not addresses:
        raise FetchFailed(f"cannot resolve host {target.host}")
    return addresses


@dataclass
class Exchange:
    """An open connection and its response (headers read)."""

    connection: http.client.HTTPConnection
    response: http.client.HTTPResponse

    def close(self) -> None:
        self.response.close()
        self.connection.close()


def _too_slow(target: _Target, deadline: Deadline) -> FetchFailed:
    return FetchFailed(f"{target.host} did not answer within {deadline.timeout_s:g} s", timed_out=True)


def exchange(
    method: str,
    url: str,
    *,
    allow: Sequence[str],
    deadline: Deadline,
    headers: Mapping[str, str],
    body: bytes | None = None,
    field: str = "url",
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    tls: ssl.SSLContext | None = None,
) -> Exchange:
    """One guarded request, no redirects followed: the open connection and
    the response with its headers read. The caller closes the exchange.

    Raises ApiError(400) when the URL or its address is refused, FetchFailed
    for network failures and the deadline. Shared by :func:`open_url` and
    :func:`shared.webhooks.deliver`.
    """
    allowlist = parse_allowlist(allow)
    target = _parse(url, allowlist, field)
    try:
        addresses = _resolve(target, allowlist, field, deadline)
        conn = _PinnedConnection(target, addresses, deadline, connect_timeout_s, tls)
    except TimeoutError:
        raise _too_slow(target, deadline) from None
    try:
        conn.request(method, target.request_target, body=body, headers=dict(headers))
        response = conn.getresponse()
    except BaseException as e:
        conn.close()
        if isinstance(e, TimeoutError):
            raise _too_slow(target, deadline) from None
        if isinstance(e, OSError | http.client.HTTPException):
            raise FetchFailed(f"talking to {target.host} failed: {_describe(e)}") from None
        raise
    return Exchange(conn, response)


# --------------------------------------------------------------------------- fetching


def _phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


class Response:
    """A fetched body, read in pieces with ``read(n)``.

    ``status``: the final 2xx status. ``content_type``: the Content-Type
    header as sent (``application/octet-stream`` if none). ``content_length``:
    the declared length, None for chunked or undeclared bodies. ``final_url``:
    the URL after redirects. ``name``: its decoded last path segment, safe as
    a file name ("" if the path ends in "/"). ``received``: bytes read so far.
    """

    def __init__(
        self,
        response: http.client.HTTPResponse,
        final_url: str,
        *,
        deadline: Deadline,
        max_bytes: int,
        field: str,
    ) -> None:
        self._response = response
        self._deadline = deadline
        self._field = field
        self.max_bytes = max_bytes
        self.status: int = response.status
        self.final_url = final_url
        self.content_type: str = response.getheader("Content-Type", "") or "application/octet-stream"
        self.content_length: int | None = None if response.chunked else response.length
        self.received = 0
        self.name = _last_segment(final_url)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left for n < 0), b"" at the end.

        Raises ApiError(413) once more than ``max_bytes`` arrived, 504 past
        the deadline, 422 if the connection breaks or the body is shorter than
        its Content-Length."""
        if n is None or n < 0:
            parts = []
            while chunk := self.read(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if n == 0:
            return b""
        # One byte past the limit at most: enough to know it is exceeded.
        want = min(n, self.max_bytes + 1 - self.received)
        try:
            chunk = self._response.read(want)
        except TimeoutError:
            raise ApiError(
                504,
                f"Fetching {self._field} took longer than {self._deadline.timeout_s:g} s",
                "fetch_timeout",
            ) from None
        except (OSError, http.client.HTTPException) as e:
            raise ApiError(
                422, f"Fetching {self._field} failed while reading: {_describe(e)}", "fetch_failed"
            ) from None
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise _too_large(self._field, self.max_bytes)
        if not chunk and self.content_length is not None and self.received < self.content_length:
            raise ApiError(
                422,
                f"Fetching {self._field} failed: the server sent {self.received} of "
                f"{self.content_length} bytes and closed the connection",
                "fetch_failed",
            )
        return chunk


def _last_segment(url: str) -> str:
    """The decoded last path segment ("" for a path ending in "/"), with no
    separators or control characters left in it: it becomes a file name."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]).replace("\\", "/").rsplit("/", 1)[-1]
    return _CONTROL.sub("", name).strip()[:255]


def _shorten(url: str, limit: int = 200) -> str:
    return url if len(url) <= limit else url[: limit - 3] + "..."


def _too_large(field: str, max_bytes: int) -> ApiError:
    mib = 1024 * 1024
    limit = f"{max_bytes / mib:g} MB" if max_bytes >= mib else f"{max_bytes} bytes"
    return ApiError(413, f"The file at {field} is larger than allowed ({limit})")


@contextmanager
def open_url(
    url: str,
    *,
    allow: Sequence[str],
    timeout_s: float,
    max_bytes: int,
    user_agent: str = "audioq",
    field: str = "url",
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Response]:
    """GET ``url`` under the guard and yield its streaming :class:`Response`.

    ``allow``: allowlist entries (CIDR networks or exact host names).
    ``timeout_s``: deadline in seconds for everything, from DNS to the last
    body byte read inside the ``with`` block. ``max_bytes``: body size
    limit. ``field`` names the URL in error messages (``url``,
    ``callbackUrl``). ``tls``: an SSL context to verify servers with instead
    of the system's CAs (a private CA; tests). Errors: see the module
    docstring. The connection is closed when the block exits.
    """
    deadline = Deadline(timeout_s)
    headers = {
        "User-Agent": user_agent,
        "Accept": "*/*",
        "Accept-Encoding": "identity",  # the bytes as stored, not a gzip of them
        "Connection": "close",
    }
    current = url
    for hop in range(MAX_REDIRECTS + 1):
        try:
            ex = exchange(
                "GET",
                current,
                allow=allow,
                deadline=deadline,
                headers=headers,
                # A refused hop reads "url redirected to X, which is refused: ...".
                field=field if hop == 0 else f"{field} redirected to {_shorten(current)}, which",
                connect_timeout_s=connect_timeout_s,
                tls=tls,
            )
        except FetchFailed as e:
            if e.timed_out:
                raise ApiError(504, f"Fetching {field} timed out: {e.message}", "fetch_timeout") from None
            raise ApiError(422, f"Fetching {field} failed: {e.message}", "fetch_failed") from None
        response = ex.response
        if response.status not in _REDIRECT_STATUSES:
            break
        location = response.getheader("Location")
        ex.close()
        if not location:
            raise ApiError(
                422,
                f"Fetching {field} failed: a redirect ({response.status}) without a Location",
                "fetch_failed",
            )
        if hop == MAX_REDIRECTS:
            raise ApiError(
                422, f"Fetching {field} failed: more than {MAX_REDIRECTS} redirects", "fetch_failed"
            )
        current = urljoin(current, location.strip())

    try:
        if not 200 <= response.status < 300:
            raise ApiError(
                422,
                f"Fetching {field} failed: the server answered {_phrase(response.status)}",
                "fetch_failed",
            )
        if not response.chunked and response.length is not None and response.length > max_bytes:
            raise _too_large(field, max_bytes)
        yield Response(response, current, deadline=deadline, max_bytes=max_bytes, field=field)
    finally:
        ex.close()
