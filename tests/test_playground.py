"""The playground page (GET /playground), end to end in a real browser.

Headless Chromium from Debian drives the page against the real stack (the
gunicorn API, a Celery worker, Redis and the S3 server of conftest.py): enter
a key, upload generated songs with known beats and chords, and check what is
*drawn* (SVG marks and their positions, the canvas's columns, the players)
against the API's results. Screenshots land in tests/artifacts/playground/
(git-ignored). Without Chromium the browser tests skip and say how to
install it."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import browser
import numpy as np
import pytest
import soundfile as sf
import synth

SR = 44100
BROWSER_MISSING = browser.missing()
needs_browser = pytest.mark.skipif(BROWSER_MISSING is not None, reason=BROWSER_MISSING or "")

# Chromium logs every non-2xx fetch as a console error; on the error paths those
# are the API's answers the page shows, not faults of the page.
NETWORK_LOG = "Failed to load resource: the server responded with a status of"


def chord_name(label: str) -> str:
    """What the page writes for a chord label (timeline.js chordName)."""
    if label in ("N", "X"):
        return "N.C."
    root, _, quality = label.partition(":")
    suffix = {"maj": "", "min": "m", "dim": "dim", "aug": "aug"}.get(quality or "maj", quality)
    return root + suffix


def write_wav(path: Path, y: np.ndarray, sr: int = SR) -> Path:
    sf.write(path, y, sr, subtype="PCM_16")
    return path


def f_measure(est: list[float], ref: list[float], window: float = 0.07) -> float:
    hits, used = 0, set()
    for t in ref:
        cands = [(abs(e - t), i) for i, e in enumerate(est) if i not in used and abs(e - t) <= window]
        if cands:
            used.add(min(cands)[1])
            hits += 1
    if not hits:
        return 0.0
    p, r = hits / len(est), hits / len(ref)
    return 2 * p * r / (p + r)


def point_count(points_attrs: list[str]) -> int:
    return sum(len(p.split()) for p in points_attrs)


# ---- the page itself (no browser) -------------------------------------------------


def test_the_page_is_served_without_a_key(client):
    resp = client.get("/playground")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert 'id="file"' in html and 'id="api-key"' in html
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    root = client.get("/")
    assert root.status_code == 302 and root.headers["Location"].endswith("/playground")
    # every file the page loads, and every module those import, is served
    # from here (no CDN): nothing outside /playground/static/
    assert not re.search(r'(src|href)="https?://', html)
    pending = re.findall(r'(?:src|href)="(/playground/static/[^"]+)"', html)
    seen = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        r = client.get(path)
        assert r.status_code == 200, path
        if path.endswith(".js"):
            text = r.get_data(as_text=True)
            assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
            pending += ["/playground/static/" + m for m in re.findall(r'from "\./([^"]+)"', text)]
    assert {"/playground/static/main.js", "/playground/static/timeline.js"} <= seen
    assert client.get("/playground/static/nope.js").status_code == 404


# ---- in the browser ---------------------------------------------------------------


@pytest.fixture(scope="module")
def page():
    if BROWSER_MISSING:
        pytest.skip(BROWSER_MISSING)
    p = browser.start()
    yield p
    p.quit()


def open_page(page, live_api: str) -> None:
    page.driver.get(live_api + "/playground")
    page.js("localStorage.clear()")
    page.driver.get(live_api + "/playground")
    page.wait("return !!(window.playground && window.playground.timeline)", 10, "the page's script")
    page.console()  # start each test with an empty console


def enter_key(page, secret: str, ok: bool = True) -> str:
    from selenium.webdriver.common.by import By

    box = page.driver.find_element(By.ID, "api-key")
    box.clear()
    box.send_keys(secret)
    page.driver.find_element(By.ID, "key-save").click()
    want = "true" if ok else "false"
    page.wait(f"return document.getElementById('key-status').dataset.ok === '{want}'", 15, "the key check")
    return page.driver.find_element(By.ID, "key-status").text


def choose(page, path: Path, ops: tuple[str, ...] = ("analyze", "pitch", "transcribe", "segments")) -> None:
    from selenium.webdriver.common.by import By

    for op in ("analyze", "pitch", "transcribe", "segments"):
        box = page.driver.find_element(By.ID, f"op-{op}")
        if box.is_selected() != (op in ops):
            box.click()
    page.driver.find_element(By.ID, "file").send_keys(str(path))


def error_messages(page) -> list[str]:
    return page.js(
        "return [...document.querySelectorAll('#error-list .error-message')]"
        ".filter(e => e.offsetParent !== null).map(e => e.textContent)"
    )


def each(page, selector: str, expr: str) -> list:
    """``expr`` (JavaScript, of ``e``) for every element matching ``selector``."""
    return page.js(f"return [...document.querySelectorAll({json.dumps(selector)})].map(e => {expr})")


def lane_geometry(page, selector: str, lane: str) -> dict:
    """Screen x of each mark's centre, relative to its lane, with the view."""
    return page.js(
        """
        const body = document.getElementById('lane-' + arguments[1]);
        const b = body.getBoundingClientRect();
        const [t0, t1] = document.getElementById('timeline').dataset.view.split(',').map(Number);
        const marks = [...body.querySelectorAll(arguments[0])].map(e => {
          const r = e.getBoundingClientRect();
          return {t: Number(e.getAttribute('x1') ?? e.getAttribute('x')), x: r.left + r.width / 2 - b.left,
                  left: r.left - b.left, width: r.width};
        });
        return {t0, t1, width: b.width, marks};
        """,
        selector,
        lane,
    )


