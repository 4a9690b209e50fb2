"""All configuration, read once from ``AUDIOQ_*`` environment variables.

This is the only module that looks at the environment. Everything else takes
a ``Settings`` object. Booleans accept exactly ``true``/``false``,
``1``/``0``, ``yes``/``no`` and ``on``/``off`` (any case); anything else is a
configuration error rather than a silent default. S3 credentials have no default here: the local-dev
launcher (``audioq stack up``) and the test fixtures provide them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from shared import operations

MB = 1024 * 1024
HOUR = 3600
DAY = 24 * HOUR


class ConfigError(ValueError):
    """The environment holds a missing or malformed setting."""


@dataclass(frozen=True)
class Plan:
    """What a key may do: its plan's limits, or the test-mode limits."""

    name: str
    max_upload_bytes: int
    asset_ttl_s: int
    billed: bool  # False: no credit billing (enterprise, test keys)
    # Requests per second per key, sustained, and the burst on top (a token
    # bucket of ``burst`` tokens refilled at ``rate_per_s``).
    rate_per_s: float = 10.0
    burst: int = 30
    # Jobs of one key queued or running at once, per queue.
    in_flight: dict[str, int] = field(default_factory=lambda: {"analysis": 20, "heavy": 2})
    # Longest audio processed (test keys: short clips only); None = no limit.
    max_duration_s: float | None = None
    test: bool = False
    # Uploads of one key receiving at once, across API processes (counted in
    # Redis): a client dripping bodies cannot hold every connection slot.
    concurrent_uploads: int = 4


def _default_plans() -> dict[str, Plan]:
    return {
        "basic": Plan(
            "basic", 15 * MB, 1 * DAY, True, 5.0, 20, {"analysis": 10, "heavy": 1}, concurrent_uploads=2
        ),
        "pro": Plan(
            "pro", 50 * MB, 7 * DAY, True, 20.0, 60, {"analysis": 30, "heavy": 4}, concurrent_uploads=4
        ),
        "enterprise": Plan(
            "enterprise",
            500 * MB,
            7 * DAY,
            False,
            50.0,
            150,
            {"analysis": 100, "heavy": 8},
            concurrent_uploads=16,
        ),
    }


