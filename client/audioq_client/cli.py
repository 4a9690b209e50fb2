"""``audioq-client``: the audioq API from a shell.

    audioq-client upload song.wav
    audioq-client run separate/2stem song.wav --option format=flac --wait -o stems/
    audioq-client run bpm afa_... --json
    audioq-client job JOB_ID [--wait] [-o DIR]
    audioq-client jobs | tasks | account [--json]
    audioq-client rotate-webhook-secret

The API's URL and key come from ``--url``/``--api-key`` or ``AUDIOQ_URL``/
``AUDIOQ_API_KEY``. Progress bars go to stderr (``--quiet`` hides them);
``--json`` prints the API's documents on stdout for scripts. Exit status: 0,
1 when a job failed or was cancelled, 2 for an error answer or bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from audioq_client.client import Client, output_links
from audioq_client.errors import AudioqError
from audioq_client.models import Job, JobUpdate


def _bar(args: argparse.Namespace, **kw: Any) -> tqdm:
    return tqdm(disable=args.quiet, file=sys.stderr, dynamic_ncols=True, leave=True, **kw)


def _bytes_bar(args: argparse.Namespace, desc: str, total: int | None) -> tqdm:
    return _bar(args, desc=desc, total=total, unit="B", unit_scale=True, unit_divisor=1024)


def _print(args: argparse.Namespace, doc: Any, human: str) -> None:
    print(json.dumps(doc, indent=2) if args.json else human)


# --------------------------------------------------------------------------- steps


def _upload(aq: Client, args: argparse.Namespace, path: Path):
    with _bytes_bar(args, f"upload {path.name}", path.stat().st_size) as bar:
        return aq.upload(path, progress=bar.update)


def _follow(aq: Client, args: argparse.Namespace, job: Job) -> Job:
    """Wait for the job with a bar of its progress; its status in the label."""
    if job.finished:
        return job
    with _bar(
        args,
        desc=job.status,
        total=100,
        unit="%",
        bar_format="{desc:<10} {percentage:3.0f}%|{bar}| {elapsed}",
    ) as bar:

        def show(u: JobUpdate) -> None:
            bar.set_description_str(u.status)
            bar.update(round(u.progress * 100) - bar.n)

        final = aq.wait(job.job_id, on_update=show)
        bar.set_description_str(final.status)
        if final.status == "completed":
            bar.update(100 - bar.n)
    return final


def _download(aq: Client, args: argparse.Namespace, job: Job, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    for name, link in output_links(job.result):
        with _bytes_bar(args, f"download {name}", None) as bar:
            saved.append(
                str(aq.download(link, out / name, progress=bar.update, on_size=lambda n: bar.reset(n)))
            )
    return saved


def _finish(aq: Client, args: argparse.Namespace, job: Job) -> int:
    """Wait (if asked), download (if asked), print; the exit status."""
    if args.wait or args.output:
        job = _follow(aq, args, job)
    files = _download(aq, args, job, Path(args.output)) if args.output and job.status == "completed" else []
    doc = {**job.raw, **({"files": files} if args.output else {})}
    lines = [f"job {job.job_id}: {job.op} {job.status} ({job.progress:.0%})"]
    if job.error:
        lines.append(f"error: {job.error.get('message', job.error)}")
    elif job.status == "completed" and job.result is not None and not args.output:
        lines.append(json.dumps(job.result, indent=2))
    lines += [f"saved {f}" for f in files]
    _print(args, doc, "\n".join(lines))
    return 1 if job.status in ("failed", "cancelled") else 0


# --------------------------------------------------------------------------- commands


def cmd_upload(aq: Client, args: argparse.Namespace) -> int:
    asset = _upload(aq, args, Path(args.file))
    _print(args, asset.raw, f"{asset.asset_id}  {asset.size_bytes} bytes  expires {asset.expires_at}")
    return 0


def cmd_run(aq: Client, args: argparse.Namespace) -> int:
    source = Path(args.input)
    if source.is_file():
        asset_id = _upload(aq, args, source).asset_id
    elif args.input.startswith("afa_"):
        asset_id = args.input
    else:
        raise SystemExit(f"audioq-client: {args.input} is neither a file nor an asset id (afa_...)")
    options = dict(_option(o) for o in args.option)
    job = aq.submit(args.op, asset_id, options, callback_url=args.callback_url)
    return _finish(aq, args, job)


def cmd_job(aq: Client, args: argparse.Namespace) -> int:
    return _finish(aq, args, aq.job(args.job_id))


def cmd_jobs(aq: Client, args: argparse.Namespace) -> int:
    page = aq.jobs(limit=args.limit, cursor=args.cursor)
    rows = [
        f"{j.job_id:<32} {j.op:<20} {j.status:<10} {j.progress:>5.0%}  {j.created_at}" for j in page.items
    ]
    if page.next_cursor:
        rows.append(f"more: --cursor {page.next_cursor}")
    _print(args, {"items": [j.raw for j in page.items], "next_cursor": page.next_cursor}, "\n".join(rows))
    return 0


def cmd_tasks(aq: Client, args: argparse.Namespace) -> int:
    tasks = aq.tasks(limit=args.limit, cursor=args.cursor)
    rows = []
    for t in tasks:
        models = ",".join(x["model"] for x in t.targets)
        rows.append(f"{t.id:<32} {t.status:<11} {t.progress:>5.0%}  {models}  {t.created_at}")
    _print(args, [t.raw for t in tasks], "\n".join(rows))
    return 0


def cmd_account(aq: Client, args: argparse.Namespace) -> int:
    a = aq.account()
    human = f"{a.id}  {a.name}  plan {a.plan}{' (test)' if a.test else ''}  {a.credits} credits"
    _print(args, a.raw, human)
    return 0


def cmd_rotate(aq: Client, args: argparse.Namespace) -> int:
    rot = aq.rotate_webhook_secret()
    human = (
        f"webhook secret: {rot.webhook_secret}\nthe previous one still signs until {rot.previous_valid_until}"
    )
    _print(
        args, {"webhook_secret": rot.webhook_secret, "previous_valid_until": rot.previous_valid_until}, human
    )
    return 0


def _option(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"audioq-client: --option wants NAME=VALUE, got {text!r}")
    return name, value  # the API parses numbers and booleans from strings


# --------------------------------------------------------------------------- parser


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: the flags work before or after the command without one hiding the other.
    common.add_argument("--url", default=argparse.SUPPRESS, help="API base URL (default: $AUDIOQ_URL)")
    common.add_argument("--api-key", default=argparse.SUPPRESS, help="API key (default: $AUDIOQ_API_KEY)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON documents")
    common.add_argument(
        "--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
    )

    p = argparse.ArgumentParser(prog="audioq-client", description="audioq API client", parents=[common])
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, parents=[common])
        c.set_defaults(func=func)
        return c

    def follow_flags(c: argparse.ArgumentParser) -> None:
        c.add_argument("--wait", action="store_true", help="follow the job until it ends (progress bar)")
        c.add_argument(
            "-o", "--output", metavar="DIR", help="download the result files here (implies --wait)"
        )

    c = command("upload", cmd_upload, "upload an audio file as an asset")
    c.add_argument("file")
    c = command("run", cmd_run, "run an operation (bpm, key, separate/2stem, master, ...) on a file or asset")
    c.add_argument("op", help="operation, as in POST /v1/{op}: bpm, separate/4stem, master, ...")
    c.add_argument("input", help="an audio file (uploaded first) or an asset id (afa_...)")
    c.add_argument(
        "--option", action="append", default=[], metavar="NAME=VALUE", help="an option (repeatable)"
    )
    c.add_argument("--callback-url", help="POST the finished job here (signed: Standard Webhooks)")
    follow_flags(c)
    c = command("job", cmd_job, "show one job")
    c.add_argument("job_id")
    follow_flags(c)
    for name, func, what in (("jobs", cmd_jobs, "your jobs"), ("tasks", cmd_tasks, "your tasks")):
        c = command(name, func, f"list {what}, newest first")
        c.add_argument("--limit", type=int, default=20)
        c.add_argument("--cursor")
    command("account", cmd_account, "your key, plan and credits")
    command("rotate-webhook-secret", cmd_rotate, "a new webhook secret (the old one signs for 24 h more)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for flag, default in (("url", None), ("api_key", None), ("json", False), ("quiet", False)):
        if not hasattr(args, flag):
            setattr(args, flag, default)
    try:
        with Client(args.url, args.api_key) as aq:
            return args.func(aq, args)
    except AudioqError as e:
        if args.json:
            print(json.dumps(e.body or {"statusCode": e.status, "message": e.message}), file=sys.stderr)
        print(f"audioq-client: {e.message}", file=sys.stderr)
        return 2
    except (httpx.HTTPError, TimeoutError, OSError) as e:
        print(f"audioq-client: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
