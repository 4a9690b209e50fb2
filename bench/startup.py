"""Time from the README start command to a first successful upload.

    .venv/bin/python bench/startup.py

Runs `bash scripts/run.sh` (set-up already done, so it only checks and starts)
with a fresh data folder, then uploads a generated WAV as soon as the dev key
is printed, and reports the seconds from launch to the 201. Stops the stack.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    data = Path(tempfile.mkdtemp(prefix="audioq-startup-"))
    buf = io.BytesIO()
    sf.write(buf, np.zeros((44100, 2), np.float32) + 0.01, 44100, format="WAV", subtype="PCM_16")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "scripts/run.sh", "--data", str(data)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    key = None
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.strip().startswith("API key"):
                key = line.split()[-1]
                break
        if key is None:
            print("the stack did not start", file=sys.stderr)
            return 1
        t_ready = time.monotonic() - t0
        req = urllib.request.Request(
            "http://127.0.0.1:8000/v1/assets/upload",
            data=buf.getvalue(),
            method="POST",
            headers={"x-api-key": key, "Content-Type": "audio/wav"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            status = r.status
        t_upload = time.monotonic() - t0
        print("| step | seconds from launch |\n|---|---|")
        print(f"| stack printed its key (ready) | {t_ready:.2f} |")
        print(f"| first upload answered {status} | {t_upload:.2f} |")
        return 0
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
