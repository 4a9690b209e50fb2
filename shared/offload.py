"""CPU work off the event loop.

Under gunicorn's gevent workers every request is a greenlet of one OS thread:
hashing a 5 MB part (SHA-256 of the upload, the part's payload hash for S3
signing) there would stall every other request of the process for
milliseconds per part, and so would blocking file work (writing the spool,
deleting a 400 MB file). :func:`run` hands such work to gevent's hub
threadpool, native threads, where hashlib and file I/O release the GIL, so
the loop keeps serving while the work runs on another core.
Outside gevent (Celery workers, tests, scripts) it just calls the function.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Smaller buffers are hashed in place: a hand-off to a thread (tens of
#: microseconds) costs about as much as hashing 64 KB.
MIN_BYTES = 64 * 1024


def under_gevent() -> bool:
    """True in a gevent-patched process (gunicorn's gevent workers)."""
    monkey = sys.modules.get("gevent.monkey")  # never imported outside gevent workers
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def run(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)``, in a native thread when the caller is a gevent greenlet."""
    if under_gevent():
        import gevent

        return gevent.get_hub().threadpool.apply(fn, args)
    return fn(*args)


class Sequence:
    """Calls that must run one after another, in order, while the caller goes
    on: :meth:`add` waits only for the previous call, then starts the next one
    in a native thread and returns, so the caller's next step (reading the
    next chunk of an upload, say) overlaps this one. :meth:`wait` waits for
    the last call and re-raises the first error any call raised. Outside
    gevent the calls simply run in :meth:`add`."""

    def __init__(self) -> None:
        self._pending: Any = None

    def add(self, fn: Callable[..., object], *args: object) -> None:
        self.wait()
        if under_gevent():
            import gevent

            self._pending = gevent.get_hub().threadpool.spawn(fn, *args)
        else:
            fn(*args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.get()
