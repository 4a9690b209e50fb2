"""docker-compose.yml, the Dockerfile and deploy/ agree with the code and with
each other (parse only: no Docker, no Kubernetes; one test reads the app's
/metrics to check the documented metrics table).

* The compose services get exactly the AUDIOQ_* names ``ops.services.stack_env``
  gives a local stack, every AUDIOQ_* name is one shared/settings.py reads, and
  the roles run the commands the design describes.
* Fast and heavy work run in separate pools, as the local stack runs them, each
  with a memory limit that covers its processes; grace periods cover the
  hand-back; workers, beat and flower have healthchecks; images are pinned.
* The application gets its own MinIO user, limited to its bucket; the root
  credentials reach only MinIO and the one-shot set-up; Flower needs a login.
* The KEDA recipe scales the heavy Deployment on the broker list of the heavy
  queue, with the compose worker's command, memory and grace period.
* The Prometheus configuration and alert rules name only documented metrics
  (docs/operations.md) and scrape jobs that exist.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from ops import cli, services
from shared import operations
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SETTINGS = ROOT / "shared" / "settings.py"
STACK = ROOT / "ops" / "stack.py"
POLICY = ROOT / "deploy" / "minio" / "audioq-app-policy.json"
K8S = ROOT / "deploy" / "kubernetes"
PROMETHEUS = ROOT / "deploy" / "prometheus"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

APP_SERVICES = ("web", "worker-fast", "worker-heavy", "beat", "flower")
WORKERS = ("worker-fast", "worker-heavy")
NAME = re.compile(r"AUDIOQ_[A-Z0-9_]+")
# The heavy queue is the queue of the long operations (separation et al.).
HEAVY_QUEUE = operations.OPERATIONS["separate/4stem"].queue
# What a worker's main process holds besides its pool processes (~250 MB
# measured after importing workers.app) plus margin: docs/operations.md.
MAIN_PROCESS_BYTES = 512 * 2**20


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def svc(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict]:
    """The Kubernetes recipe's objects by kind (one of each)."""
    out: dict[str, dict] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in out, f"two {doc['kind']} objects in {K8S}"
            out[doc["kind"]] = doc
    return out


def _default(value: object) -> str:
    """A compose value with ``${VAR:-default}`` replaced by its default (what
    runs when the operator sets nothing); a required ``${VAR:?...}`` is kept."""
    return re.sub(r"\$\{[A-Z0-9_]+:?-([^}]*)\}", r"\1", str(value))


def _argv(command: str | list[str]) -> list[str]:
    """A compose command as an argv list (compose accepts a string or a list)."""
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    return [_default(a) for a in argv]


def _option(argv: list[str], short: str, long: str) -> str | None:
    """The value of ``-x VALUE``, ``--long VALUE`` or ``--long=VALUE``."""
    for i, a in enumerate(argv):
        if a in (short, long) and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(long + "="):
            return a.split("=", 1)[1]
    return None


def _queues(argv: list[str]) -> set[str]:
    return set((_option(argv, "-Q", "--queues") or "").split(","))


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", ...] form
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def _stack_env_names() -> set[str]:
    return set(
        services.stack_env(redis_port=1, s3_port=2, access_key="a", secret_key="b", public_url="http://x")
    )


def _bytes(size: str) -> int:
    """Docker (``2560m``, ``3g``: binary units) or Kubernetes (``3Gi``) sizes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?", str(size).strip().lower())
    assert m, f"not a size: {size!r}"
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def _seconds(duration: object) -> float:
    """Compose durations (``60s``, ``1m30s``, ``2m``) or plain seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), f"not a duration: {duration!r}"
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)


def _project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _required(value: str, name: str) -> bool:
    return re.fullmatch(r"\$\{" + name + r":?\?[^}]*\}", value) is not None


# ------------------------------------------------------------ the services


