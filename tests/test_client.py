"""The API client (client/, package audioq_client) and its command line
against the real stack: gunicorn with gevent workers, a Celery worker, Redis
and S3. No HTTP is mocked: the console script runs as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import localhttp
import numpy as np
import pytest
import soundfile as sf
import synth
from audioq_client import AudioqError, Client, Job, JobUpdate, WebhookVerificationError, verify_webhook

from shared import keys, webhooks

SR = 44100
CLI = str(Path(sys.executable).parent / "audioq-client")


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    x, _ = synth.separation_mix(6.0, sr=SR, seed=9)
    path = tmp_path_factory.mktemp("audio") / "song.wav"
    sf.write(path, np.asarray(x), SR, subtype="PCM_16")
    return path


def run(live_api: str, key: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``audioq-client ARGS`` with the URL and key in the environment only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOQ_")}
    env.update({"AUDIOQ_URL": live_api, "AUDIOQ_API_KEY": key})
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_run_separates_waits_and_downloads_the_stems(live_api, worker, api_key, song, tmp_path):
    key = api_key(credits=100)
    out = tmp_path / "stems"
    got = run(
        live_api,
        key.secret,
        "run",
        "separate/2stem",
        str(song),
        "--option",
        "format=wav",
        "--wait",
        "-o",
        str(out),
        "--json",
    )
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)
    assert doc["status"] == "completed" and doc["op"] == "separate/2stem"
    assert sorted(doc["files"]) == sorted([str(out / "vocals.wav"), str(out / "accompaniment.wav")])
    source, _ = sf.read(song)
    for f in doc["files"]:
        y, sr = sf.read(f)
        assert sr == SR and y.shape == source.shape
    assert not list(out.glob("*.part"))
    # progress bars on stderr: upload bytes, the job to 100 %, each download
    err = got.stderr
    assert "upload song.wav" in err and "download vocals.wav" in err and "download accompaniment.wav" in err
    assert "completed" in err and "100%" in err


def test_commands_print_json_for_scripts(live_api, worker, api_key, song):
    key = api_key(credits=50)
    up = run(live_api, key.secret, "upload", str(song), "--json")
    assert up.returncode == 0, up.stderr
    asset_id = json.loads(up.stdout)["asset_id"]
    assert asset_id.startswith("afa_")

    bpm = run(live_api, key.secret, "--json", "--quiet", "run", "bpm", asset_id, "--wait")
    assert bpm.returncode == 0, bpm.stderr
    job = json.loads(bpm.stdout)
    assert job["status"] == "completed" and 40 < job["result"]["tempo"] < 240
    assert bpm.stderr == ""  # --quiet: no bars

    listed = json.loads(run(live_api, key.secret, "jobs", "--json").stdout)
    assert [j["job_id"] for j in listed["items"]] == [job["job_id"]]
    shown = json.loads(run(live_api, key.secret, "job", job["job_id"], "--json").stdout)
    assert shown["job_id"] == job["job_id"] and shown["callback_status"] is None
    assert json.loads(run(live_api, key.secret, "tasks", "--json").stdout) == []
    account = json.loads(run(live_api, key.secret, "account", "--json").stdout)
    assert account["id"] == key.id and account["credits"] == 50 - job["_meta"]["credits_used"]

    human = run(live_api, key.secret, "account")
    assert human.returncode == 0 and key.id in human.stdout and "plan pro" in human.stdout

    missing = run(live_api, key.secret, "job", "job_doesnotexist00000000000000")
    assert missing.returncode == 2 and "Cannot find job" in missing.stderr
    bad_key = run(live_api, "aq_wrong", "account")
    assert bad_key.returncode == 2 and "API key" in bad_key.stderr
    no_input = run(live_api, key.secret, "run", "bpm", "no-such-file.wav")
    assert no_input.returncode != 0 and "neither a file nor an asset id" in no_input.stderr


def test_the_python_api_follows_a_job_by_events(live_api, worker, api_key, song):
    key = api_key(credits=100)
    with Client(live_api, key.secret) as aq:
        asset = aq.upload(song)
        job = aq.submit("separate/2stem", asset.asset_id, {"format": "flac"})
        assert job.status == "queued" and not job.finished
        seen = list(aq.updates(job.job_id, timeout=120))
        updates, final = seen[:-1], seen[-1]
        assert all(isinstance(u, JobUpdate) for u in updates) and isinstance(final, Job)
        assert [u.progress for u in updates] == sorted(u.progress for u in updates)
        assert updates[-1].status == "completed" and final.status == "completed"
        assert set(final.result["stems"]) == {"vocals", "accompaniment"}
        assert final.result["format"] == "flac"
        # a cache hit comes back as the full document at once
        again = aq.submit("separate/2stem", asset.asset_id, {"format": "flac"})
        assert again.finished and again.meta["cache"] == "hit"
        assert set(again.result["stems"]) == {"vocals", "accompaniment"}
        with pytest.raises(AudioqError) as e:
            aq.wait("job_doesnotexist00000000000000")
        assert e.value.status == 404 and e.value.code == "job_not_found"


def test_retry_after_is_honoured_on_429(live_api, api_key):
    key = api_key(test=True)  # test keys: 2 requests/s, bursts of 10
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        time.sleep(s)

    with Client(live_api, key.secret, sleep=sleep) as aq:
        for _ in range(14):
            assert aq.account().id == key.id  # every call succeeds in the end
    assert waits and all(0 < w <= 60 for w in waits)


def test_the_client_verifies_real_deliveries(api_key, r):
    key = api_key()
    old = keys.webhook_secret(r, key.id)
    new = keys.rotate_webhook_secret(r, key.id, grace_s=60).current
    server = localhttp.Server()
    httpd = localhttp.start(server)
    try:
        body = json.dumps({"type": "job.completed", "job_id": "job_1"}).encode()
        secrets = keys.webhook_secrets(r, key.id).signing
        webhooks.deliver(f"{server.url}/hook", body, secrets, allow=["127.0.0.0/8"], delivery_id="job_1")
        server.wait_for(1)
    finally:
        httpd.shutdown()
    got = server.received[0]
    verify_webhook(got.body, got.headers, new)
    verify_webhook(got.body, got.headers, [old])
    with pytest.raises(WebhookVerificationError):
        verify_webhook(got.body, got.headers, "whsec_" + "A" * 44)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(got.body, got.headers, new, now=time.time() + 600)  # replayed 10 min later
    with pytest.raises(WebhookVerificationError):
        verify_webhook(got.body + b" ", got.headers, new)
