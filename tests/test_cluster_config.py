"""The cluster launcher configs pass Ray's own validator, offline (no cloud calls)."""

import copy
import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["cluster.yaml", "cluster-local.yaml"]
SHARED = "/mnt/shared"


def _validate(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", CONFIGS)
def test_config_passes_rays_validator(name):
    prepared = _validate(_load(name))
    assert prepared["file_mounts"] == {"~/ray_nas": "."}
    setup = " ".join(prepared["setup_commands"])
    assert "pip install -q -e ~/ray_nas" in setup
    assert "ray[default,tune]==2.60.*" in setup
    # Every node mounts the shared store at the same path before anything runs.
    init = " ".join(prepared["initialization_commands"])
    assert f"mountpoint -q {SHARED}" in init and f"{SHARED}/runs" in init
    head = " ".join(prepared["head_start_ray_commands"])
    assert "mlflow server" in head and "--host 127.0.0.1 --port 5000" in head


def test_aws_gpu_workers_autoscale_from_zero():
    prepared = _validate(_load("cluster.yaml"))
    head = prepared["available_node_types"][prepared["head_node_type"]]
    workers = [
        t for n, t in prepared["available_node_types"].items() if n != prepared["head_node_type"]
    ]
    assert head["resources"].get("GPU", 0) == 0
    assert any(t["resources"].get("GPU", 0) >= 1 and t["min_workers"] == 0 for t in workers)


def test_fractional_gpu_in_node_resources_is_rejected():
    import jsonschema

    broken = _load("cluster.yaml")
    worker = next(n for n in broken["available_node_types"] if n != broken["head_node_type"])
    broken["available_node_types"][worker]["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_rough_edges(name):
    """Auth mode explicit on every node, no hard-coded home, the MLflow server stoppable by PID,
    sudo only where the SSH user is not root, the dashboard on 127.0.0.1."""
    text = (ROOT / name).read_text()
    prepared = _validate(_load(name))
    setup = " ".join(prepared["setup_commands"])
    assert "export RAY_AUTH_MODE=disabled" in setup
    assert "/home/ubuntu" not in text
    head = " ".join(prepared["head_start_ray_commands"])
    assert "> $HOME/mlflow/server.pid" in head and "sqlite:///$HOME/mlflow/mlflow.db" in head
    assert f"ray exec {name} 'kill -- -$(cat ~/mlflow/server.pid)'" in text
    assert "--dashboard-host=0.0.0.0" not in head
    for cmd in prepared["initialization_commands"]:
        assert "sudo" not in cmd.replace("|| echo sudo)", "")  # every sudo is conditional
    assert "rsync" in text.split("cluster_name:")[0] and "6.5 GB" in text


def test_end_of_run_hint_opens_a_tracking_server():
    from ray_nas.cli.commands import mlflow_hint

    assert mlflow_hint("sqlite:///mlflow.db") == "mlflow ui --backend-store-uri sqlite:///mlflow.db"
    assert mlflow_hint("sqlite:///mlflow.db", "3").endswith(
        ", then open http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
        "&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true"
    )
    hint = mlflow_hint("http://127.0.0.1:5000/", "7")
    assert hint.startswith("open http://127.0.0.1:5000/#/experiments/7/runs?workflowType=")
    assert "ray attach CLUSTER.yaml -p 5000" in hint and "port 5000 free" in hint
    assert "--backend-store-uri" not in hint


# ------------------------------------------------------------------------------------------
# jobs/run.py: what the cluster config promises, whatever shell started the driver


def _run_py():
    spec = importlib.util.spec_from_file_location("jobs_run", ROOT / "jobs" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bashrc(home: Path, mode: str = "disabled") -> Path:
    """~/.bashrc as the configs' setup_commands leave it (the line they append, verbatim)."""
    prepared = _validate(_load("cluster.yaml"))
    line = next(c for c in prepared["setup_commands"] if "RAY_AUTH_MODE" in c)
    appended = line.split("echo '", 1)[1].rsplit("'", 1)[0].replace("disabled", mode)
    home.mkdir(parents=True, exist_ok=True)
    (home / ".bashrc").write_text("# the user's own lines\nexport FOO=1\n" + appended + "\n")
    return home


def _listening():
    """A port that accepts connections and says nothing (another service, or a proxy)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, f"127.0.0.1:{s.getsockname()[1]}"


def _gcs_like(code=None):
    """A gRPC server answering the GCS call the probe makes (Ray's own method name), as a
    running cluster's GCS does; `code`: abort with that status instead."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from ray_nas.offline.retrain import GCS_PROBE

    service, method = GCS_PROBE.strip("/").split("/")

    def reply(request, context):
        if code is not None:
            context.abort(code, "no")
        return b""

    server = grpc.server(ThreadPoolExecutor(1))
    handler = grpc.unary_unary_rpc_method_handler(reply)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {method: handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def test_only_a_gcs_counts_as_a_running_cluster():
    """A port that takes the connection but is no Ray GCS (here a silent socket, on the walk a
    proxy answering HTTP 404) is not a cluster: a driver sent there retried for minutes."""
    import grpc

    from ray_nas.offline.retrain import answers

    silent, plain = _listening()
    gcs, live = _gcs_like()
    token, guarded = _gcs_like(grpc.StatusCode.UNAUTHENTICATED)
    other, elsewhere = _gcs_like(grpc.StatusCode.UNIMPLEMENTED)
    try:
        t0 = time.perf_counter()
        assert not answers(plain, timeout=1.0) and not answers(elsewhere)
        assert answers(live) and answers(f"http://{live}/") and answers(guarded)
        assert not answers(_dead_address()) and not answers("nohost")
        assert time.perf_counter() - t0 < 10
    finally:
        silent.close()
        for server in (gcs, token, other):
            server.stop(None)


def _dead_address() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


def test_run_py_sets_the_configs_auth_mode_over_a_stale_environment(tmp_path, monkeypatch):
    run = _run_py()
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "raytmp"))  # no cluster on this node
    home = _bashrc(tmp_path / "home", mode="token")
    changes, notes, error = run.cluster_env(
        ["status", "j.yaml"], {"RAY_AUTH_MODE": "disabled"}, home
    )
    assert changes == {"RAY_AUTH_MODE": "token"} and error is None
    assert "RAY_AUTH_MODE=disabled replaced by token" in notes[0]
    # a tmux server's environment without the variable: set; on a machine the configs did not
    # set up, nothing changes
    assert run.cluster_env(["status", "j.yaml"], {}, _bashrc(tmp_path / "h2"))[0] == {
        "RAY_AUTH_MODE": "disabled"
    }
    assert run.cluster_env(["status", "j.yaml"], {}, tmp_path / "nohome") == ({}, [], None)


def test_run_py_joins_the_cluster_running_on_this_node(tmp_path, monkeypatch):
    run = _run_py()
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    server, live = _gcs_like()  # stands for the GCS `ray start` recorded
    try:
        (tmp_path / "ray").mkdir()
        (tmp_path / "ray" / "ray_current_cluster").write_text(live + "\n")
        home = _bashrc(tmp_path / "home")
        changes, notes, error = run.cluster_env(["sweep", "j.yaml"], {}, home)
        assert changes == {"RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": live} and error is None
        dead = _dead_address()  # a stale RAY_ADDRESS from another shell: replaced, and said
        changes, notes, error = run.cluster_env(["evaluate", "j.yaml"], {"RAY_ADDRESS": dead}, home)
        assert (
            changes["RAY_ADDRESS"] == live
            and f"RAY_ADDRESS={dead}: no Ray cluster answers" in notes[0]
        )
        # one that answers is kept (the Jobs API sets the driver's)
        assert "RAY_ADDRESS" not in run.cluster_env(["sweep", "j"], {"RAY_ADDRESS": live}, home)[0]
        silent, plain = _listening()  # a RAY_ADDRESS where something else listens: replaced
        try:
            changes, notes, error = run.cluster_env(["sweep", "j"], {"RAY_ADDRESS": plain}, home)
        finally:
            silent.close()
        assert (
            changes["RAY_ADDRESS"] == live
            and f"RAY_ADDRESS={plain}: no Ray cluster answers" in notes[0]
        )
    finally:
        server.stop(None)
    # the recorded cluster is gone: its address is not used
    assert "RAY_ADDRESS" not in run.cluster_env(["evaluate", "j.yaml"], {}, home)[0]


@pytest.mark.parametrize("case", ["dead_address", "node_without_cluster"])
def test_run_py_fails_within_seconds_when_no_cluster_answers(tmp_path, case):
    """The driver as `ray submit --tmux` starts it: stops in seconds with one line, exit 2."""
    home = _bashrc(tmp_path / "home")
    env = {**os.environ, "HOME": str(home), "RAY_TMPDIR": str(tmp_path / "raytmp")}
    env.pop("RAY_ADDRESS", None)
    if case == "dead_address":
        env["RAY_ADDRESS"] = _dead_address()
    job = ROOT / "jobs" / "quickstart.yaml"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "run.py"), "--", "sweep", str(job)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    took = time.perf_counter() - t0
    assert r.returncode == 2 and took < 20, (took, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobs/run.py: error: ")
    assert ("no Ray cluster answers there" if case == "dead_address" else "ray up") in lines[0]


@pytest.mark.ray
@pytest.mark.slow
def test_evaluate_on_a_node_retrains_on_the_cluster_running_there(write_job, tmp_path, monkeypatch):
    """`ray-nas evaluate` as `ray exec` runs it on a cluster's node (no RAY_ADDRESS): retraining
    runs as Ray tasks on that cluster, and the first line says so; with no cluster, in-process."""
    import shutil
    import tempfile

    from ray.cluster_utils import Cluster

    from ray_nas.config import expand_grid, load_spec
    from ray_nas.search.trial import run_trial
    from tests.test_cluster import LOOPBACK, _kill_leftovers

    search = {"dataset": "digits", "channels": 4, "cells": 1, "epochs": 1, "steps_per_epoch": 1}
    job = write_job(name="onnode", search=search, criteria=["final"],
                    evaluate={"benchmark": None, "retrain": {"epochs": 1, "channels": 4, "cells": 1}})  # fmt: skip
    spec = load_spec(job)
    ((cfg, rid, _),) = expand_grid(spec)
    run_trial(spec, cfg, rid, progress=False, log=lambda s: None)
    short = tempfile.mkdtemp(prefix="rn", dir="/tmp")  # Ray's socket paths stay short
    monkeypatch.setenv("RAY_TMPDIR", short)  # the cluster records its address there
    env = {**os.environ, **LOOPBACK, "RAY_TMPDIR": short, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "ray_nas.cli", "evaluate", str(job)]
    cluster = Cluster(initialize_head=True, head_node_args={"node_ip_address": "127.0.0.1",
                      "num_cpus": 1, "object_store_memory": 80 * 2**20,
                      "include_dashboard": False})  # fmt: skip
    address = cluster.address
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        cluster.shutdown()
        _kill_leftovers(short)
        shutil.rmtree(short, ignore_errors=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    first = r.stdout.splitlines()[0]
    assert first == (f"evaluate onnode: retraining, if any, runs on the Ray cluster at "
                     f"{address} (running on this node, {short}/ray/ray_current_cluster)")  # fmt: skip
    assert "retrain (nb201): 1 runs" in r.stdout and "retrained 1/1" not in r.stdout  # Ray tasks
    assert re.search(r"then open http://127\.0\.0\.1:5000/#/experiments/\d+/runs", r.stdout)
    # no cluster here any more: in this process, and said
    from ray_nas.offline.retrain import retrain_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert retrain_address() == (None, "no RAY_ADDRESS and no Ray cluster running on this node")


# ------------------------------------------------------------------------------------------
# the configs' own shell steps, run here with bash: one node, the head as a worker, MLflow's wait


def test_one_node_local_config_needs_no_worker_or_nfs_edits(tmp_path):
    prepared = _validate(_load("cluster-local.yaml"))
    assert prepared["provider"]["worker_ips"] == []
    for name in CONFIGS:
        text = (ROOT / name).read_text()
        assert '"*.egg-info"' in text and "ulimit -c" not in text
        assert text.count("ulimit -n 65536 2>/dev/null || ulimit -n hard; ray start") == 2
    # the mount step, as it stands (NFS export not replaced), on a folder that is no mount point
    mount = next(c for c in prepared["initialization_commands"] if "mount -t nfs" in c)
    script = mount.replace("/mnt/shared", str(tmp_path / "shared"))
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "no NFS export set, a local folder" in r.stdout, r.stderr


@pytest.mark.parametrize("name", CONFIGS)
def test_a_worker_start_on_the_head_is_refused(name):
    """The first worker start step, with Ray's RAY_HEAD_IP naming this machine, and another one."""
    prepared = _validate(_load(name))
    first = prepared["worker_start_ray_commands"][0]
    assert prepared["worker_start_ray_commands"][1] == "ray stop"
    here = socket.gethostname()
    for head in ("127.0.0.1", here):
        r = subprocess.run(["bash", "-c", first], env={**os.environ, "RAY_HEAD_IP": head},
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        assert r.returncode == 1 and f"it is the cluster's head ({head})" in r.stderr
        assert "remove it from worker_ips" in r.stderr
    r = subprocess.run(["bash", "-c", first], env={**os.environ, "RAY_HEAD_IP": "192.0.2.250"},
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0 and not r.stderr


@pytest.mark.parametrize("name", CONFIGS)
def test_ray_up_waits_for_mlflow(name, tmp_path):
    """The last head step polls MLflow's /health (here a plain HTTP server standing in for it on
    a free port) and returns once it answers; it says so when it never does."""
    prepared = _validate(_load(name))
    wait = prepared["head_start_ray_commands"][-1]
    assert "/health" in wait and "timeout 180 " in wait
    port = _dead_address().rsplit(":", 1)[1]
    script = wait.replace("5000", port).replace("timeout 180 ", "timeout 3 ")
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "does not answer" in r.stdout
    (tmp_path / "health").write_text("OK")
    server = subprocess.Popen([sys.executable, "-m", "http.server", port, "--bind", "127.0.0.1"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        t0 = time.perf_counter()
        r = subprocess.run(["bash", "-c", wait.replace("5000", port)], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
        took = time.perf_counter() - t0
    finally:
        server.kill()
        server.wait()
    assert r.returncode == 0 and f"MLflow answers on 127.0.0.1:{port}" in r.stdout, r.stdout
    assert took < 30


def test_teardown_lists_then_removes_what_the_setup_left(tmp_path):
    """jobs/teardown.sh on a home as setup left it (the .bashrc lines the configs append, the
    files, an MLflow server by PID file): lists each, removes them, keeps the user's own lines."""
    home = _bashrc(tmp_path / "home")
    prepared = _validate(_load("cluster.yaml"))
    venv_line = next(c for c in prepared["setup_commands"] if "RAY_NAS_VENV" in c)
    with open(home / ".bashrc", "a") as f:
        f.write(venv_line.split("echo '", 1)[1].rsplit("'", 1)[0] + "\n")
    for name in ("ray_bootstrap_key.pem", "ray_bootstrap_config.yaml", "run.py"):
        (home / name).write_text("x")
    for name in ("venv/bin", "ray_nas/jobs", "mlflow"):
        (home / name).mkdir(parents=True)
    # stands for the server the head's start command launched: a group leader named mlflow
    server = subprocess.Popen(["bash", "-c", "exec -a mlflow-server sleep 120"],
                              start_new_session=True)  # fmt: skip
    (home / "mlflow" / "server.pid").write_text(f"{server.pid}\n")
    env = {**os.environ, "HOME": str(home), "TMUX_TMPDIR": str(tmp_path)}  # no tmux server
    script = str(ROOT / "jobs" / "teardown.sh")
    try:
        listed = subprocess.run(["bash", script], env=env, capture_output=True, text=True,
                                timeout=60)  # fmt: skip
        assert listed.returncode == 0 and server.poll() is None, listed.stderr
        for what in (f"MLflow server running: process group {server.pid}",
                     "~/ray_bootstrap_key.pem", "~/venv", "~/ray_nas", "~/mlflow", "~/run.py",
                     "~/.bashrc: 2 lines marked RAY_NAS_"):  # fmt: skip
            assert what in listed.stdout, listed.stdout
        assert (home / "venv").is_dir()  # listing removes nothing
        removed = subprocess.run(["bash", script, "--remove"], env=env, capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
        assert removed.returncode == 0, removed.stderr
        assert server.wait(timeout=15) is not None
    finally:
        if server.poll() is None:
            server.kill()
    assert sorted(p.name for p in home.iterdir()) == [".bashrc"]
    assert (home / ".bashrc").read_text() == "# the user's own lines\nexport FOO=1\n"
    again = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing left by the cluster config here" in again.stdout
    bad = subprocess.run(["bash", script, "--rm"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument '--rm'" in bad.stderr