@needs_browser
def test_analysis_is_drawn_on_one_timeline(page, live_api, worker, api_key, tmp_path):
    """Upload a generated song (120 BPM, A minor, Am-Dm-E-Am, one chord per
    bar) and check every lane against the API's results."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    bpm, seconds = 120.0, 16.0
    y, true_beats, true_downbeats = synth.song(bpm, seconds, key="A", mode="minor", sr=SR, seed=3)
    song = write_wav(tmp_path / "song.wav", y)
    key = api_key(plan="pro", credits=200)
    open_page(page, live_api)
    assert "pro plan" in enter_key(page, key.secret)
    assert page.js("return localStorage.getItem('audioq.apiKey')") == key.secret
    choose(page, song)
    page.wait("return document.getElementById('timeline').dataset.ready === 'true'", 240, "the analyses")
    assert page.js("return window.playground.state.analysesDone") == ["fulfilled"] * 4
    res = page.js("return window.playground.state.results")
    a = res["analysis"]
    assert page.driver.current_url == live_api + "/playground"  # the key never went into a URL

    # beats: one tick per beat, where the beat is, and near the known beats
    beats = lane_geometry(page, "line.beat", "beats")
    assert len(beats["marks"]) == len(a["beatgrid"]["beats"])
    assert [m["t"] for m in beats["marks"]] == pytest.approx(a["beatgrid"]["beats"])
    k = beats["width"] / (beats["t1"] - beats["t0"])
    for m in beats["marks"]:
        assert abs(m["x"] - (m["t"] - beats["t0"]) * k) <= 1.5, m
    assert f_measure([m["t"] for m in beats["marks"]], true_beats) >= 0.9
    downs = each(page, "#lane-beats line.downbeat", "+e.getAttribute('x1')")
    assert downs == pytest.approx(a["beatgrid"]["downbeats"])
    assert f_measure(downs, true_downbeats) >= 0.8
    bars = each(page, "#lane-beats text.bar-number", "e.textContent")
    assert bars == [str(i + 1) for i in range(len(downs))]
    info = page.driver.find_element(By.ID, "info-beats").text
    assert f"{a['beatgrid']['tempo']:.1f} BPM" in info and a["beatgrid"]["time_signature"] in info

    # chords: one box per chord, in its place, named as the result says
    chords = lane_geometry(page, "rect.chord", "chords")
    labels = each(page, "#lane-chords rect.chord", "e.dataset.label")
    assert labels == [c["label"] for c in a["chords"]]
    for m, c in zip(chords["marks"], a["chords"], strict=True):
        assert abs(m["left"] - (c["start"] - chords["t0"]) * k) <= 1.5
        assert abs(m["width"] - (c["end"] - c["start"]) * k) <= 1.5
    texts = each(page, "#lane-chords text.label", "e.textContent")
    assert texts == [chord_name(c["label"]) for c in a["chords"]]
    bar = 4 * 60 / bpm
    expected = ["A:min", "D:min", "E:maj", "A:min"] * 2
    at_bar = [
        next(c["label"] for c in a["chords"] if c["start"] <= (i + 0.5) * bar < c["end"]) for i in range(8)
    ]
    assert sum(g == e for g, e in zip(at_bar, expected, strict=True)) >= 7, at_bar

    # sections, notes, melody
    segs = res["segments"]["segments"]
    assert each(page, "#lane-sections rect.section", "e.dataset.label") == [s["label"] for s in segs]
    assert each(page, "#lane-sections text.label", "e.textContent") == [s["label"] for s in segs]
    notes = res["transcribe"]["notes"]
    assert len(notes) > 0
    assert page.js("return document.querySelectorAll('#lane-notes rect.note').length") == len(notes)
    assert each(page, "#lane-notes rect.note", "+e.dataset.midi") == [n["midi"] for n in notes]
    contour = each(page, "#lane-melody polyline.contour", "e.getAttribute('points')")
    voiced = [f for f in res["pitch"]["f0_hz"] if f is not None]
    assert point_count(contour) == len(voiced) > 0

    # loudness: one point per short-term value that is not null (silence
    # breaks the line), at the end of its window; the integrated level and
    # the true peak as lines at their levels
    st = a["lufs"]["short_term_lufs"]
    values = [v for v in st["values"] if v is not None]
    curve = each(page, "#lane-loudness polyline.st-lufs.original", "e.getAttribute('points')")
    assert point_count(curve) == len(values) > 100
    first = [float(v) for v in curve[0].split()[0].split(",")]
    k0 = next(i for i, v in enumerate(st["values"]) if v is not None)
    assert first[0] == pytest.approx(st["start_s"] + k0 * st["hop_s"], abs=1e-3)
    lines = page.js(
        """return ['integrated', 'peak'].map(c => {
             const e = document.querySelector('#lane-loudness line.' + c + '.original');
             return [+e.dataset.db, +e.getAttribute('y1')]; })"""
    )
    (integ_db, integ_y), (peak_db, peak_y) = lines
    assert integ_db == a["lufs"]["integrated_lufs"] and peak_db == a["lufs"]["true_peak_dbtp"]
    assert peak_y < integ_y  # louder is higher
    ys = [float(p.split(",")[1]) for p in " ".join(curve).split()]
    assert min(ys) > peak_y  # the curve sits below the true peak

    # key and Camelot code with confidence; the waveform drawn across the lane
    summary = page.driver.find_element(By.ID, "sum-key").text
    assert a["key"]["key"] in summary and f"Camelot {a['key']['camelot']}" in summary
    assert f"confidence {round(a['key']['confidence'] * 100)} %" in summary
    width = page.js("return document.getElementById('lane-waveform').getBoundingClientRect().width")
    assert int(page.js("return document.getElementById('lane-waveform').dataset.columns")) >= 0.95 * width
    # the WAV fast path reads the samples the decoder would give
    paths = page.driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
           import('/playground/static/waveform.js').then(async m => {
             const f = window.playground.state.file;
             const [a, b] = [await m.computePeaks(f), await m.decodedPeaks(f)];
             const [ca, cb] = [a.columns(0, 16, 400), b.columns(0, 16, 400)];
             done({method: a.method, durations: [a.duration, b.duration],
                   diff: Math.max(...ca.hi.map((v, i) => Math.abs(v - cb.hi[i])),
                                  ...ca.lo.map((v, i) => Math.abs(v - cb.lo[i])))});
           }).catch(e => done(String(e)));"""
    )
    assert paths["method"] == "wav" and paths["durations"] == pytest.approx([seconds, seconds], abs=1e-3)
    assert paths["diff"] < 0.01, paths
    page.screenshot("analysis")

    # click to play from there; the playhead follows the audio
    wave = page.driver.find_element(By.ID, "lane-waveform")
    ActionChains(page.driver).move_to_element_with_offset(wave, int(-width / 4), 0).click().perform()
    target = 0.25 * seconds
    page.wait("return window.playground.groups.original.playing", 10, "playback")
    time.sleep(1.0)
    t_audio, t_head, head_x, body_left = page.js(
        """const g = window.playground.groups.original, h = document.getElementById('playhead');
           return [g.time, +h.dataset.t, h.getBoundingClientRect().left + 1,
                   document.getElementById('lane-waveform').getBoundingClientRect().left];"""
    )
    assert target + 0.5 < t_audio < target + 3.0, t_audio
    assert abs(t_head - t_audio) < 0.3
    assert abs((head_x - body_left) - t_head * k) <= 8  # (k: the full view's px/s)

    # the keyboard: → jumps 5 s, Space plays and pauses
    from selenium.webdriver.common.keys import Keys

    page.driver.find_element(By.ID, "play").click()  # pause
    page.js("document.activeElement.blur()")
    before = page.js("return window.playground.groups.original.time")
    ActionChains(page.driver).send_keys(Keys.ARROW_RIGHT).perform()
    page.wait(f"return Math.abs(window.playground.groups.original.time - {before + 5}) < 0.05", 5, "→")
    ActionChains(page.driver).send_keys(Keys.SPACE).perform()
    page.wait("return window.playground.groups.original.playing", 5, "Space to play")
    ActionChains(page.driver).send_keys(Keys.SPACE).perform()
    page.wait("return !window.playground.groups.original.playing", 5, "Space to pause")

    # zoom: the same marks, re-placed for the new view
    page.driver.find_element(By.ID, "zoom-in").click()
    page.driver.find_element(By.ID, "zoom-in").click()
    time.sleep(0.3)
    zoomed = lane_geometry(page, "line.beat", "beats")
    assert zoomed["t1"] - zoomed["t0"] == pytest.approx(seconds / 4, rel=0.01)
    kz = zoomed["width"] / (zoomed["t1"] - zoomed["t0"])
    inside = [m for m in zoomed["marks"] if zoomed["t0"] <= m["t"] <= zoomed["t1"]]
    assert len(inside) >= 6
    for m in inside:
        assert abs(m["x"] - (m["t"] - zoomed["t0"]) * kz) <= 1.5, m
    page.screenshot("analysis-zoomed")
    assert browser.severe(page.console()) == []


