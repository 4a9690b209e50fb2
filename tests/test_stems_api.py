"""The long audio jobs through the API with a real worker: stem separation
(2 and 4 stems, every output format), mastering, progress, cancel, a worker
killed mid-run, and derived files expiring with their source."""

from __future__ import annotations

import io
import os
import signal
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf
import synth
from jobpoll import poll_progress

from shared import assets, db, keys
from shared.storage import derived_prefix
from workers.dsp import loudness

SR = 44100


def as_wav(x: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def si_sdr(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Scale-invariant SDR (dB) over all channels."""
    e, t = estimate.ravel().astype(np.float64), truth.ravel().astype(np.float64)
    alpha = np.dot(e, t) / (np.dot(t, t) + 1e-12)
    target = alpha * t
    return float(10 * np.log10(np.sum(target**2) / (np.sum((e - target) ** 2) + 1e-12)))


@pytest.fixture(scope="module")
def mix():
    """Eight seconds of drums, bass, chords and a sung-like lead, stereo."""
    return synth.separation_mix(8.0, sr=SR, seed=7)


def submit(client, key, op: str, data: bytes, query: str = ""):
    resp = client.post(f"/v1/{op}{query}", data=data, headers={**key.headers, "Content-Type": "audio/wav"})
    assert resp.status_code == 202, resp.get_json()
    assert resp.headers["Location"] == f"http://testserver/v1/jobs/{resp.get_json()['job_id']}"
    return resp.get_json()


def download(link: str) -> tuple[np.ndarray, int]:
    with urllib.request.urlopen(link, timeout=30) as resp:
        y, sr = sf.read(io.BytesIO(resp.read()), always_2d=True, dtype="float32")
    return y, sr


def test_2stem_separation(client, api_key, r, worker, mix):
    x, truth = mix
    key = api_key(credits=100)
    job = submit(client, key, "separate/2stem", as_wav(x))
    assert job["_meta"]["credits_reserved"] == 20
    doc, progress = poll_progress(client, key, job["job_id"])
    assert doc["status"] == "completed", doc
    assert progress == sorted(progress) and progress[-1] == 1.0
    result = doc["result"]
    assert result["format"] == "wav" and set(result["stems"]) == {"vocals", "accompaniment"}
    assert result["model"] == "spleeter-2stems"  # the pretrained model is installed by set-up
    vocals, sr = download(result["stems"]["vocals"])
    accompaniment, _ = download(result["stems"]["accompaniment"])
    assert sr == SR and vocals.shape == x.shape == accompaniment.shape
    backing = truth["drums"] + truth["bass"] + truth["other"]
    assert si_sdr(vocals, truth["vocals"]) > si_sdr(x, truth["vocals"]) + 3
    assert si_sdr(accompaniment, backing) > si_sdr(x, backing) + 3
    assert np.max(np.abs(vocals + accompaniment - x)) < 0.01  # the stems add up to the mix
    assert keys.balance(r, key.id) == 80


def test_4stem_separation_every_format(client, api_key, worker, mix):
    x, truth = mix
    key = api_key(credits=200)
    jobs = {
        fmt: submit(client, key, "separate/4stem", as_wav(x), f"?format={fmt}")
        for fmt in ("wav", "flac", "mp3")
    }
    stems = {}
    for fmt, job in jobs.items():
        doc, _ = poll_progress(client, key, job["job_id"])
        assert doc["status"] == "completed", doc
        assert doc["result"]["format"] == fmt
        assert set(doc["result"]["stems"]) == {"vocals", "drums", "bass", "other"}
        for name, link in doc["result"]["stems"].items():
            y, sr = download(link)
            assert sr == SR and y.shape[1] == 2
            assert abs(y.shape[0] - x.shape[0]) <= (2048 if fmt == "mp3" else 0), (fmt, name)
            stems[(fmt, name)] = y
    for name in ("vocals", "drums", "bass", "other"):
        assert si_sdr(stems[("flac", name)], truth[name]) > si_sdr(x, truth[name]), name
    rebuilt = sum(stems[("wav", n)] for n in ("vocals", "drums", "bass", "other"))
    assert np.max(np.abs(rebuilt - x)) < 0.01


def test_bad_options_are_400_and_store_nothing(client, api_key, r, mix):
    key = api_key()
    for op, query in (
        ("separate/2stem", "?format=ogg"),
        ("master", "?target_lufs=-3"),
        ("master", "?ceiling_dbtp=2"),
        ("master", "?loudness=-14"),
    ):
        resp = client.post(
            f"/v1/{op}{query}", data=as_wav(mix[0][:SR]), headers={**key.headers, "Content-Type": "audio/wav"}
        )
        assert resp.status_code == 400, (op, query, resp.get_json())
    assert r.zcard(db.owner_assets_key(key.id)) == 0


@pytest.mark.parametrize(
    ("gain_db", "target", "ceiling", "fmt"),
    [(-30.0, -14.0, -1.0, "wav"), (0.0, -16.0, -2.0, "flac"), (-6.0, -10.0, -1.0, "mp3")],
)
def test_master(client, api_key, worker, mix, gain_db, target, ceiling, fmt):
    x = mix[0] * 10 ** (gain_db / 20)
    key = api_key()
    query = f"?target_lufs={target}&ceiling_dbtp={ceiling}&format={fmt}"
    job = submit(client, key, "master", as_wav(x), query)
    doc, progress = poll_progress(client, key, job["job_id"])
    assert doc["status"] == "completed", doc
    assert progress == sorted(progress)
    result = doc["result"]
    y, sr = download(result["output"])
    assert sr == SR and y.shape[1] == x.shape[1]
    assert abs(y.shape[0] - x.shape[0]) <= (2048 if fmt == "mp3" else 0)
    measured = loudness.measure(y, sr)
    assert abs(measured.integrated_lufs - target) <= 0.5
    assert measured.true_peak_dbtp <= ceiling + 0.01  # 16-bit rounding
    before = loudness.measure(x, SR)
    assert abs(result["input"]["integrated_lufs"] - before.integrated_lufs) < 0.05
    assert abs(result["mastered"]["integrated_lufs"] - measured.integrated_lufs) < 0.1


def _running(r, job_id: str, min_progress: float = 0.0, timeout: float = 60) -> int:
    """Wait until the job runs (past ``min_progress``); returns its worker pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = r.hgetall(db.job_key(job_id))
        if h.get("status") == "running" and h.get("worker") and float(h.get("progress") or 0) > min_progress:
            return int(h["worker"].rsplit(":", 1)[1])
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} never got going: {r.hgetall(db.job_key(job_id))}")


@pytest.fixture(scope="module")
def long_mix():
    x, _ = synth.separation_mix(20.0, sr=SR, seed=9)
    return as_wav(np.tile(x, (4, 1)))  # 80 s


def test_cancel_mid_separation(client, api_key, r, worker, long_mix):
    key = api_key(credits=100)
    job = submit(client, key, "separate/2stem", long_mix)
    _running(r, job["job_id"], min_progress=0.06)
    resp = client.delete(f"/v1/jobs/{job['job_id']}", headers=key.headers)
    assert resp.status_code == 200 and resp.get_json()["status"] == "cancelled"
    stopped_at = resp.get_json()["progress"]
    time.sleep(3)
    doc = client.get(f"/v1/jobs/{job['job_id']}", headers=key.headers).get_json()
    assert doc["status"] == "cancelled" and doc["progress"] == stopped_at and doc["result"] is None
    assert keys.balance(r, key.id) == 80  # the work had begun: not refunded


def test_worker_killed_mid_separation_retried_charged_once(client, api_key, r, worker, long_mix):
    key = api_key(credits=100)
    job = submit(client, key, "separate/2stem", long_mix)
    pid = _running(r, job["job_id"], min_progress=0.06)
    os.kill(pid, signal.SIGKILL)
    doc, _ = poll_progress(client, key, job["job_id"], timeout=300)
    assert doc["status"] == "completed", doc
    assert int(r.hget(db.job_key(job["job_id"]), "attempts")) == 2
    assert keys.balance(r, key.id) == 80


def test_derived_files_expire_with_their_source(client, api_key, r, storage, worker, mix):
    key = api_key()
    job = submit(client, key, "separate/2stem", as_wav(mix[0][: 3 * SR]))
    doc, _ = poll_progress(client, key, job["job_id"])
    assert doc["status"] == "completed", doc
    prefix = derived_prefix(doc["asset_id"])
    assert len(list(storage.list(prefix))) == 2
    assert assets.expire_due(r, storage, now=db.now() + 30 * 86400) == 1
    assert list(storage.list(prefix)) == []
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(doc["result"]["stems"]["vocals"], timeout=10)