def test_services_exist(svc):
    for name in ("redis", "minio", "minio-setup", *APP_SERVICES):
        assert name in svc, f"service {name!r} missing from docker-compose.yml"
    assert "worker" not in svc, "one worker on every queue is gone: the pools replace it"


def test_redis_has_aof_on(svc):
    argv = _argv(svc["redis"]["command"])
    assert "--appendonly" in argv, argv
    assert argv[argv.index("--appendonly") + 1] == "yes", argv


def test_web_runs_gunicorn_gevent(svc):
    argv = _argv(svc["web"]["command"])
    assert argv[0] == "gunicorn" or argv[:3] == ["python", "-m", "gunicorn"], argv
    assert "web:create_app()" in argv, argv
    assert _option(argv, "-c", "--config") == "python:ops.gunicorn_conf", argv
    from gunicorn.util import load_class
    from gunicorn.workers.ggevent import GeventWorker

    from ops import gunicorn_conf

    assert issubclass(load_class(gunicorn_conf.worker_class), GeventWorker)
    # Requests in flight get gunicorn's graceful timeout before the kill.
    assert _seconds(svc["web"]["stop_grace_period"]) > gunicorn_conf.graceful_timeout


def test_beat_and_flower_commands(svc):
    assert _argv(svc["beat"]["command"])[:4] == ["celery", "-A", "workers.app", "beat"]
    assert _argv(svc["flower"]["command"])[:4] == ["celery", "-A", "workers.app", "flower"]


# ------------------------------------------------------------- worker pools


def test_worker_pools_split_fast_and_heavy(svc):
    """Two pools: heavy consumes only the heavy queue, fast every other queue;
    together they consume every queue a local worker does, none twice."""
    fast, heavy = (_argv(svc[name]["command"]) for name in WORKERS)
    for argv in (fast, heavy):
        assert argv[:4] == ["celery", "-A", "workers.app", "worker"], argv
        assert "-E" in argv or "--task-events" in argv, "workers must send events (Flower, health)"
    assert _queues(heavy) == {HEAVY_QUEUE}, heavy
    assert HEAVY_QUEUE not in _queues(fast), fast
    every_queue = _queues(services.celery_worker_cmd())
    assert _queues(fast) | _queues(heavy) == every_queue
    assert {op.queue for op in operations.OPERATIONS.values()} <= every_queue
    # Node names unique per pool on a host: fast@%h, heavy@%h.
    assert _option(fast, "-n", "--hostname") == "fast@%h"
    assert _option(heavy, "-n", "--hostname") == "heavy@%h"


