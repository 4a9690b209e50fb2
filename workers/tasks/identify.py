"""Identify jobs (queue ``analysis``): ``identify``, and fingerprinting each
new asset into its owner's index.

The index covers the owner's assets except identify query clips. An asset is
fingerprinted in the background when it is uploaded (``index_asset``); the
identify job fingerprints anything still missing (an upload whose indexing
task has not run yet, or an index entry that outlived its TTL while the
asset's life was extended) before it searches, so a query never misses an
asset because of timing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from celery import shared_task

from shared import assets, db, fingerprints, queue
from shared.errors import ApiError
from workers import context
from workers.dsp import fingerprint
from workers.runner import TRANSIENT, Audio, JobContext, audio_info, job_task


def _index(asset: assets.Asset) -> None:
    ctx = context.get()
    with tempfile.TemporaryDirectory(prefix="audioq-index-") as d:
        src = Path(d) / "source"
        ctx.storage.download(asset.object_name, str(src))
        audio = Audio(src, audio_info(asset))
        prints = fingerprint.fingerprint(audio.mono(), audio.analysis_sr)
    ttl = int(asset.expires_at - db.now())
    if ttl > 0:
        fingerprints.add(ctx.redis, asset.owner, asset.id, prints, ttl_s=ttl)


@shared_task(
    name=queue.INDEX_TASK,
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=3,
)
def index_asset(asset_id: str) -> None:
    """Fingerprint one asset (idempotent: an indexed asset is skipped)."""
    r = context.get().redis
    h = r.hgetall(db.asset_key(asset_id))
    if not h or h.get("identify_query") == "1":
        return
    asset = assets.Asset.from_hash(h)
    if fingerprints.has(r, asset.owner, asset.id):
        return
    try:
        _index(asset)
    except ApiError:  # undecodable or expired meanwhile: nothing to index
        return


@job_task("identify")
def identify_clip(audio: Audio, options: dict, ctx: JobContext) -> dict:
    r = context.get().redis
    owner = ctx.job.owner
    indexed = fingerprints.indexed_assets(r, owner)
    missing = [a for a in assets.catalogue(r, owner) if a not in indexed and a != ctx.asset.id]
    for i, asset_id in enumerate(missing):
        try:
            _index(assets.get(r, owner, asset_id))
        except ApiError:
            continue  # expired or undecodable meanwhile
        ctx.progress(0.8 * (i + 1) / len(missing))
    query = fingerprint.query_variants(audio.mono(), audio.analysis_sr)
    ids, refs = fingerprints.load(r, owner, exclude=[ctx.asset.id])
    return fingerprint.identify(query, ids, refs).to_dict()
