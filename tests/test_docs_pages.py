"""The human docs: ``/docs`` (Swagger UI, every asset served by us, so it
works offline) and docs/getting-started.md, whose ``sh`` blocks are run as
written against a live stack (gunicorn + worker), so the guide cannot rot."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import browser
import localhttp
import pytest
from audiogen import encode, tone
from conftest import ROOT, _child_env

GUIDE = ROOT / "docs" / "getting-started.md"


class _Urls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []  # loaded by the page itself
        self.links: list[str] = []  # followed by a person

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.assets.append(a["src"])
        if tag == "link" and a.get("href"):
            self.assets.append(a["href"])
        if tag == "img" and a.get("src"):
            self.assets.append(a["src"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


def test_docs_page_loads_only_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "http" not in csp
    urls = _Urls()
    urls.feed(page.get_data(as_text=True))
    assert {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"} <= set(urls.assets)
    assert "/docs/getting-started.md" in urls.links and "/openapi.json" in urls.links
    for url in urls.assets + urls.links:
        assert url.startswith("/") and not url.startswith("//"), url
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert resp.get_data(), url
    # Our initializer points Swagger UI at our document and off the online validator.
    init = client.get("/docs/static/docs.js").get_data(as_text=True)
    assert '"/openapi.json"' in init and "validatorUrl: null" in init
    assert not re.search(r"https?://", init)
    # The vendored bundle's licence travels with it.
    assert client.get("/docs/static/LICENSE").status_code == 200


def test_getting_started_guide_is_served_and_linked_from_the_readme(client):
    assert client.get("/docs/getting-started.md").get_data(as_text=True) == GUIDE.read_text()
    assert "docs/getting-started.md" in (ROOT / "README.md").read_text()


def _blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", GUIDE.read_text(), re.S | re.M)


def test_getting_started_commands_work(stack_env, live_api, worker, r, tmp_path):
    """Every ``sh`` block, in order, in one bash with ``set -euo pipefail``:
    key, upload, fast analysis, long job polled, download, callback; then the
    guide's ``verify`` accepts the delivery the callback receiver got, and
    refuses it tampered."""
    blocks = _blocks()
    assert len(blocks) >= 7
    (tmp_path / "song.mp3").write_bytes(encode(tone(6.0, freq=220.0), "mp3"))
    receiver = localhttp.Server()
    httpd = localhttp.start(receiver)
    bin_dir = str(Path(sys.executable).parent)
    env = _child_env(stack_env, {"URL": live_api, "HOOK": receiver.url + "/hook"})
    env["PATH"] = bin_dir + ":" + env.get("PATH", "/usr/bin:/bin")
    script = "set -euo pipefail\n" + "\n".join(blocks)
    script += """
for _ in $(seq 120); do [ -s hook-body.json ] && break; sleep 0.5; done
verify hook-body.json "$(cat hook-signature)"
echo tampered >> hook-body.json
! verify hook-body.json "$(cat hook-signature)"
"""
    try:
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(1200):  # the callback, unless the script ends first
            if receiver.received or proc.poll() is not None:
                break
            receiver.arrived.wait(0.1)
        assert receiver.received, proc.communicate(timeout=10)
        delivery = receiver.received[0]
        (tmp_path / "hook-signature").write_text(delivery.headers["X-Audioq-Signature"])
        (tmp_path / "hook-body.json").write_bytes(delivery.body)
        out, err = proc.communicate(timeout=240)
    finally:
        httpd.shutdown()
    assert proc.returncode == 0, out + err
    assert (tmp_path / "mastered.wav").stat().st_size > 100_000
    assert '"plan": "pro"' in out and "completed" in out


@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_swagger_ui_renders_the_document_from_this_origin_only(live_api):
    """In headless Chromium: every operation and the webhooks are drawn, the
    browser fetched nothing from another origin, and the console (where a
    CSP violation would show) has no error."""
    doc = json.loads(urllib.request.urlopen(live_api + "/openapi.json", timeout=10).read())
    n_ops = sum(len(item) for item in doc["paths"].values())
    page = browser.start()
    try:
        page.driver.get(live_api + "/docs")
        page.wait(
            f"return document.querySelectorAll('.opblock').length >= {n_ops}",
            timeout=60,
            what=f"{n_ops} operations drawn",
        )
        text = page.js("return document.body.innerText")
        assert "Webhooks" in text and "job.completed" in text
        assert "/v1/separate/2stem" in text
        fetched = page.js("return performance.getEntriesByType('resource').map(e => e.name)")
        assert fetched and all(u.startswith(live_api + "/") for u in fetched), fetched
        assert browser.severe(page.console()) == []
    finally:
        page.quit()
