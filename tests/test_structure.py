"""The layering rules the code relies on, checked: every operation's task is
registered by the worker app, the worker app is the only thing that builds
one, web and workers never import each other, there are no import cycles
under ``workers/``, and a finished job's decoded audio is freed."""

from __future__ import annotations

import ast
import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
from audiogen import wav

from shared import db, jobs, operations, queue

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_every_registry_task_is_registered_by_the_worker_app(stack_env):
    """A mismatch would leave jobs queued until they time out."""
    import os

    code = (
        "import json; from workers.app import app; app.loader.import_default_modules();"
        "print(json.dumps(sorted(app.tasks)))"
    )
    registered = set(json.loads(_python(code, {**os.environ, **stack_env})))
    wanted = {op.task for op in operations.OPERATIONS.values()}
    wanted |= {queue.CALLBACK_TASK, queue.INDEX_TASK}
    wanted |= {
        "audioq.maintenance.expire_assets",
        "audioq.maintenance.reconcile_storage",
        "audioq.maintenance.fail_overdue_jobs",
    }
    assert wanted <= registered, wanted - registered


def test_task_modules_build_no_app_and_read_no_settings():
    """The computations import without S3 credentials or a broker: only
    ``workers.app`` builds the configured Celery app."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no AUDIOQ_* at all
    code = (
        "import pkgutil, importlib, sys, workers.tasks\n"
        "for m in pkgutil.iter_modules(workers.tasks.__path__):\n"
        "    importlib.import_module(f'workers.tasks.{m.name}')\n"
        "assert 'workers.app' not in sys.modules\n"
        "print('ok')"
    )
    assert _python(code, env).strip() == "ok"


def test_web_never_imports_worker_code_or_worker_only_libraries(stack_env):
    import os

    code = (
        "import sys, json; import web; web.create_app();"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(json.loads(_python(code, {**os.environ, **stack_env})))
    assert not loaded & {"workers", "soxr", "librosa", "numba", "onnxruntime", "scipy", "gevent"}


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Project modules a file imports anywhere (in functions and under
    ``TYPE_CHECKING`` too: a lazy import only hides a cycle): ``from pkg
    import sub`` counts as ``pkg.sub`` when that is a module."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            out |= subs or {node.module}
    return out & modules


def _module_graph(package: str) -> dict[str, set[str]]:
    files = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / package).rglob("*.py")
    }
    return {mod: _imports(p, set(files)) - {mod} for mod, p in files.items()}


@pytest.mark.parametrize("package", ["workers", "shared", "web", "ops"])
def test_no_import_cycles(package):
    graph = _module_graph(package)
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(n) :], n]))
            if n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_web_and_workers_never_import_each_other():
    for side, other in (("web", "workers"), ("workers", "web"), ("shared", "web"), ("shared", "workers")):
        for path in (ROOT / side).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                assert not any(n == other or n.startswith(other + ".") for n in names), (path, names)


def test_only_settings_reads_the_environment():
    for side in ("shared", "web", "workers", "ops"):
        for path in (ROOT / side).rglob("*.py"):
            if path.name == "settings.py" and side == "shared":
                continue
            text = path.read_text()
            assert "os.environ" not in text and "getenv" not in text or side == "ops", path


def test_a_finished_jobs_audio_is_freed(client, api_key, upload, r, settings):
    """The decoded arrays die with the job: nothing caches them per process."""
    from workers.runner import run_job

    key = api_key(credits=5)
    aid = upload(key, wav(2.0, seed=91))
    op = operations.get("bpm")
    sub = jobs.submit(
        r, owner=key.id, op=op, options={}, asset_id=aid, sha256=r.hget(db.asset_key(aid), "sha256"),
        cost=1, billed=True, trace_id="t", queue_timeout_s=60, job_ttl_s=60,
    )  # fmt: skip
    seen: list[weakref.ref] = []

    def compute(audio, options, ctx):
        y = audio.mono()
        audio.mono(11025)  # a second rate: both views must go
        seen.extend([weakref.ref(audio), weakref.ref(y), weakref.ref(audio.native[0])])
        return {"samples": len(y)}

    run_job(op, compute, sub.job.id)
    gc.collect()
    assert jobs.get_any(r, sub.job.id).status == "completed"
    assert [ref() for ref in seen] == [None, None, None]