# Test-mode keys (`audioq keys create --test`): never charged, short clips
# only, a low rate, assets that expire in an hour; the plan's upload size.
TEST_LIMITS = {"rate_per_s": 2.0, "burst": 10, "in_flight": {"analysis": 4, "heavy": 1}}


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = ""  # empty: AUDIOQ_REDIS_URL with db + 1
    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_secure: bool = False
    s3_bucket: str = "audioq"
    s3_region: str = "us-east-1"
    # Base URL clients use to reach S3 for presigned links (e.g.
    # "https://files.example.com"), when it differs from AUDIOQ_S3_ENDPOINT
    # (inside docker compose, "minio:9000" means nothing to a client).
    s3_public_url: str = ""
    public_url: str = "http://127.0.0.1:8000"
    plans: dict[str, Plan] = field(default_factory=_default_plans)
    # The sweeper runs this often; an asset is refused from expires_at on anyway.
    expire_interval_s: int = 60
    reconcile_interval_s: int = 3600
    # Objects younger than this are never reconciled away: an upload in flight
    # has its object before its metadata.
    reconcile_grace_s: int = 3600
    # Multipart part size when streaming uploads to S3, and how many parts
    # travel at once while the next is received: an upload holds about
    # (parts in flight + 1) parts in memory.
    upload_part_bytes: int = 5 * MB
    upload_parts_in_flight: int = 3
    # A request body must arrive at an average of at least this many bytes
    # per second, counted from the start of the upload, once the grace period
    # is over; a slower one is refused (408) and its partial upload deleted.
    upload_min_bytes_per_s: int = 16 * 1024
    upload_grace_s: float = 15.0
    log_level: str = "INFO"
    # "text" (key=value lines) or "json" (one JSON object per line).
    log_format: str = "text"
    # Prometheus multiprocess files of the API's gunicorn workers ("" = one
    # process, in-memory); ops/gunicorn_conf.py makes one when unset.
    metrics_dir: str = ""
    # Fast operations answer synchronously, waiting up to this long for the job.
    sync_wait_s: float = 15.0
    # Credits per operation where the operator overrides the registry's
    # default (AUDIOQ_COST_<OP>, e.g. AUDIOQ_COST_KEY_BPM), by operation name.
    cost_overrides: dict[str, int] = field(default_factory=dict)
    # Finished job records are kept this long.
    job_ttl_s: int = 7 * DAY
    # A queued job that no worker picked up by then is failed and refunded.
    job_queue_timeout_s: int = 6 * HOUR
    # A running attempt refreshes its job's heartbeat this often...
    job_heartbeat_s: float = 5.0
    # ...and a job whose heartbeat is older than this has lost its worker: it
    # is queued again (a new attempt) by the sweeper, which runs this often.
    job_stale_s: float = 60.0
    recover_interval_s: float = 15.0
    # Attempts per job (a worker lost mid-job costs one); then it fails, refunded.
    job_max_attempts: int = 3
    # Where the pretrained models live (`audioq models fetch` puts them there).
    model_dir: str = field(default_factory=lambda: model_dir_from_env({}))
    # Outbound HTTP (POST /tasks "url" inputs, callbacks): private, loopback and
    # link-local addresses are refused unless listed here (CIDRs or host names).
    fetch_allowlist: tuple[str, ...] = ()
    # A "url" input must arrive within this long (the whole transfer).
    fetch_timeout_s: float = 60.0
    # Callback deliveries: attempts (with exponential backoff) before giving up.
    callback_attempts: int = 8
    # After a webhook secret is rotated, the old one still signs deliveries this long.
    webhook_secret_grace_s: int = DAY
    # GET /v1/jobs/{id}/events: a stream ends after this long (clients reconnect)
    # and sends a comment line this often to keep proxies from closing it.
    events_max_s: float = 300.0
    events_heartbeat_s: float = 15.0
    # Test-mode keys: audio processed at most this long; assets live this long.
    test_max_duration_s: float = 30.0
    test_asset_ttl_s: int = HOUR

    @property
    def job_busy_window_s(self) -> float:
        """A heartbeat younger than this means the attempt is alive (2.5 beats)."""
        return 2.5 * self.job_heartbeat_s

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or _next_db(self.redis_url)

    def plan(self, name: str) -> Plan:
        return self.plans[name]

    def limits(self, key: object) -> Plan:
        """The limits that apply to an API key (``shared.keys.ApiKey``): its
        plan's, overlaid with the test-mode limits for a test key."""
        plan = self.plans[key.plan]  # type: ignore[attr-defined]
        if not getattr(key, "test", False):
            return plan
        return dataclasses.replace(
            plan,
            name=f"{plan.name} (test mode)",
            billed=False,
            asset_ttl_s=self.test_asset_ttl_s,
            max_duration_s=self.test_max_duration_s,
            test=True,
            **TEST_LIMITS,  # type: ignore[arg-type]
        )

    def cost(self, op: operations.Operation, options: Mapping[str, object]) -> int:
        """Credits a job of ``op`` costs (the registry's default unless overridden)."""
        return operations.cost(op, options, self.cost_overrides)

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        d = cls()

        def get(name: str, default: str) -> str:
            return env.get(f"AUDIOQ_{name}", default)

        plans = {}
        for name, p in _default_plans().items():
            up = name.upper()
            plans[name] = Plan(
                name,
                _int(env, f"AUDIOQ_PLAN_{up}_MAX_UPLOAD_MB", p.max_upload_bytes // MB) * MB,
                _int(env, f"AUDIOQ_PLAN_{up}_ASSET_TTL_S", p.asset_ttl_s),
                _bool(env, f"AUDIOQ_PLAN_{up}_BILLED", p.billed),
                _float(env, f"AUDIOQ_PLAN_{up}_RATE_PER_S", p.rate_per_s),
                _int(env, f"AUDIOQ_PLAN_{up}_BURST", p.burst),
                {
                    q: _int(env, f"AUDIOQ_PLAN_{up}_IN_FLIGHT_{q.upper()}", cap)
                    for q, cap in p.in_flight.items()
                },
                concurrent_uploads=max(
                    1, _int(env, f"AUDIOQ_PLAN_{up}_CONCURRENT_UPLOADS", p.concurrent_uploads)
                ),
            )
        s = cls(
            redis_url=get("REDIS_URL", d.redis_url),
            broker_url=get("BROKER_URL", ""),
            s3_endpoint=get("S3_ENDPOINT", d.s3_endpoint),
            s3_access_key=_required(env, "AUDIOQ_S3_ACCESS_KEY"),
            s3_secret_key=_required(env, "AUDIOQ_S3_SECRET_KEY"),
            s3_secure=_bool(env, "AUDIOQ_S3_SECURE", d.s3_secure),
            s3_bucket=get("S3_BUCKET", d.s3_bucket),
            s3_region=get("S3_REGION", d.s3_region),
            s3_public_url=get("S3_PUBLIC_URL", "").rstrip("/"),
            public_url=get("PUBLIC_URL", d.public_url).rstrip("/"),
            plans=plans,
            expire_interval_s=_int(env, "AUDIOQ_EXPIRE_INTERVAL_S", d.expire_interval_s),
            reconcile_interval_s=_int(env, "AUDIOQ_RECONCILE_INTERVAL_S", d.reconcile_interval_s),
            reconcile_grace_s=_int(env, "AUDIOQ_RECONCILE_GRACE_S", d.reconcile_grace_s),
            upload_part_bytes=max(5 * MB, _int(env, "AUDIOQ_UPLOAD_PART_MB", 5) * MB),
            upload_parts_in_flight=max(
                1, _int(env, "AUDIOQ_UPLOAD_PARTS_IN_FLIGHT", d.upload_parts_in_flight)
            ),
            upload_min_bytes_per_s=max(0, _int(env, "AUDIOQ_UPLOAD_MIN_KB_S", 16)) * 1024,
            upload_grace_s=_float(env, "AUDIOQ_UPLOAD_GRACE_S", d.upload_grace_s),
            log_level=get("LOG_LEVEL", d.log_level).upper(),
            log_format=_choice(env, "AUDIOQ_LOG_FORMAT", d.log_format, ("text", "json")),
            metrics_dir=get("METRICS_DIR", ""),
            sync_wait_s=_float(env, "AUDIOQ_SYNC_WAIT_S", d.sync_wait_s),
            cost_overrides=_cost_overrides(env),
            job_ttl_s=_int(env, "AUDIOQ_JOB_TTL_S", d.job_ttl_s),
            job_queue_timeout_s=_int(env, "AUDIOQ_JOB_QUEUE_TIMEOUT_S", d.job_queue_timeout_s),
            job_heartbeat_s=_float(env, "AUDIOQ_JOB_HEARTBEAT_S", d.job_heartbeat_s),
            job_stale_s=_float(env, "AUDIOQ_JOB_STALE_S", d.job_stale_s),
            recover_interval_s=_float(env, "AUDIOQ_RECOVER_INTERVAL_S", d.recover_interval_s),
            job_max_attempts=max(1, _int(env, "AUDIOQ_JOB_MAX_ATTEMPTS", d.job_max_attempts)),
            model_dir=model_dir_from_env(env),
            fetch_allowlist=tuple(x.strip() for x in get("FETCH_ALLOWLIST", "").split(",") if x.strip()),
            fetch_timeout_s=_float(env, "AUDIOQ_FETCH_TIMEOUT_S", d.fetch_timeout_s),
            callback_attempts=max(1, _int(env, "AUDIOQ_CALLBACK_ATTEMPTS", d.callback_attempts)),
            webhook_secret_grace_s=max(
                0, _int(env, "AUDIOQ_WEBHOOK_SECRET_GRACE_S", d.webhook_secret_grace_s)
            ),
            events_max_s=max(1.0, _float(env, "AUDIOQ_EVENTS_MAX_S", d.events_max_s)),
            events_heartbeat_s=max(1.0, _float(env, "AUDIOQ_EVENTS_HEARTBEAT_S", d.events_heartbeat_s)),
            test_max_duration_s=_float(env, "AUDIOQ_TEST_MAX_DURATION_S", d.test_max_duration_s),
            test_asset_ttl_s=_int(env, "AUDIOQ_TEST_ASSET_TTL_S", d.test_asset_ttl_s),
        )
        try:  # a typo in the allowlist is a configuration error, not a silent refusal
            from shared.urlfetch import parse_allowlist

            parse_allowlist(s.fetch_allowlist)
        except ValueError as e:
            raise ConfigError(f"AUDIOQ_FETCH_ALLOWLIST: {e}") from None
        return s


def _cost_overrides(env: Mapping[str, str]) -> dict[str, int]:
    """``AUDIOQ_COST_<OP>`` for the registry's operations; a name that matches
    none is a typo, refused rather than silently ignored."""
    by_env = {operations.cost_env_name(name): name for name in operations.OPERATIONS}
    out: dict[str, int] = {}
    for var in env:
        if not var.startswith("AUDIOQ_COST_"):
            continue
        if var not in by_env:
            raise ConfigError(f"{var} names no operation; known: {', '.join(sorted(by_env))}")
        value = _int(env, var, 0)
        if value < 0:
            raise ConfigError(f"{var} must be zero or more, got {value}")
        out[by_env[var]] = value
    return out


def model_dir_from_env(environ: Mapping[str, str] | None = None) -> str:
    """``AUDIOQ_MODEL_DIR`` (default ``~/.cache/audioq/models``). Separate from
    :meth:`Settings.from_env` because setting up models needs no S3 secrets."""
    env = os.environ if environ is None else environ
    return os.path.expanduser(env.get("AUDIOQ_MODEL_DIR") or "~/.cache/audioq/models")


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _next_db(redis_url: str) -> str:
    """The same Redis server, next numbered database (broker apart from app state)."""
    parts = urlsplit(redis_url)
    path = parts.path.strip("/")
    db = int(path) if path.isdigit() else 0
    return urlunsplit((parts.scheme, parts.netloc, f"/{db + 1}", parts.query, parts.fragment))
