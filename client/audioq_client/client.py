"""The API client: one :class:`Client` per base URL and key, over httpx.

Retries: an answer of 429 or 503 is retried after its ``Retry-After`` (or
an exponential backoff without one), as is a connection that could not be
made; anything else is raised as :class:`AudioqError` at once.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import mimetypes
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from audioq_client import sse
from audioq_client.errors import AudioqError
from audioq_client.models import Account, Asset, Job, JobUpdate, Page, RotatedSecret, Task

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = (429, 503)
CHUNK = 256 * 1024

Progress = Callable[[int], object]  # called with the number of bytes just moved


class _NoEventStream(Exception):
    """The server does not stream events for this job (an older server, a
    proxy in the way, a broken stream): follow it by polling instead."""


def retry_after(resp: httpx.Response, attempt: int, cap: float) -> float:
    """Seconds to wait before retrying: ``Retry-After`` (seconds or an HTTP
    date), else 1, 2, 4 ... s; never more than ``cap``."""
    value = resp.headers.get("Retry-After", "").strip()
    wait = float(2**attempt)
    if value.isdigit():
        wait = float(value)
    elif value:
        with contextlib.suppress(TypeError, ValueError):
            wait = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    return max(0.0, min(cap, wait))


def _error(resp: httpx.Response) -> AudioqError:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = body.get("message") or resp.text[:200] or resp.reason_phrase
    return AudioqError(resp.status_code, message, body.get("code", ""), body)


def output_links(result: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Every downloadable link in a job's result, as (file name, URL): the
    name is the field's (``vocals``, ``output``, ``midi``; its whole path,
    ``stems-vocals``, where two fields share a name) plus the extension of the
    linked object."""
    found: list[tuple[list[str], str]] = []

    def walk(d: dict[str, Any], path: list[str]) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, [*path, str(k)])
            elif isinstance(v, str) and v.startswith(("http://", "https://")):
                found.append(([*path, str(k)], v))

    walk(result or {}, [])
    leaves = [p[-1] for p, _ in found]
    return [
        ((p[-1] if leaves.count(p[-1]) == 1 else "-".join(p)) + Path(urlsplit(url).path).suffix, url)
        for p, url in found
    ]


