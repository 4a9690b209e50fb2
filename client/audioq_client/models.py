"""Typed views of the API's JSON documents. Each keeps the document it was
read from in ``raw``, so fields added to the API later are not lost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Asset:
    asset_id: str
    sha256: str
    size_bytes: int
    expires_at: str
    content_type: str | None = None
    created_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Asset:
        return cls(
            asset_id=d["asset_id"],
            sha256=d.get("sha256", ""),
            size_bytes=int(d.get("size_bytes") or 0),
            expires_at=d.get("expires_at", ""),
            content_type=d.get("content_type"),
            created_at=d.get("created_at"),
            raw=d,
        )


@dataclass(frozen=True)
class CallbackStatus:
    """How the job's callback delivery went: attempts so far, the receiver's
    last HTTP status, the last error, when it was delivered (ISO 8601)."""

    attempts: int
    last_status: int | None
    last_error: str | None
    delivered_at: str | None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> CallbackStatus | None:
        if d is None:
            return None
        return cls(
            attempts=int(d.get("attempts") or 0),
            last_status=d.get("last_status", d.get("lastStatus")),
            last_error=d.get("last_error", d.get("lastError")),
            delivered_at=d.get("delivered_at", d.get("deliveredAt")),
        )


@dataclass(frozen=True)
class Job:
    """A v1 job: ``GET /v1/jobs/{id}``, or the 202 answer of a submission
    (which has fewer fields: the rest are None until the job is read again)."""

    job_id: str
    op: str
    status: str
    progress: float = 0.0
    asset_id: str | None = None
    asset_expires_at: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    callback_status: CallbackStatus | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(
            job_id=d["job_id"],
            op=d.get("op", ""),
            status=d.get("status", "completed"),  # a synchronous answer carries its result only
            progress=float(d.get("progress") or 0.0),
            asset_id=d.get("asset_id"),
            asset_expires_at=d.get("asset_expires_at"),
            created_at=d.get("created_at"),
            started_at=d.get("started_at"),
            finished_at=d.get("finished_at"),
            result=d.get("result"),
            error=d.get("error"),
            callback_status=CallbackStatus.from_dict(d.get("callback_status")),
            meta=d.get("_meta") or {},
            raw=d,
        )


@dataclass(frozen=True)
class JobUpdate:
    """One ``progress`` event of ``GET /v1/jobs/{id}/events`` (or one poll)."""

    job_id: str
    status: str
    progress: float


@dataclass(frozen=True)
class Page:
    """One page of a listing: ``next_cursor`` is None on the last page."""

    items: list[Any]
    next_cursor: str | None


@dataclass(frozen=True)
class Task:
    """A tasks-dialect task (``GET /tasks/{id}``): stem targets of one source."""

    id: str
    status: str
    progress: float
    asset_id: str | None
    targets: list[dict[str, Any]]
    created_at: str | None = None
    finished_at: str | None = None
    error: dict[str, Any] | None = None
    callback_status: CallbackStatus | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        return cls(
            id=d["id"],
            status=d.get("status", ""),
            progress=float(d.get("progress") or 0.0),
            asset_id=d.get("assetId"),
            targets=list(d.get("targets") or []),
            created_at=d.get("createdAt"),
            finished_at=d.get("finishedAt"),
            error=d.get("error"),
            callback_status=CallbackStatus.from_dict(d.get("callbackStatus")),
            raw=d,
        )


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    plan: str
    credits: int
    test: bool
    webhook_secret: str
    webhook_secret_previous_valid_until: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Account:
        return cls(
            id=d["id"],
            name=d.get("name", ""),
            plan=d.get("plan", ""),
            credits=int(d.get("credits") or 0),
            test=bool(d.get("test")),
            webhook_secret=d.get("webhook_secret", ""),
            webhook_secret_previous_valid_until=d.get("webhook_secret_previous_valid_until"),
            raw=d,
        )


@dataclass(frozen=True)
class RotatedSecret:
    """``POST /v1/account/webhook-secret``: the new secret, and until when the
    previous one still signs deliveries (ISO 8601)."""

    webhook_secret: str
    previous_valid_until: str | None