def _local_pools() -> dict[str, dict[str, object]]:
    """The pools ``audioq stack up`` starts: the keyword arguments of each
    ``celery_worker_cmd(...)`` call in ops/stack.py, by pool name."""
    pools = {}
    for node in ast.walk(ast.parse(STACK.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "celery_worker_cmd":
            kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            pools[str(kw["name"])] = kw
    return pools


def test_pools_match_the_local_stack(svc):
    local = _local_pools()
    assert set(local) == {"fast", "heavy"}, local
    for pool in ("fast", "heavy"):
        argv = _argv(svc[f"worker-{pool}"]["command"])
        assert _queues(argv) == set(str(local[pool]["queues"]).split(",")), (pool, argv)
    assert _option(_argv(svc["worker-heavy"]["command"]), "-c", "--concurrency") == "1"
    assert local["heavy"]["concurrency"] == 1


@pytest.mark.parametrize("name", WORKERS)
def test_pool_memory_limit_covers_its_processes(svc, name):
    """Each pool recycles its processes above --max-memory-per-child, and its
    container limit covers every process at that size plus the main process
    (docs/operations.md, "Sizing"); no swap."""
    s = svc[name]
    argv = _argv(s["command"])
    concurrency = int(_option(argv, "-c", "--concurrency") or 0)
    per_child_kib = int(_option(argv, "--max-memory-per-child", "--max-memory-per-child") or 0)
    assert concurrency >= 1 and per_child_kib > 0, argv
    limit = _bytes(_default(s["mem_limit"]))
    assert limit >= concurrency * per_child_kib * 1024 + MAIN_PROCESS_BYTES, (name, limit)
    assert _default(s["memswap_limit"]) == _default(s["mem_limit"]), "workers must not swap"


def test_heavy_pool_is_one_process_with_more_memory_than_fast(svc):
    fast, heavy = (_argv(svc[name]["command"]) for name in WORKERS)
    assert _option(heavy, "-c", "--concurrency") == "1"
    mmpc = "--max-memory-per-child"
    assert int(_option(heavy, mmpc, mmpc) or 0) > int(_option(fast, mmpc, mmpc) or 0)
    # ~1.5 GB: above the streaming target (1 GB per 20-minute job) plus a pool
    # process's baseline, below what a pre-streaming job left behind (2 GB).
    assert 1.25 * 2**20 <= int(_option(heavy, mmpc, mmpc) or 0) <= 2 * 2**20


@pytest.mark.parametrize("name", WORKERS)
def test_worker_grace_period_covers_the_hand_back(svc, name):
    """On SIGTERM a running job sees the drain flag within one heartbeat and
    hands itself back at its next progress report; 60 s covers that with
    margin (docs/operations.md, "Stopping")."""
    grace = _seconds(svc[name]["stop_grace_period"])
    assert grace >= 60
    assert grace >= 4 * Settings().job_heartbeat_s


# ------------------------------------------------------------ healthchecks


@pytest.mark.parametrize("name", WORKERS)
def test_workers_are_probed_with_audioq_health_worker(svc, name):
    check = svc[name]["healthcheck"]
    assert _argv(check["test"]) == ["CMD", "audioq", "health", "worker"]
    assert _seconds(check["start_period"]) >= 60, "imports and the DSP warm-up come first"
    args = cli.parser().parse_args(["health", "worker"])
    assert args.func is cli.health_worker


def test_beat_is_probed_on_its_schedule_file(svc):
    beat = svc["beat"]
    schedule = _option(_argv(beat["command"]), "-s", "--schedule")
    assert schedule, "beat needs a schedule file on a volume"
    probe = " ".join(_argv(beat["healthcheck"]["test"]))
    assert schedule in probe, probe
    folder = os.path.dirname(schedule)
    assert any(str(v).endswith(":" + folder) for v in beat.get("volumes", [])), beat.get("volumes")
    # The image creates that folder for its unprivileged user.
    dockerfile = DOCKERFILE.read_text()
    assert f"mkdir -p {folder}" in dockerfile and f"chown audioq:audioq {folder}" in dockerfile
    # Exactly one beat: never replicated.
    assert (beat.get("deploy") or {}).get("replicas", 1) == 1


def test_flower_needs_a_login(svc):
    flower = svc["flower"]
    env = _env(flower)
    assert _required(env["FLOWER_BASIC_AUTH"], "FLOWER_BASIC_AUTH"), env["FLOWER_BASIC_AUTH"]
    for port in flower.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"flower published beyond localhost: {port}"
    probe = " ".join(_argv(flower["healthcheck"]["test"]))
    flower_port = _option(_argv(flower["command"]), "--port", "--port")
    assert f"127.0.0.1:{flower_port}/healthcheck" in probe
    assert "401" in probe, "the probe also checks that the dashboard refuses anonymous access"


def test_app_services_wait_for_healthy_backends(svc):
    assert "healthcheck" in svc["redis"]
    assert "/healthz" in " ".join(_argv(svc["web"]["healthcheck"]["test"]))
    for name in APP_SERVICES:
        s = svc[name]
        assert "healthcheck" in s, f"{name} has no healthcheck"
        deps = s.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        assert deps.get("redis", {}).get("condition") == "service_healthy", name
        assert s.get("restart"), f"{name} has no restart policy"
    for name in ("web", *WORKERS, "beat"):
        deps = svc[name]["depends_on"]
        assert deps["minio-setup"]["condition"] == "service_completed_successfully", name


# ------------------------------------------------------------------ images


def test_images_are_pinned(svc):
    for name, s in svc.items():
        image = _default(s["image"])
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} is not pinned"
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+", svc["redis"]["image"])
    release = r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ"
    assert re.fullmatch(r"(quay\.io/)?minio/minio:" + release, svc["minio"]["image"])
    assert re.fullmatch(r"(quay\.io/)?minio/mc:" + release, svc["minio-setup"]["image"])
    app_images = {_default(svc[name]["image"]) for name in APP_SERVICES}
    assert app_images == {f"audioq:{_project_version()}"}, app_images


def test_dockerfile_base_is_pinned_and_cmd_uses_gevent():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim-\w+\s*$", text, re.M), "pin the base image"
    joined = re.sub(r"\\\n", " ", text)  # fold continuation lines
    cmds = [line for line in joined.splitlines() if line.strip().startswith("CMD")]
    assert len(cmds) == 1, cmds
    cmd = cmds[0]
    assert "gunicorn" in cmd and "web:create_app()" in cmd, cmd
    assert "python:ops.gunicorn_conf" in cmd, cmd
    assert "0.0.0.0:8000" in cmd, cmd
    assert re.search(r"^USER\s+(?!root\b)\S+", text, re.M), "the image must run as a non-root user"


# ----------------------------------------------------------------- settings


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_env_names_equal_stack_env(svc, name):
    env = _env(svc[name])
    assert {n for n in env if n.startswith("AUDIOQ_")} == _stack_env_names()


def test_every_audioq_name_is_read_by_settings():
    settings_text = SETTINGS.read_text()
    files = [COMPOSE, *sorted(K8S.glob("*.yaml"))]
    used = {n for f in files for n in NAME.findall(f.read_text())}
    assert used, "no AUDIOQ_* names found"
    unknown = sorted(
        n
        for n in used
        if f'"{n}"' not in settings_text and f'"{n.removeprefix("AUDIOQ_")}"' not in settings_text
    )
    assert not unknown, f"names shared/settings.py never reads: {unknown}"


def test_secrets_have_no_default(svc):
    env = _env(svc["web"])
    for name in ("AUDIOQ_S3_ACCESS_KEY", "AUDIOQ_S3_SECRET_KEY"):
        assert _required(env[name], name), f"{name} must be required: {env[name]}"
    minio = _env(svc["minio"])
    for name in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert _required(minio[name], name), f"{name} must be required: {minio[name]}"


# -------------------------------------------------------------------- MinIO


def test_app_services_never_get_the_minio_root_credentials(svc):
    for name in APP_SERVICES:
        for key, value in _env(svc[name]).items():
            assert "MINIO_ROOT" not in key and "MINIO_ROOT" not in value, (name, key, value)
    # MinIO's root is its own pair of variables, not the application's.
    for value in _env(svc["minio"]).values():
        assert "AUDIOQ_" not in value, value
    # Only the one-shot set-up holds both (it creates the application user).
    setup = _env(svc["minio-setup"])
    assert "MINIO_ROOT_USER" in setup["MINIO_ROOT_USER"]
    assert "AUDIOQ_S3_ACCESS_KEY" in setup["APP_ACCESS_KEY"]
    holders = {name for name, s in svc.items() if "MINIO_ROOT" in json.dumps(s.get("environment"))}
    assert holders == {"minio", "minio-setup"}, holders


def _policy_bucket(svc) -> str:
    return _default(_env(svc["web"])["AUDIOQ_S3_BUCKET"])


BUCKET_ACTIONS = {"s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"}
OBJECT_ACTIONS = {
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
}


def _check_policy(policy: dict, bucket: str) -> None:
    """Allow-only, object operations on ``bucket`` and nothing else."""
    granted: dict[str, set[str]] = {}
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow" and "Condition" not in st and "NotAction" not in st, st
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        for action in actions:
            assert "*" not in action, f"wildcard action {action}"
            for resource in resources:
                granted.setdefault(action, set()).add(resource)
    assert set(granted) == BUCKET_ACTIONS | OBJECT_ACTIONS, sorted(granted)
    for action, resources in granted.items():
        expected = f"arn:aws:s3:::{bucket}" if action in BUCKET_ACTIONS else f"arn:aws:s3:::{bucket}/*"
        assert resources == {expected}, (action, resources)


def test_minio_policy_grants_only_the_bucket(svc):
    _check_policy(json.loads(POLICY.read_text()), _policy_bucket(svc))


def _setup_script(svc) -> str:
    setup = svc["minio-setup"]
    assert _argv(setup["entrypoint"]) == ["/bin/sh", "-c"]
    command = setup["command"]
    script = command[0] if isinstance(command, list) else command
    return script.replace("$$", "$")  # compose's escape for the container's shell


def test_minio_setup_mounts_the_policy_and_creates_the_user(svc):
    mounts = [str(v).split(":") for v in svc["minio-setup"]["volumes"]]
    policy_in_container = {dst for src, dst, *_ in mounts if (ROOT / src).resolve() == POLICY}
    assert len(policy_in_container) == 1, mounts
    script = _setup_script(svc)
    assert policy_in_container.pop() in script
    steps = (
        "mc mb --ignore-existing",
        "mc admin policy create",
        "mc admin user add",
        "mc admin policy attach",
    )
    for step in steps:
        assert step in script, step


def _run_setup(svc, tmp_path: Path, *, bucket: str, app_key: str, runs: int = 1) -> tuple[int, str]:
    """The set-up script under bash (the mc image's /bin/sh) with a stand-in
    ``mc`` that records its calls, keeps the policy it is given and answers
    a second attach as MinIO does ("already in effect")."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    mc = bindir / "mc"
    mc.write_text(
        f"""#!/bin/bash
echo "mc $*" >> {tmp_path}/calls
case "$1 $2 $3" in
  "admin policy create") cp "$6" {tmp_path}/policy.json ;;
  "admin policy attach")
    if [ -e {tmp_path}/attached ]; then
      echo "mc: <ERROR> The specified policy change is already in effect." >&2; exit 1
    fi
    touch {tmp_path}/attached ;;
