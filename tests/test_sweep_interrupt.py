"""A sweep that is stopped by Ctrl-C, and one whose trial's worker is killed (as the kernel's OOM
killer or Ray's memory monitor does): each says so in one line, with what to do."""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import pytest

from ray_nas import store
from ray_nas.cli import main
from ray_nas.config import expand_grid, load_spec
from ray_nas.search.faults import KILL_AT_ENV

NO_RETRAIN = {"benchmark": None, "retrain": None}


@pytest.mark.ray
@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_before_the_offline_stage(ray_session, write_job, capsys):
    job = write_job(name="ctrlc", search={"epochs": 60, "steps_per_epoch": 1},
                    grid={"seed": [0, 1]}, resources={"cpu": 1, "gpu": 0}, criteria=["final"],
                    evaluate=NO_RETRAIN)  # fmt: skip
    spec = load_spec(job)
    files = [store.trial_paths(spec.job_dir, rid)["epochs"] for _, rid, _ in expand_grid(spec)]
    sent: list[float] = []

    def ctrl_c_once_an_epoch_is_written() -> None:
        deadline = time.time() + 240
        while not any(os.path.exists(f) for f in files) and time.time() < deadline:
            time.sleep(0.05)
        sent.append(time.time())
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends the driver

    watcher = threading.Thread(target=ctrl_c_once_an_epoch_is_written, daemon=True)
    watcher.start()
    assert main(["sweep", str(job)]) == 130
    watcher.join(timeout=10)
    assert sent, "no epoch was written"
    out, err = capsys.readouterr()
    assert f"status: ray-nas status {job}" in out  # the banner: trials.parquet comes at the end
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(
        "sweep ctrlc: interrupted: 0 of 2 trials complete, the others resume"
    )
    assert lines[0].endswith(f"rerun `ray-nas sweep {job}`")
    # the offline stage did not run; nothing Tune says about restoring reached the user
    assert not os.path.exists(f"{spec.job_dir}/selections.parquet")
    assert "evaluate ctrlc" not in out and "Tuner.restore" not in out + err


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_trial_is_named_with_what_to_do(ray_session, write_job, monkeypatch, capsys):
    job = write_job(name="oomkill", resources={"cpu": 1, "gpu": 0}, max_failures=0,
                    evaluate=NO_RETRAIN)  # fmt: skip
    monkeypatch.setenv(KILL_AT_ENV, "1")  # the trial's process SIGKILLs itself after epoch 1
    ((_, rid, _),) = expand_grid(load_spec(job))
    assert main(["sweep", str(job), "--no-evaluate"]) == 0
    out, err = capsys.readouterr()
    said = [ln for ln in out.splitlines() if f"trial {rid} failed on node" in ln]
    assert said, out[-3000:]
    assert ("its process was killed, likely out of memory: run fewer at once per node (a larger "
            "`resources.cpu` or `resources.gpu` per trial) or lower `search.batch_size`; no "
            "retries left") in said[0], said  # fmt: skip
    assert "Traceback" not in out + err and "ray-nas sweep: unexpected error" not in err
    done = [ln for ln in out.splitlines() if "1 trials did not complete" in ln]
    assert done and "; 1 of them killed on node " in done[0], out[-3000:]
    # its status says so (it had stayed `running`): trials.parquet, and a rerun resumes it
    trials = pd.read_parquet(f"{load_spec(job).job_dir}/trials.parquet")
    row = trials.set_index("run_id").loc[rid]
    assert row.status == "failed" and row.error.startswith("its process was killed on node ")
    assert row.epochs_done == 1


def _killed_task(x: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does
    return x


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_retraining_task_is_named(ray_session):
    from ray_nas.errors import WorkerKilled
    from ray_nas.search.sweep import ray_map

    with pytest.raises(WorkerKilled) as e:
        ray_map(_killed_task, [(1,)], name="tiny")
    assert str(e.value).startswith("tiny: a retraining task was killed")
    assert "(a larger `evaluate.retrain.cpu` or `evaluate.retrain.gpu` per task)" in str(e.value)


def test_a_ray_cluster_of_another_version_is_one_line():
    from ray_nas.search.sweep import version_mismatch_line

    message = ("Version mismatch: The cluster was started with:\n    Ray: 2.49.1\n    Python: 3.11.2\n"
               "This process on node 192.0.2.2 was started with:\n    Ray: 2.60.0\n"
               "    Python: 3.11.9\n")  # fmt: skip
    assert version_mismatch_line(None, message) == (
        "the Ray cluster running on this node runs Ray 2.49.1, Python 3.11.2, this command Ray "
        "2.60.0, Python 3.11.9; stop that cluster (`ray stop` by whoever started it) or run with "
        "RAY_ADDRESS=local (a new local Ray for this command)"
    )
    assert version_mismatch_line("10.0.0.1:6379", message).startswith(
        "the Ray cluster at RAY_ADDRESS=10.0.0.1:6379 runs Ray 2.49.1"
    )