@needs_browser
def test_stems_and_master_play_in_sync(page, live_api, worker, api_key, tmp_path):
    from selenium.webdriver.common.by import By

    y, _, _ = synth.song(110.0, 10.0, key="G", mode="major", sr=SR, seed=4)
    song = write_wav(tmp_path / "short.wav", y * 0.5)  # quiet, so mastering raises it
    key = api_key(plan="pro", credits=200)
    open_page(page, live_api)
    enter_key(page, key.secret)
    choose(page, song, ops=("analyze",))
    page.wait("return document.getElementById('timeline').dataset.ready === 'true'", 120, "the analysis")
    assert page.js("return document.getElementById('listen').value") == "original"

    # stems: 2-stem separation, progress shown, then one player per stem
    page.driver.find_element(By.ID, "stems-run").click()
    page.wait("return document.querySelectorAll('#stems .stem').length > 0", 240, "the stems")
    stems = page.js("return window.playground.state.results.stems.stems")
    assert set(stems) == {"vocals", "accompaniment"}
    assert page.js("return document.getElementById('stems-progress').value") == 1
    rows = page.js(
        """return [...document.querySelectorAll('#stems .stem')].map(r => ({
             name: r.dataset.stem, src: r.querySelector('audio').src,
             href: r.querySelector('a.download').href}))"""
    )
    assert {r["name"]: r["src"] for r in rows} == stems
    assert {r["name"]: r["href"] for r in rows} == stems
    # the presigned links (another origin) load in <audio> without CORS
    page.wait(
        "return [...document.querySelectorAll('#stems audio')].every(a => a.readyState >= 2)",
        30,
        "the stems to load",
    )
    assert page.js("return document.getElementById('listen').value") == "stems"
    page.driver.find_element(By.ID, "play").click()
    page.wait(
        "return [...document.querySelectorAll('#stems audio')].every(a => !a.paused)", 10, "stems playing"
    )
    time.sleep(1.5)
    times = each(page, "#stems audio", "e.currentTime")
    assert min(times) > 0.5 and max(times) - min(times) < 0.1, times
    page.driver.find_element(By.CSS_SELECTOR, ".stem[data-stem='vocals'] .mute").click()
    assert page.js("return document.querySelector('audio[data-stem=vocals]').muted") is True
    page.driver.find_element(By.CSS_SELECTOR, ".stem[data-stem='vocals'] .solo").click()
    muted = dict(each(page, "#stems audio", "[e.dataset.stem, e.muted]"))
    assert muted == {"vocals": False, "accompaniment": True}  # solo wins over mute
    page.driver.find_element(By.ID, "play").click()  # pause
    page.screenshot("stems")

    # master: target and ceiling, A/B level-matched, both loudness curves
    for field, value in (("target-lufs", "-16"), ("ceiling", "-1.5")):
        box = page.driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    page.driver.find_element(By.ID, "master-run").click()
    page.wait("return !document.getElementById('master-result').hidden", 240, "the master")
    m = page.js("return window.playground.state.results.master")
    assert m["target_lufs"] == -16 and m["ceiling_dbtp"] == -1.5
    assert page.js("return document.getElementById('listen').value") == "master"
    vol = page.js(
        "return window.playground.groups.master.tracks.map(t => [t.name, t.el.volume, t.el.muted, t.el.src])"
    )
    diff = m["mastered"]["integrated_lufs"] - m["input"]["integrated_lufs"]
    assert diff > 0
    assert vol[0][:3] == ["original", 1, False]
    assert vol[1][0] == "master" and vol[1][1] == pytest.approx(10 ** (-diff / 20), abs=0.01) and vol[1][2]
    assert vol[1][3] == m["output"]
    page.driver.find_element(By.ID, "ab-b").click()
    assert page.js("return window.playground.groups.master.tracks.map(t => t.el.muted)") == [True, False]
    page.driver.find_element(By.ID, "play").click()
    page.wait("return window.playground.groups.master.tracks.every(t => !t.el.paused)", 10, "A/B playing")
    time.sleep(1.0)
    assert page.js("return window.playground.groups.master.spread()") < 0.1
    page.driver.find_element(By.ID, "play").click()
    # the master's curve: measured by /v1/lufs on the mastered file
    page.wait("return !!window.playground.state.results.masterLufs", 60, "the master's loudness")
    ml = page.js("return window.playground.state.results.masterLufs")
    curve = each(page, "#lane-loudness polyline.st-lufs.master", "e.getAttribute('points')")
    assert point_count(curve) == len([v for v in ml["short_term_lufs"]["values"] if v is not None]) > 0
    assert abs(ml["integrated_lufs"] - m["mastered"]["integrated_lufs"]) < 0.2
    ceiling = page.js("return +document.querySelector('#lane-loudness line.peak.master').dataset.db")
    assert ceiling == -1.5
    assert point_count(each(page, "#lane-loudness polyline.st-lufs.original", "e.getAttribute('points')")) > 0
    page.screenshot("master")
    assert browser.severe(page.console()) == []


