"""Upload slots in Redis (shared.ratelimit): a key's uploads receiving at
once, bounded across processes, released on every exit, and expiring when
the process holding them died."""

from __future__ import annotations

from shared import db, ratelimit
from shared.settings import Settings


def test_slots_are_bounded_released_and_expire(r):
    key = "key_slots"
    assert ratelimit.take_upload_slot(r, key, "a", 2)
    assert ratelimit.take_upload_slot(r, key, "b", 2)
    assert not ratelimit.take_upload_slot(r, key, "c", 2)  # the third waits
    ratelimit.release_upload_slot(r, key, "a")
    assert ratelimit.take_upload_slot(r, key, "c", 2)
    assert not ratelimit.take_upload_slot(r, key, "d", 2)
    # "b" belonged to a process that died: its slot is not renewed and lapses.
    r.zadd(db.uploads_key(key), {"b": 0})
    assert ratelimit.take_upload_slot(r, key, "d", 2)
    assert sorted(r.zrange(db.uploads_key(key), 0, -1)) == ["c", "d"]
    assert 0 < r.ttl(db.uploads_key(key)) <= ratelimit.UPLOAD_SLOT_TTL_S + 1


def test_renewal_keeps_a_live_slot_and_never_revives_a_released_one(r):
    key = "key_renew"
    assert ratelimit.take_upload_slot(r, key, "a", 1)
    r.zadd(db.uploads_key(key), {"a": 1})  # about to lapse
    ratelimit.renew_upload_slot(r, key, "a")
    assert not ratelimit.take_upload_slot(r, key, "b", 1)  # renewed: still held
    ratelimit.release_upload_slot(r, key, "a")
    ratelimit.renew_upload_slot(r, key, "a")  # a late renewal after the release
    assert r.zcard(db.uploads_key(key)) == 0


def test_upload_settings_from_the_environment():
    s = Settings.from_env(
        {
            "AUDIOQ_S3_ACCESS_KEY": "a",
            "AUDIOQ_S3_SECRET_KEY": "b",
            "AUDIOQ_PLAN_PRO_CONCURRENT_UPLOADS": "7",
            "AUDIOQ_UPLOAD_MIN_KB_S": "32",
            "AUDIOQ_UPLOAD_GRACE_S": "5",
            "AUDIOQ_UPLOAD_PARTS_IN_FLIGHT": "2",
        }
    )
    assert s.plan("pro").concurrent_uploads == 7
    assert s.plan("basic").concurrent_uploads == 2  # the default
    assert (s.upload_min_bytes_per_s, s.upload_grace_s, s.upload_parts_in_flight) == (32 * 1024, 5.0, 2)
