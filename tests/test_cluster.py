"""Multi-node Ray in one machine: a node lost mid-trial (`ray.cluster_utils.Cluster`) and the Jobs
API path (`ray start --head` + `ray job submit`). Every node listens on 127.0.0.1 only; each
cluster has its own temp dir (so no other `ray.init()` on this machine finds it) and is stopped
here, by its own processes, never by a machine-wide `ray stop`."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from ray_nas import store
from ray_nas.config import expand_grid, load_spec
from ray_nas.search.trial import run_trial

from .conftest import REPO

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NO_RETRAIN = {"benchmark": None, "retrain": None}
#: a client that connects to a 127.0.0.1 node must not rewrite the address to the host's interface
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def short_tmp():
    """A short temp dir (Ray's socket paths must stay under 107 characters)."""
    path = tempfile.mkdtemp(prefix="rn", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _kill_leftovers(marker: str) -> None:
    """SIGKILL processes of ours whose command line names `marker` (our cluster's temp dir)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def _alphas(job_dir: str, rid: str) -> pd.DataFrame:
    return store.read_frame(store.trial_paths(job_dir, rid)["alphas"])


#: every node of these clusters: 127.0.0.1, one CPU, a small object store
NODE = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "object_store_memory": 80 * 2**20}


@dataclass
class PausedDriver:
    cluster: object
    """ray.cluster_utils.Cluster: a head without CPUs, `worker` the one node that runs work"""
    worker: object
    proc: subprocess.Popen
    log: Path
    """the driver's stdout and stderr (and its Ray workers' output)"""
    pause: Path

    def replace_worker(self) -> float:
        """Kill the worker node (no graceful exit), add a fresh one, let the paused work go on;
        the time of the removal."""
        t = time.time()
        self.cluster.remove_node(self.worker, allow_graceful=False)
        self.cluster.add_node(**NODE)
        (self.pause / "go").write_text("")
        return t

    def wait_ok(self, deadline: float) -> None:
        """Poll until the driver exits; it must exit 0 before `deadline`."""
        while self.proc.poll() is None:
            assert time.time() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.05)
        assert self.proc.returncode == 0, self.log.read_text()[-3000:]


@contextlib.contextmanager
def paused_driver(cmd: list[str], tmp_path: Path, short_tmp: str, monkeypatch):
    """A cluster of our own (files under short_tmp) and `cmd` as its driver, whose trial or
    retraining pauses after epoch 2 (RAY_NAS_PAUSE_ONCE); yields a PausedDriver once it paused,
    then stops the driver, the cluster and its processes."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_TMPDIR", short_tmp)  # the cluster's files and address stay there
    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": 0})
    proc, log, pause = None, tmp_path / "driver.log", tmp_path / "pause"
    try:
        worker = cluster.add_node(**NODE)
        env = {**os.environ, **LOOPBACK, "RAY_ADDRESS": cluster.address, "PYTHONPATH": str(REPO),
               "RAY_NAS_PAUSE_ONCE": f"{pause}:2"}  # fmt: skip
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        deadline = time.time() + 300
        while not (pause / "paused").exists():
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        yield PausedDriver(cluster, worker, proc, log, pause)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        cluster.shutdown()
        _kill_leftovers(short_tmp)


def test_node_lost_mid_trial_resumes_on_a_fresh_node(write_job, tmp_path, short_tmp, monkeypatch):
    search = {"epochs": 4, "steps_per_epoch": 2}
    ref = load_spec(write_job(name="ref", search=search))
    ((cfg, rid, _),) = expand_grid(ref)
    run_trial(ref, cfg, rid, progress=False, log=lambda s: None)  # uninterrupted

    job = write_job(name="nodeloss", search=search, resources={"cpu": 1, "gpu": 0}, max_failures=1,
                    evaluate=NO_RETRAIN)  # fmt: skip
    spec = load_spec(job)
    epochs_file = store.trial_paths(spec.job_dir, rid)["epochs"]
    cmd = [sys.executable, "-m", "ray_nas.cli", "sweep", str(job), "--no-evaluate"]
    with paused_driver(cmd, tmp_path, short_tmp, monkeypatch) as run:  # epochs 0..2 written,
        t_removed = run.replace_worker()  # checkpoint of 2 not yet; the trial's node dies
        deadline = time.time() + 300
        while not (
            os.path.exists(epochs_file)
            and os.path.getmtime(epochs_file) > t_removed
            and store.read_frame(epochs_file).epoch.max() >= 2
        ):  # the first epoch written on the new node
            assert run.proc.poll() is None and time.time() < deadline, run.log.read_text()[-3000:]
            time.sleep(0.05)
        recovery = time.time() - t_removed
        run.wait_ok(time.time() + 300)
    log = run.log
    out = log.read_text()
    print(f"node-loss recovery: {recovery:.1f}s from node removal to the first new epoch")
    said = [ln for ln in out.splitlines() if f"trial {rid} failed on node 127.0.0.1" in ln]
    assert said and "failure 1 of max_failures=1" in said[0] and "retries it" in said[0], out[
        -3000:
    ]
    ep = store.read_frame(epochs_file)
    assert ep.epoch.tolist() == [0, 1, 2, 3, 4]  # each epoch exactly once
    pd.testing.assert_frame_equal(_alphas(spec.job_dir, rid), _alphas(ref.job_dir, rid))
    assert store.read_status(spec.job_dir).status.tolist() == ["completed"]


