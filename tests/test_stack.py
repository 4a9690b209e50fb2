"""The newcomer's run command, end to end: ``audioq stack up`` with every port
chosen, an upload through the stack, then ``audioq stack down`` from another
process — everything stops, and nothing reports a crash."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from audiogen import wav

from ops import services

ROOT = Path(__file__).resolve().parent.parent
AUDIOQ = str(Path(sys.executable).parent / "audioq")


def _weed_port() -> int:
    """A free port whose +10000 twin (SeaweedFS's gRPC) is free too."""
    while True:
        p = services.free_port()
        if p + 10000 < 65536 and services.port_free(p + 10000):
            return p


def test_stack_up_on_chosen_ports_then_down(tmp_path):
    ports = {"api": services.free_port(), "redis": services.free_port(), "s3": _weed_port()}
    ports["flower"] = services.free_port()
    data = tmp_path / "data"
    cmd = [
        AUDIOQ, "stack", "up", "--data", str(data), "--workers", "1",
        "--port", str(ports["api"]), "--redis-port", str(ports["redis"]),
        "--s3-port", str(ports["s3"]), "--flower-port", str(ports["flower"]),
    ]  # fmt: skip
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("AUDIOQ_")}
    up = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        key = None
        for line in up.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.strip().startswith("API key"):
                key = line.split()[-1]
                break
        assert key, "".join(lines)
        text = "".join(lines)
        for name in ("api", "redis", "s3", "flower"):
            assert f":{ports[name]}" in text, (name, text)
        req = urllib.request.Request(
            f"http://127.0.0.1:{ports['api']}/v1/assets/upload",
            data=wav(1.0, seed=3),
            method="POST",
            headers={"x-api-key": key, "Content-Type": "audio/wav"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 201
        pids = [int(p) for p in (data / "stack.pids").read_text().split()]
        down = subprocess.run(
            [AUDIOQ, "stack", "down", "--data", str(data)],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert down.returncode == 0 and "stopped" in down.stdout, down
        rest, _ = up.communicate(timeout=30)
        assert up.returncode == 0, rest
        assert "exited" not in rest, rest  # a normal stop reports no crash
        time.sleep(0.5)
        assert not any(_alive(p) for p in pids)
        for name in ("api", "redis", "s3", "flower"):
            assert services.port_free(ports[name]), name
    finally:
        services.stop_process(up)


def _alive(pid: int) -> bool:
    try:
        __import__("os").kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