esac
"""
    )
    mc.chmod(mc.stat().st_mode | stat.S_IEXEC)
    script = (
        _setup_script(svc)
        .replace("/etc/audioq/minio-policy.json", str(POLICY))
        .replace("/tmp/audioq-app.json", str(tmp_path / "audioq-app.json"))
    )
    env = {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "MINIO_ROOT_USER": "minio-admin",
        "MINIO_ROOT_PASSWORD": "root-secret",
        "APP_ACCESS_KEY": app_key,
        "APP_SECRET_KEY": "app-secret",
        "BUCKET": bucket,
    }
    for _ in range(runs):
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
        if done.returncode:
            break
    return done.returncode, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_minio_setup_script_is_idempotent_and_puts_the_bucket_in(svc, tmp_path):
    code, out = _run_setup(svc, tmp_path, bucket="media-prod", app_key="audioq-app", runs=2)
    assert code == 0, out
    _check_policy(json.loads((tmp_path / "policy.json").read_text()), "media-prod")
    calls = (tmp_path / "calls").read_text()
    assert "mc admin user add root audioq-app app-secret" in calls
    assert calls.count("mc admin policy attach root audioq-app --user audioq-app") == 2


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_minio_setup_refuses_the_root_user_as_the_application_user(svc, tmp_path):
    code, out = _run_setup(svc, tmp_path, bucket="audioq", app_key="minio-admin")
    assert code != 0 and "root" in out, out
    assert not (tmp_path / "calls").exists(), "nothing may be created with the root user as the app's"


# ---------------------------------------------------------------- KEDA recipe


def test_k8s_recipe_objects_reference_each_other(k8s):
    assert set(k8s) == {"ConfigMap", "Deployment", "ScaledObject"}, set(k8s)
    deployment, scaled = k8s["Deployment"], k8s["ScaledObject"]
    assert scaled["apiVersion"].startswith("keda.sh/")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    namespaces = {obj["metadata"]["namespace"] for obj in k8s.values()}
    assert len(namespaces) == 1, namespaces
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    refs = {e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e}
    assert refs == {k8s["ConfigMap"]["metadata"]["name"]}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _trigger(k8s) -> dict:
    triggers = k8s["ScaledObject"]["spec"]["triggers"]
    assert len(triggers) == 1 and triggers[0]["type"] == "redis", triggers
    return triggers[0]["metadata"]


def test_keda_reads_the_heavy_queue_list_in_the_broker_db(k8s, svc):
    meta = _trigger(k8s)
    # KEDA's CRD takes trigger metadata as strings only.
    assert all(isinstance(v, str) for v in meta.values()), meta
    assert meta["listName"] == HEAVY_QUEUE
    assert _queues(_argv(svc["worker-heavy"]["command"])) == {meta["listName"]}
    broker = k8s["ConfigMap"]["data"]["AUDIOQ_BROKER_URL"]
    m = re.fullmatch(r"redis://([^/:]+):(\d+)/(\d+)", broker)
    assert m, broker
    assert meta["address"] == f"{m.group(1)}:{m.group(2)}"
    assert meta["databaseIndex"] == m.group(3)
    # Compose uses the same broker database.
    assert _env(svc["web"])["AUDIOQ_BROKER_URL"].rsplit("/", 1)[1] == m.group(3)


def test_keda_scaling_bounds(k8s):
    spec = k8s["ScaledObject"]["spec"]
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["maxReplicaCount"] >= 2
    assert int(_trigger(k8s)["listLength"]) >= 1
    assert spec["pollingInterval"] > 0 and spec["cooldownPeriod"] > 0
    # The list is empty while workers are busy with what they took: scale
    # down only after it stays empty a while (docs/operations.md).
    down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300


def test_k8s_heavy_worker_matches_compose(k8s, svc):
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    heavy = svc["worker-heavy"]
    assert [str(a) for a in container["command"]] == _argv(heavy["command"])
    assert pod["terminationGracePeriodSeconds"] == _seconds(heavy["stop_grace_period"])
    limits = container["resources"]["limits"]
    assert _bytes(limits["memory"]) == _bytes(_default(heavy["mem_limit"]))
    assert container["resources"]["requests"]["memory"] == limits["memory"], "never overcommitted"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == ["audioq", "health", "worker"], probe
    assert container["image"].rpartition(":")[2] == _project_version()
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_k8s_env_names_equal_stack_env_and_secrets_come_from_a_secret(k8s):
    container = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    from_secret = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    literal = {e["name"] for e in container["env"] if "value" in e}
    assert from_secret == {"AUDIOQ_S3_ACCESS_KEY", "AUDIOQ_S3_SECRET_KEY"}
    assert not literal & from_secret
    assert set(k8s["ConfigMap"]["data"]) | from_secret | literal == _stack_env_names()


# --------------------------------------------------------------- Prometheus


def _documented_metrics() -> dict[str, str]:
    """name -> type, from the metrics table of docs/operations.md."""
    rows = {}
    header: list[str] = []
    for line in OPERATIONS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == ["metric", "type"]:
            header = cells
            continue
        if header and line.startswith("|") and (m := re.fullmatch(r"`(audioq_\w+)`", cells[0])):
            row = dict(zip(header, cells, strict=True))
            assert row["type"] in ("counter", "gauge", "histogram"), row
            assert row["meaning"], row
            rows[m.group(1)] = row["type"]
        elif header and not line.startswith("|"):
            header = []
    return rows


def test_metrics_table_documents_each_metric():
    metrics = _documented_metrics()
    assert len(metrics) >= 18, sorted(metrics)
    for name, kind in metrics.items():
        # Prometheus naming: counters end in _total, no histogram does.
        assert name.endswith("_total") == (kind == "counter"), (name, kind)


def test_metrics_table_is_what_the_api_serves(client):
    """The one test here that runs code: every metric family GET /metrics
    serves is in the table, with its type, and the table lists nothing else."""
    resp = client.get("/metrics")
    assert resp.status_code == 200
    served = {}
    for line in resp.get_data(as_text=True).splitlines():
        if line.startswith("# TYPE audioq_"):
            _, _, name, kind = line.split()
            if name.endswith("_created"):
                continue  # prometheus-client's creation time of a counter (single process only)
            # Older text formats name a counter's family without its _total.
            served[name if name.endswith("_total") or kind != "counter" else name + "_total"] = kind
    assert served == _documented_metrics()


# Not audioq's: Prometheus's own scrape health and the blackbox exporter's result.
STANDARD_METRICS = {"up", "probe_success"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def _promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are neither
    functions/aggregations (followed by a parenthesis), keywords, label names
    (inside {} or by/without/on/ignoring lists) nor durations."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", s):
        if s[m.end() :].lstrip().startswith("(") or m.group().lower() in PROMQL_WORDS:
            continue
        names.add(m.group())
    return names


def _alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_three_alert_rules():
    rules = _alert_rules()
    assert [r["alert"] for r in rules] == ["AudioqQueueBacklog", "AudioqJobFailureRatio", "AudioqNotReady"]
    for rule in rules:
        assert rule["expr"].strip() and _seconds(rule["for"]) > 0, rule["alert"]
        assert rule["labels"]["severity"] and rule["annotations"]["summary"], rule["alert"]
    by_name = {r["alert"]: _promql_metric_names(r["expr"]) for r in rules}
    assert "audioq_queue_oldest_age_seconds" in by_name["AudioqQueueBacklog"]
    assert by_name["AudioqJobFailureRatio"] == {"audioq_jobs_total"}
    assert "probe_success" in by_name["AudioqNotReady"]


def test_alert_rules_name_only_documented_metrics():
    metrics = _documented_metrics()
    known = set(metrics) | STANDARD_METRICS
    for name, kind in metrics.items():
        if kind == "histogram":
            known |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    for rule in _alert_rules():
        names = _promql_metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= known, (rule["alert"], sorted(names - known))


def test_promql_metric_name_extraction():
    expr = (
        'sum by (op) (max without (instance) (rate(audioq_jobs_total{status=~"a|b"}[15m]))) > 0.1 and up == 0'
    )
    assert _promql_metric_names(expr) == {"audioq_jobs_total", "up"}


def test_scrape_config_has_the_jobs_the_rules_use(svc):
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS / rule_file).is_file(), rule_file
    used = {j for r in _alert_rules() for j in re.findall(r'job="([^"]+)"', r["expr"])}
    assert used and used <= set(jobs), (used, set(jobs))
    api = jobs["audioq-api"]
    assert api["metrics_path"] == "/metrics"
    web_port = svc["web"]["ports"][0].rsplit(":", 1)[1]
    assert [t for sc in api["static_configs"] for t in sc["targets"]] == [f"web:{web_port}"]
    probe_targets = [t for sc in jobs["audioq-readyz"]["static_configs"] for t in sc["targets"]]
    assert probe_targets and all(t.endswith("/readyz") for t in probe_targets)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus) not installed")
def test_alert_rules_pass_their_promtool_unit_tests():
    done = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -------------------------------------------------------------------- docs


def test_readme_production_links_the_operator_guide():
    readme = (ROOT / "README.md").read_text()
    production = readme.split("## Production", 1)[1].split("\n## ", 1)[0]
    assert "docs/operations.md" in production