#: a driver that retrains a job's selections as Ray tasks on the cluster at RAY_ADDRESS (the path
#: of `ray-nas evaluate` with RAY_ADDRESS set, without MLflow)
_RETRAIN_DRIVER = """
import sys
from ray_nas.offline.evaluate import run_evaluate
from ray_nas.config import load_spec
from ray_nas.search.sweep import ray_map
run_evaluate(load_spec(sys.argv[1]), retrain_map=ray_map)
"""


def test_node_lost_mid_retrain_resumes_from_its_checkpoint(write_job, tmp_path, short_tmp,
                                                           monkeypatch):  # fmt: skip
    """A DARTS-space retraining task (proxy recipe at C=2, 3 cells, 3 epochs, digits) paused
    after epoch 2's checkpoint; its node is removed, a fresh one added; Ray reruns the task
    there, it resumes from epoch 2 on the store and ends as an uninterrupted retrain."""
    from ray_nas.search.trial import FileCheckpoint
    from ray_nas.spaces import get_space
    from ray_nas.spaces.recipes import state_digest

    retrain = {"recipe": "proxy", "overrides": {"layers": 3, "channels": 2, "epochs": 3, "batch_size": 8,
                                                "steps_per_epoch": 2, "auxiliary_weight": 0.0}}  # fmt: skip
    search = {"space": "darts", "dataset": "digits", "ops": ["skip_connect", "sep_conv_3x3"],
              "layers": 3, "channels": 2, "epochs": 1, "steps_per_epoch": 1, "batch_size": 8}  # fmt: skip
    spec = load_spec(write_job(name="rtloss", search=search, criteria=["final"],
                               evaluate={"benchmark": None, "retrain": retrain}))  # fmt: skip
    ((cfg, rid, _),) = expand_grid(spec)
    run_trial(spec, cfg, rid, progress=False, log=lambda s: None)
    cmd = [sys.executable, "-c", _RETRAIN_DRIVER, spec.source]
    with paused_driver(cmd, tmp_path, short_tmp, monkeypatch) as run:  # epoch 2's checkpoint is
        run.replace_worker()  # on the store; the task's node dies, a fresh one joins
        run.wait_ok(time.time() + 300)
    log = run.log
    out = log.read_text()
    assert "resuming from the checkpoint of epoch 2" in out, out[-3000:]
    assert out.count("retrain epoch 3/3") == 1, out[-3000:]  # only epoch 3 ran after the loss
    cache = store.read_frame(f"{spec.job_dir}/retrain_genotypes.parquet")
    (ckpt,) = os.listdir(f"{spec.job_dir}/retrain")
    state = FileCheckpoint(f"{spec.job_dir}/retrain/{ckpt}").load()
    space = get_space("darts")
    whole = space.retrain(
        cache.genotype.iloc[0],
        space.retrain_recipe(spec.evaluate.retrain)[1],
        "digits",
        "data",
        0,
        log=lambda s: None,
    )  # uninterrupted, no checkpoint
    assert state["epoch"] == 3 and state["train_loss"] == whole.train_loss
    assert state_digest(state["model"]) == whole.digest  # bit-identical weights
    assert cache.test_acc.tolist() == [whole.test_acc]


def test_jobs_api_sweep_succeeds(write_job, tmp_path, short_tmp):
    """`ray job submit --working-dir . -- python jobs/run.py sweep JOB` on a head of our own."""
    job = write_job(name="viajobs", search={"epochs": 1, "steps_per_epoch": 1}, grid={"seed": [0, 1]},
                    resources={"cpu": 1, "gpu": 0}, evaluate=NO_RETRAIN)  # fmt: skip
    ray = str(Path(sys.executable).parent / "ray")
    gcs, dash, client, agent, agent_grpc, rt_env, metrics, nm, om = _free_ports(9)
    env = {**os.environ, **LOOPBACK, "RAY_TMPDIR": short_tmp}
    env.pop("RAY_ADDRESS", None)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # the job's `python`
    head = [ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
            "--num-cpus", "2", "--num-gpus", "0", "--temp-dir", f"{short_tmp}/ray",
            "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
            "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
            "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(rt_env),
            "--metrics-export-port", str(metrics), "--node-manager-port", str(nm),
            "--object-manager-port", str(om), "--object-store-memory", str(80 * 2**20),
            "--disable-usage-stats"]  # fmt: skip
    head_log = open(tmp_path / "head.log", "w")
    proc = subprocess.Popen(head, env=env, stdout=head_log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 180
        while subprocess.run([ray, "job", "list", "--address", address], env=env,
                             capture_output=True).returncode != 0:  # fmt: skip
            assert proc.poll() is None and time.time() < deadline, (
                tmp_path / "head.log"
            ).read_text()[-3000:]
            time.sleep(1)
        submit = [ray, "job", "submit", "--address", address, "--submission-id", "rn-sweep",
                  "--working-dir", ".", "--", "python", "jobs/run.py", "sweep", str(job), "--no-evaluate"]  # fmt: skip
        r = subprocess.run(submit, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
        st = subprocess.run([ray, "job", "status", "--address", address, "rn-sweep"], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
        assert "job 'rn-sweep' succeeded" in st.stdout.lower(), st.stdout
        logs = subprocess.run([ray, "job", "logs", "--address", address, "rn-sweep"], env=env,
                              capture_output=True, text=True, timeout=60).stdout  # fmt: skip
        assert "sweep viajobs: 2 trials, 0 already complete, 2 to run" in logs
        assert "Tune finished 2 trials" in logs and "(0 errored)" in logs
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        _kill_leftovers(short_tmp)
        head_log.close()
    status = store.read_status(load_spec(job).job_dir)
    assert len(status) == 2 and set(status.status) == {"completed"}