@needs_browser
def test_api_errors_show_the_apis_message(page, live_api, client, api_key, tmp_path):
    """401, 415, 413 and insufficient credits: the page shows the API's own
    message (the same the API gives a direct request) and keeps working."""
    from selenium.webdriver.common.by import By

    def api_message(resp) -> str:
        return resp.get_json()["message"]

    open_page(page, live_api)

    # 401: an unknown key, at entry
    enter_key(page, "aq_not-a-key", ok=False)
    want = api_message(client.get("/v1/account", headers={"x-api-key": "aq_not-a-key"}))
    assert error_messages(page) == [want]
    assert page.js("return localStorage.getItem('audioq.apiKey')") is None  # not kept

    # 415: not audio
    good = api_key(plan="pro", credits=50)
    enter_key(page, good.secret)
    text = tmp_path / "notes.txt"
    text.write_text("not audio at all\n" * 100)
    choose(page, text, ops=())
    page.wait("return document.getElementById('drop').dataset.state === 'failed'", 30, "the 415")
    want = api_message(
        client.post(
            "/v1/assets/upload",
            data=text.read_bytes(),
            headers={**good.headers, "Content-Type": "application/octet-stream"},
        )
    )
    assert error_messages(page) == [want]
    assert page.js("return window.playground.state.errors.at(-1).statusCode") == 415

    # 413: over the basic plan's 15 MB, refused from Content-Length
    basic = api_key(plan="basic", credits=50)
    enter_key(page, basic.secret)
    big = tmp_path / "big.wav"
    big.write_bytes(io.BytesIO(b"\0" * (16 * 1024 * 1024)).getvalue())
    choose(page, big, ops=())
    page.wait("return document.getElementById('drop').dataset.state === 'failed'", 60, "the 413")
    want = api_message(
        client.post(
            "/v1/assets/upload",
            data=big.read_bytes(),
            headers={**basic.headers, "Content-Type": "application/octet-stream"},
        )
    )
    assert error_messages(page) == [want]

    # insufficient credits: a key with none left
    broke = api_key(plan="pro", credits=0)
    enter_key(page, broke.secret)
    wav = write_wav(tmp_path / "tone.wav", synth.song(100.0, 4.0, sr=SR, seed=5)[0])
    choose(page, wav, ops=())
    page.wait("return document.getElementById('drop').dataset.state === 'failed'", 30, "the 400")
    want = api_message(
        client.post(
            "/v1/assets/upload", data=wav.read_bytes(), headers={**broke.headers, "Content-Type": "audio/wav"}
        )
    )
    assert "credits" in want.lower() and error_messages(page) == [want]
    page.screenshot("errors")

    # the page still works: the same file with a funded key uploads
    enter_key(page, good.secret)
    page.driver.find_element(By.ID, "file").send_keys(str(wav))
    page.wait("return document.getElementById('drop').dataset.state === 'uploaded'", 30, "the upload")
    assert error_messages(page) == []
    assert page.js("return document.getElementById('upload-progress').value") == 1
    entries = page.console()
    assert browser.severe(entries, allow=(NETWORK_LOG,)) == [], entries