class Client:
    """``Client(url, api_key)``; both default to ``AUDIOQ_URL`` (else
    http://127.0.0.1:8000) and ``AUDIOQ_API_KEY`` from the environment."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_retry_wait_s: float = 60.0,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.url = (url or os.environ.get("AUDIOQ_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("AUDIOQ_API_KEY")
        if not key:
            raise AudioqError(401, "No API key: pass --api-key or set AUDIOQ_API_KEY", "missing_api_key")
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.url,
            headers={"x-api-key": key, "User-Agent": "audioq-client/0.1"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _retrying(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            try:
                resp = send()
            except httpx.ConnectError:
                if attempt == self.max_retries:
                    raise
                self._sleep(min(self.max_retry_wait_s, 2.0**attempt))
                continue
            if resp.status_code in RETRY_STATUSES and attempt < self.max_retries:
                wait = retry_after(resp, attempt, self.max_retry_wait_s)
                resp.close()
                self._sleep(wait)
                continue
            return resp
        raise AssertionError("unreachable")

    def _request(self, method: str, path: str, *, content: Callable[[], Any] | None = None, **kw: Any) -> Any:
        """The JSON answer; ``content`` makes a fresh body for every attempt."""

        def send() -> httpx.Response:
            body = {"content": content()} if content is not None else {}
            return self._http.request(method, path, **body, **kw)

        resp = self._retrying(send)
        if resp.is_error:
            raise _error(resp)
        return resp.json()

    # ------------------------------------------------------------------ resources

    def account(self) -> Account:
        return Account.from_dict(self._request("GET", "/v1/account"))

    def rotate_webhook_secret(self) -> RotatedSecret:
        d = self._request("POST", "/v1/account/webhook-secret")
        return RotatedSecret(d["webhook_secret"], d.get("previous_valid_until"))

    def upload(self, path: str | Path, *, progress: Progress | None = None) -> Asset:
        """Stream a file to ``POST /v1/assets/upload`` (never read whole)."""
        path = Path(path)
        size = path.stat().st_size
        guessed = mimetypes.guess_type(path.name)[0] or ""
        ctype = guessed if guessed.startswith("audio/") else "application/octet-stream"

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while block := f.read(CHUNK):
                    yield block
                    if progress is not None:
                        progress(len(block))

        d = self._request(
            "POST",
            "/v1/assets/upload",
            content=chunks,
            headers={"Content-Type": ctype, "Content-Length": str(size)},
        )
        return Asset.from_dict(d)

    def asset(self, asset_id: str) -> Asset:
        return Asset.from_dict(self._request("GET", f"/v1/assets/{asset_id}"))

    def assets(self, *, limit: int = 50, cursor: str | None = None) -> Page:
        d = self._request("GET", "/v1/assets", params=_page(limit, cursor))
        return Page([Asset.from_dict(x) for x in d["items"]], d.get("next_cursor"))

    def submit(
        self,
        op: str,
        asset_id: str,
        options: dict[str, Any] | None = None,
        *,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Start ``POST /v1/{op}`` on an asset without waiting (``Prefer:
        respond-async``); follow it with :meth:`wait` or :meth:`updates`."""
        body: dict[str, Any] = {"asset_id": asset_id, **(options or {})}
        if callback_url:
            body["callback_url"] = callback_url
        headers = {"Prefer": "respond-async"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        d = self._request("POST", f"/v1/{op.strip('/')}", json=body, headers=headers)
        if "status" not in d:  # answered from the result cache: the full document has more
            return self.job(d["job_id"])
        return Job.from_dict(d)

    def job(self, job_id: str) -> Job:
        return Job.from_dict(self._request("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, *, limit: int = 50, cursor: str | None = None) -> Page:
        d = self._request("GET", "/v1/jobs", params=_page(limit, cursor))
        return Page([Job.from_dict(x) for x in d["items"]], d.get("next_cursor"))

    def cancel(self, job_id: str) -> Job:
        return Job.from_dict(self._request("DELETE", f"/v1/jobs/{job_id}"))

    def task(self, task_id: str) -> Task:
        return Task.from_dict(self._request("GET", f"/tasks/{task_id}"))

    def tasks(self, *, limit: int = 50, cursor: str | None = None) -> list[Task]:
        return [Task.from_dict(x) for x in self._request("GET", "/tasks", params=_page(limit, cursor))]

    # ------------------------------------------------------------------ following a job

    def updates(
        self, job_id: str, *, timeout: float | None = None, poll_s: float = 1.0
    ) -> Iterator[JobUpdate | Job]:
        """:class:`JobUpdate` on every status or progress change, then the
        finished :class:`Job` last. Reads ``GET /v1/jobs/{id}/events``
        (reconnecting with ``Last-Event-ID`` when the server ends a stream
        early); polls ``GET /v1/jobs/{id}`` every ``poll_s`` seconds where
        events are not available. ``timeout`` (seconds) raises TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_id = ""
        try:
            while True:
                for ev in self._events(job_id, last_id, deadline):
                    if ev.event == "progress":
                        last_id = ev.id
                        d = json.loads(ev.data)
                        yield JobUpdate(d["job_id"], d["status"], float(d["progress"]))
                    elif ev.event == "done":
                        yield Job.from_dict(json.loads(ev.data))
                        return
                _check(deadline, job_id)  # the stream reached its time bound: reconnect
        except _NoEventStream:
            yield from self._poll(job_id, deadline, poll_s)

    def wait(
        self,
        job_id: str,
        *,
        on_update: Callable[[JobUpdate], object] | None = None,
        timeout: float | None = None,
    ) -> Job:
        """The job once it has finished (completed, failed or cancelled)."""
        for u in self.updates(job_id, timeout=timeout):
            if isinstance(u, Job):
                return u
            if on_update is not None:
                on_update(u)
        raise AssertionError("unreachable")

    def _events(self, job_id: str, last_id: str, deadline: float | None) -> Iterator[sse.Event]:
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        # A read timeout well over the server's keep-alive interval (15 s).
        timeout = httpx.Timeout(self._http.timeout.connect, read=60.0)
        try:
            req = self._http.build_request(
                "GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=timeout
            )
            resp = self._retrying(lambda: self._http.send(req, stream=True))
            try:
                if resp.is_error:
                    resp.read()
                    err = _error(resp)
                    if err.code == "job_not_found" or err.status in (401, 403):
                        raise err
                    raise _NoEventStream(str(err))
                if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                    raise _NoEventStream("not an event stream")
                for ev in sse.parse(resp.iter_lines()):
                    yield ev
                    _check(deadline, job_id)
            finally:
                resp.close()
        except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError) as e:
            raise _NoEventStream(str(e)) from None

    def _poll(self, job_id: str, deadline: float | None, poll_s: float) -> Iterator[JobUpdate | Job]:
        last: tuple[str, float] | None = None
        while True:
            job = self.job(job_id)
            if (job.status, job.progress) != last:
                last = (job.status, job.progress)
                yield JobUpdate(job.job_id, job.status, job.progress)
            if job.finished:
                yield job
                return
            _check(deadline, job_id)
            self._sleep(poll_s)

    # ------------------------------------------------------------------ outputs

    def download(
        self,
        url: str,
        dest: str | Path,
        *,
        progress: Progress | None = None,
        on_size: Callable[[int | None], object] | None = None,
    ) -> Path:
        """Save a result link (a presigned S3 URL) to ``dest``. The API key is
        not sent: the link carries its own signature. ``on_size`` learns the
        size (bytes, None if unknown) before ``progress`` counts them."""
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        with httpx.stream("GET", url, timeout=self._http.timeout, follow_redirects=True) as resp:
            if resp.is_error:
                resp.read()
                raise AudioqError(resp.status_code, f"Downloading {dest.name} failed: {resp.text[:200]}")
            if on_size is not None:
                size = resp.headers.get("Content-Length", "")
                on_size(int(size) if size.isdigit() else None)
            with part.open("wb") as f:
                for block in resp.iter_bytes(CHUNK):
                    f.write(block)
                    if progress is not None:
                        progress(len(block))
        part.replace(dest)
        return dest


def _page(limit: int, cursor: str | None) -> dict[str, Any]:
    return {"limit": limit, **({"cursor": cursor} if cursor else {})}


def _check(deadline: float | None, job_id: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f"job {job_id} did not finish in time")
