"""The operator command ``audioq``.

audioq keys create --plan pro --credits 12000 --name acme [--json]
audioq keys list [--json]
audioq keys revoke KEY_ID
audioq keys credit KEY_ID N
audioq keys rotate-webhook-secret KEY_ID [--json]   # the old secret signs too for 24 h
audioq assets expire            # run the expiry sweep once, now
audioq assets reconcile         # delete orphan objects once, now
audioq jobs list [--status S] [--op OP] [--key KEY_ID] | show ID | cancel ID
audioq queues                   # depth, oldest wait, workers online per queue
audioq health worker            # readiness of this host's workers (models present)
audioq models fetch             # the pretrained models (AUDIOQ_MODEL_DIR), compiled DSP kernels
audioq stack up | down          # the whole stack locally (development)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ops.services import ServiceError
from shared.errors import ApiError
from shared.settings import ConfigError


def _state():
    from shared import db
    from shared.settings import Settings

    settings = Settings.from_env()
    return settings, db.connect(settings)


def keys_create(a: argparse.Namespace) -> int:
    from shared import keys

    settings, r = _state()
    secret, rec = keys.create(r, settings, plan=a.plan, credits=a.credits, name=a.name, test=a.test)
    if a.json:
        print(
            json.dumps(
                {
                    "key": secret,
                    "id": rec.id,
                    "plan": rec.plan,
                    "credits": a.credits,
                    "name": rec.name,
                    "test": rec.test,
                    "webhook_secret": keys.webhook_secret(r, rec.id),
                }
            )
        )
    else:
        mode = " (test mode: never charged, clips up to 30 s, assets live 1 h)" if rec.test else ""
        print(f"key:     {secret}\nid:      {rec.id}\nplan:    {rec.plan}{mode}\ncredits: {a.credits}")
        print(f"webhook secret: {keys.webhook_secret(r, rec.id)}")
        print("The key is shown only now; store it safely.", file=sys.stderr)
    return 0


def keys_list(a: argparse.Namespace) -> int:
    from shared import keys

    _, r = _state()
    rows = [rec.to_dict(credits=c) for rec, c in keys.list_all(r)]
    if a.json:
        print(json.dumps(rows))
    else:
        print(f"{'id':<18} {'plan':<11} {'credits':>9}  {'revoked':<7}  name")
        for row in rows:
            revoked = str(row["revoked"])
            print(f"{row['id']:<18} {row['plan']:<11} {row['credits']:>9}  {revoked:<7}  {row['name']}")
    return 0


def keys_revoke(a: argparse.Namespace) -> int:
    from shared import keys

    _, r = _state()
    rec = keys.revoke(r, a.key_id)
    print(f"revoked {rec.id}")
    return 0


def keys_credit(a: argparse.Namespace) -> int:
    from shared import keys

    _, r = _state()
    new = keys.add_credits(r, a.key_id, a.amount)
    print(f"{a.key_id}: {new} credits")
    return 0


def keys_rotate_webhook_secret(a: argparse.Namespace) -> int:
    from shared import db, keys

    settings, r = _state()
    rot = keys.rotate_webhook_secret(r, a.key_id, grace_s=settings.webhook_secret_grace_s)
    until = db.iso(rot.previous_valid_until)
    if a.json:
        print(json.dumps({"id": a.key_id, "webhook_secret": rot.current, "previous_valid_until": until}))
    else:
        print(f"webhook secret: {rot.current}")
        print(f"the previous secret still signs deliveries until {until}")
    return 0


def assets_expire(a: argparse.Namespace) -> int:
    from shared import assets
    from shared.storage import Storage

    settings, r = _state()
    print(f"expired {assets.expire_due(r, Storage(settings))} assets")
    return 0


def assets_reconcile(a: argparse.Namespace) -> int:
    from shared import assets
    from shared.storage import Storage

    settings, r = _state()
    print(f"deleted {assets.reconcile(r, Storage(settings), settings)} orphan objects")
    return 0


def _job_row(job) -> dict:
    from shared import db

    return {
        "job_id": job.id,
        "op": job.op,
        "status": job.status,
        "progress": round(job.progress, 3),
        "key_id": job.owner,
        "asset_id": job.asset_id,
        "created_at": db.iso(job.created_at),
        "started_at": db.iso(job.started_at),
        "finished_at": db.iso(job.finished_at),
        "attempts": job.attempts,
        "worker": job.worker,
        "heartbeat_at": db.iso(job.heartbeat_at),
        "cost": job.cost,
        "billed": job.billed,
        "refunded": job.refunded,
        "cache": job.cache,
        "trace_id": job.trace_id,
        "callback_url": job.callback_url,
        "error": job.error,
    }


def jobs_list(a: argparse.Namespace) -> int:
    from shared import jobs

    _, r = _state()
    rows = [_job_row(j) for j in jobs.list_all(r, limit=a.limit, status=a.status, op=a.op, owner=a.key)]
    if a.json:
        print(json.dumps(rows))
        return 0
    print(f"{'job_id':<30} {'op':<18} {'status':<10} {'prog':>5} {'tries':>5}  {'key_id':<16} created_at")
    for row in rows:
        print(
            f"{row['job_id']:<30} {row['op']:<18} {row['status']:<10} {row['progress']:>5.2f} "
            f"{row['attempts']:>5}  {row['key_id']:<16} {row['created_at']}"
        )
    return 0


def jobs_show(a: argparse.Namespace) -> int:
    from shared import db, documents, jobs

    _, r = _state()
    job = jobs.get_any(r, a.job_id)
    row = _job_row(job)
    row["options"] = job.options
    row["callback_status"] = documents.callback_status(job)
    row["recoveries"] = int(r.hget(db.job_key(job.id), "recoveries") or 0)
    if a.json:
        print(json.dumps(row))
        return 0
    width = max(len(k) for k in row)
    for k, v in row.items():
        print(f"{k:<{width}}  {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return 0


def jobs_cancel(a: argparse.Namespace) -> int:
    from shared import jobs

    settings, r = _state()
    job = jobs.get_any(r, a.job_id)
    was = jobs.cancel(r, job, ttl=settings.job_ttl_s, stale_s=settings.job_stale_s)
    refunded = jobs.get_any(r, a.job_id).refunded
    money = "refunded" if refunded else "not refunded"
    print(f"cancelled {a.job_id} (it was {was.removeprefix('was_')}; {money})")
    return 0


def queues_show(a: argparse.Namespace) -> int:
    from shared import queue

    settings, r = _state()
    broker = queue.broker_client(settings)
    try:
        stats = queue.stats(r, broker)
    finally:
        broker.close()
    if a.json:
        print(json.dumps([s.__dict__ for s in stats]))
        return 0
    print(f"{'queue':<12} {'depth':>6} {'waiting':>8} {'oldest (s)':>11} {'workers':>8}")
    for st in stats:
        age = f"{st.oldest_age_s:.1f}"
        print(f"{st.queue:<12} {st.depth:>6} {st.jobs_waiting:>8} {age:>11} {st.workers_online:>8}")
    return 0


def health_worker(a: argparse.Namespace) -> int:
    """For a container healthcheck or a readiness probe: the workers of this
    host are online (seen within 30 s) and have the models their queues need."""
    import socket

    from shared import fleet

    _, r = _state()
    host = a.host or socket.gethostname()
    mine = [w for w in fleet.online(r) if w.host == host]
    if not mine:
        print(f"not ready: no worker of host {host} has been seen in the last {fleet.ONLINE_S} s")
        return 1
    bad = [w for w in mine if not w.ready]
    for w in mine:
        state = "ready" if w.ready else f"missing models {', '.join(w.missing_models)}"
        print(f"{w.node}: queues {','.join(w.queues)}: {state}")
    if bad:
        print("not ready: run `audioq models fetch` (AUDIOQ_MODEL_DIR) and restart the worker")
        return 1
    return 0


def stack_up(a: argparse.Namespace) -> int:
    from ops import stack

    ports = {"api": a.port, "redis": a.redis_port, "s3": a.s3_port, "flower": a.flower_port}
    return stack.up(Path.cwd(), Path(a.data), ports, workers=a.workers)


def stack_down(a: argparse.Namespace) -> int:
    from ops import stack

    return stack.down(Path(a.data))


def models_fetch(a: argparse.Namespace) -> int:
    from ops import models
    from shared.settings import model_dir_from_env

    for path in models.fetch_all(Path(a.dir or model_dir_from_env())):
        print(f"ready: {path}")
    # numba keeps compiled DSP kernels on disk beside their modules: compiled
    # here once, a worker's pool processes load them at start instead of
    # each compiling for ~10 s (and a fresh worker's first jobs waiting).
    print("compiling the DSP kernels (numba cache)", flush=True)
    from workers.dsp import warmup

    warmup.warm_up()
    print("ready: DSP kernels")
    return 0


def parser() -> argparse.ArgumentParser:
    from ops import stack

    p = argparse.ArgumentParser(prog="audioq", description="audioq operator tools")
    sub = p.add_subparsers(dest="group", required=True)

    k = sub.add_parser("keys", help="API keys and credits").add_subparsers(dest="cmd", required=True)
    c = k.add_parser("create", help="create a key (printed once)")
    c.add_argument("--plan", required=True, choices=["basic", "pro", "enterprise"])
    c.add_argument("--credits", type=int, default=0)
    c.add_argument("--name", required=True)
    c.add_argument("--json", action="store_true")
    c.add_argument("--test", action="store_true", help="test mode: never charged, short clips, low rate")
    c.set_defaults(func=keys_create)
    ls = k.add_parser("list", help="list keys with plan and balance")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=keys_list)
    rv = k.add_parser("revoke", help="revoke a key (401 from then on)")
    rv.add_argument("key_id")
    rv.set_defaults(func=keys_revoke)
    cr = k.add_parser("credit", help="add N credits (negative N removes, never below zero)")
    cr.add_argument("key_id")
    cr.add_argument("amount", type=int)
    cr.set_defaults(func=keys_credit)
    ws = k.add_parser(
        "rotate-webhook-secret",
        help="a new webhook secret; the old one also signs deliveries for AUDIOQ_WEBHOOK_SECRET_GRACE_S",
    )
    ws.add_argument("key_id")
    ws.add_argument("--json", action="store_true")
    ws.set_defaults(func=keys_rotate_webhook_secret)

    s = sub.add_parser("assets", help="asset housekeeping").add_subparsers(dest="cmd", required=True)
    s.add_parser("expire", help="delete expired assets now").set_defaults(func=assets_expire)
    s.add_parser("reconcile", help="delete orphan objects now").set_defaults(func=assets_reconcile)

    j = sub.add_parser("jobs", help="jobs of every key").add_subparsers(dest="cmd", required=True)
    jl = j.add_parser("list", help="newest first")
    jl.add_argument("--status", choices=["queued", "running", "completed", "failed", "cancelled"])
    jl.add_argument("--op", help="operation, e.g. separate/4stem")
    jl.add_argument("--key", help="key id (key_...)")
    jl.add_argument("--limit", type=int, default=50)
    jl.add_argument("--json", action="store_true")
    jl.set_defaults(func=jobs_list)
    js = j.add_parser("show", help="one job: attempts, worker, heartbeat, callback delivery")
    js.add_argument("job_id")
    js.add_argument("--json", action="store_true")
    js.set_defaults(func=jobs_show)
    jc = j.add_parser(
        "cancel", help="cancel a queued or running job (refunded if it never ran or its worker is gone)"
    )
    jc.add_argument("job_id")
    jc.set_defaults(func=jobs_cancel)

    q = sub.add_parser("queues", help="depth, waiting jobs, oldest wait and workers online per queue")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=queues_show)

    hl = sub.add_parser("health", help="readiness checks").add_subparsers(dest="cmd", required=True)
    hw = hl.add_parser("worker", help="exit 0 when this host's workers are online with their models")
    hw.add_argument("--host", default="", help="host name (default: this one)")
    hw.set_defaults(func=health_worker)

    m = sub.add_parser("models", help="pretrained models").add_subparsers(dest="cmd", required=True)
    mf = m.add_parser("fetch", help="download and convert the models (once; AUDIOQ_MODEL_DIR)")
    mf.add_argument("--dir", default="", help="model folder (default: AUDIOQ_MODEL_DIR)")
    mf.set_defaults(func=models_fetch)

    st = sub.add_parser("stack", help="run the whole stack locally").add_subparsers(dest="cmd", required=True)
    up = st.add_parser("up", help="start Redis, S3, API, worker, beat, flower (Ctrl-C stops)")
    ports = stack.DEFAULT_PORTS
    up.add_argument("--port", type=int, default=ports["api"], help="API port (default %(default)s)")
    up.add_argument("--redis-port", type=int, default=ports["redis"], help="Redis port (default %(default)s)")
    up.add_argument("--s3-port", type=int, default=ports["s3"], help="S3 port (default %(default)s)")
    up.add_argument(
        "--flower-port", type=int, default=ports["flower"], help="Flower port (default %(default)s)"
    )
    up.add_argument("--data", default=".data", help="folder for data and logs")
    up.add_argument("--workers", type=int, default=2, help="API and fast-worker processes (default 2)")
    up.set_defaults(func=stack_up)
    dn = st.add_parser("down", help="stop a stack started from this folder")
    dn.add_argument("--data", default=".data")
    dn.set_defaults(func=stack_down)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ApiError, ConfigError, ServiceError) as e:
        print(f"audioq: {getattr(e, 'message', e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