@needs_browser
def test_a_plans_job_limit_is_waited_out(page, live_api, worker, api_key, tmp_path):
    """The basic plan runs one heavy job at a time: the second of the two
    heavy analyses is refused with 429; the page shows the API's message in
    that job's row, tries again after Retry-After, and both lanes get drawn."""
    y, _, _ = synth.song(100.0, 6.0, key="D", mode="major", sr=SR, seed=6)
    song = write_wav(tmp_path / "six.wav", y)
    key = api_key(plan="basic", credits=100)
    open_page(page, live_api)
    enter_key(page, key.secret)
    choose(page, song, ops=("transcribe", "segments"))
    waiting = page.wait(
        "const li = document.querySelector('#jobs li[data-status=waiting]');"
        "return li && [li.dataset.op, li.querySelector('.job-status').textContent]",
        60,
        "a job waiting for its turn",
        interval=0.05,
    )
    page.screenshot("waiting")
    page.wait("return document.getElementById('timeline').dataset.ready === 'true'", 240, "the analyses")
    assert page.js("return window.playground.state.analysesDone") == ["fulfilled"] * 2
    notices = page.js("return window.playground.state.notices")
    assert notices and {(n["statusCode"], n["code"]) for n in notices} == {(429, "too_many_jobs")}
    assert waiting == [notices[0]["op"], f"waiting ({notices[0]['message']})"]
    assert "heavy" in notices[0]["message"] and "Nothing was charged" in notices[0]["message"]
    assert error_messages(page) == []  # waited out, not an error
    res = page.js("return window.playground.state.results")
    assert each(page, "#lane-notes rect.note", "1").count(1) == len(res["transcribe"]["notes"])
    assert each(page, "#lane-sections rect.section", "e.dataset.label") == [
        s["label"] for s in res["segments"]["segments"]
    ]
    page.screenshot("waited")
    entries = page.console()
    assert browser.severe(entries, allow=(NETWORK_LOG + " 429",)) == [], entries


