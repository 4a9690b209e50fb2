"""Headless Chromium for the playground tests: Debian's ``chromium`` and
``chromium-driver`` (never a downloaded browser), driven by selenium.

:func:`missing` says why a browser cannot run here (the tests skip with that
message); :func:`start` opens one; :class:`Page` has the few helpers the tests
share (waiting on a JavaScript condition, the console log, screenshots)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "playground"

# The closed network makes Chromium's background services fail noisily;
# these flags keep it to the page under test.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1400,1700",
]


def executables() -> tuple[str | None, str | None]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver" if Path("/usr/lib/chromium/chromedriver").exists() else None
    )
    return browser, driver


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    browser, driver = executables()
    if not browser or not driver:
        return (
            "Chromium is not installed: `apt-get install chromium chromium-driver` "
            "(scripts/setup.sh does it) to run the playground's browser tests"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: `pip install -e '.[dev]'`"
    return None


class Page:
    def __init__(self, driver, profile: str) -> None:
        self.driver = driver
        self.profile = profile

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, script: str, timeout: float = 60, what: str = "", interval: float = 0.1):
        """Poll a JavaScript expression (``return ...``) until it is truthy."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.js(script)
            if last:
                return last
            time.sleep(interval)
        state = self.js(
            "return JSON.stringify({errors: window.playground?.state?.errors, "
            "jobs: window.playground?.state?.jobs})"
        )
        raise AssertionError(f"timed out after {timeout} s waiting for {what or script}; page state: {state}")

    def console(self) -> list[dict]:
        """Console entries since the last call (errors, warnings, logs)."""
        return self.driver.get_log("browser")

    def screenshot(self, name: str, width: int = 1400) -> Path:
        """A full-page PNG under tests/artifacts/playground/."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.set_window_size(width, 900)
        # the window's height includes the browser's own bars, even headless
        height = self.js(
            "const d = document.documentElement;"
            "return Math.ceil(d.scrollHeight + window.outerHeight - window.innerHeight)"
        )
        self.driver.set_window_size(width, max(900, min(int(height), 6000)))
        time.sleep(0.2)  # one frame for the relayout
        self.driver.save_screenshot(str(path))
        return path

    def save_json(self, name: str, data) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.json"
        path.write_text(json.dumps(data, indent=2))
        return path

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def start() -> Page:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, driver = executables()
    opts = Options()
    opts.binary_location = browser
    for f in FLAGS:
        opts.add_argument(f)
    profile = tempfile.mkdtemp(prefix="audioq-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(driver))
    d.set_script_timeout(120)
    return Page(d, profile)


def severe(entries: list[dict], allow: tuple[str, ...] = ()) -> list[dict]:
    """The console errors among ``entries``, except those containing any of ``allow``."""
    return [
        e for e in entries if e.get("level") == "SEVERE" and not any(a in e.get("message", "") for a in allow)
    ]