@needs_browser
def test_a_ten_minute_waveform_draws_quickly(page, live_api, tmp_path):
    """The waveform of a 10-minute stereo 44.1 kHz track, as WAV (106 MB, read
    directly) and as MP3 (192 kb/s, through the browser's decoder), is drawn
    without waiting for the API. The times go to the artifacts folder
    (docs/playground.md quotes them). The bound here is generous because the
    machine is shared; the page's goal is under 2 s."""
    import subprocess

    part, _, _ = synth.song(120.0, 30.0, key="A", mode="minor", sr=SR, seed=14)
    pcm = (np.clip(part, -1, 1) * 32767).astype(np.int16)
    ten = np.tile(np.stack([pcm, (pcm * 0.9).astype(np.int16)], axis=1), (20, 1))
    wav = tmp_path / "ten-minutes.wav"
    sf.write(wav, ten, SR, subtype="PCM_16")
    # 30 s encoded once and its frames repeated (no Xing/ID3 header to say
    # otherwise): a 10-minute MP3 without a 10-minute encode
    part_wav, part_mp3 = tmp_path / "part.wav", tmp_path / "part.mp3"
    sf.write(part_wav, ten[: len(pcm)], SR, subtype="PCM_16")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(part_wav), "-b:a", "192k", "-write_xing", "0"]
        + ["-id3v2_version", "0", str(part_mp3)],
        check=True,
    )
    mp3 = tmp_path / "ten-minutes.mp3"
    mp3.write_bytes(part_mp3.read_bytes() * 20)
    records = []
    for path, method in ((wav, "wav"), (mp3, "decode")):
        open_page(page, live_api)
        # no key: the file is drawn at once and the upload waits for a key
        page.driver.find_element("id", "file").send_keys(str(path))
        timings = page.wait(
            "return window.playground.state.timings.waveform_ms && window.playground.state.timings",
            60,
            "the waveform",
        )
        assert timings["method"] == method
        # (each repeated MP3 part carries its encoder's padding: 40 ms)
        assert page.js("return window.playground.state.duration") == pytest.approx(600, abs=1.0)
        width = page.js("return document.getElementById('lane-waveform').getBoundingClientRect().width")
        assert int(page.js("return document.getElementById('lane-waveform').dataset.columns")) >= 0.95 * width
        assert "API key" in page.driver.find_element("id", "upload-status").text
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        records.append(
            {"file": f"{path.name}, {path.stat().st_size / 1e6:.0f} MB", **timings, "loadavg": load}
        )
        assert browser.severe(page.console()) == []
    page.screenshot("ten-minutes")
    page.save_json("ten-minute-waveform", records)
    print("\nten-minute waveform:", json.dumps(records))
    for r in records:
        assert r["waveform_ms"] < 15_000, records
