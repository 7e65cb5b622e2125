"""An `s3://` store against moto's standalone S3 server on 127.0.0.1 (started here, stopped after).

The endpoint and credentials reach pyarrow (and the sweep's Ray workers) the standard way: the
AWS_ENDPOINT_URL / AWS_* environment variables.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

from ray_nas import store as stored
from ray_nas.cli import main
from ray_nas.cli.commands import evaluate_command, report_command
from ray_nas.config import load_spec, run_id, search_config

BUCKET = "ray-nas-test"
NO_RETRAIN = {"benchmark": None, "retrain": None}
SEARCH = {"epochs": 4, "steps_per_epoch": 2}


@pytest.fixture(scope="module")
def s3_env():
    """A moto S3 server on 127.0.0.1 (a free port) with one bucket; the AWS_* variables for it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    s3 = pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], allow_bucket_creation=True)
    s3.create_dir(BUCKET)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


def _alphas(job_dir: str, rid: str) -> pd.DataFrame:
    df = stored.read_frame(f"{job_dir}/alphas/run_id={rid}/{stored.PART}")
    return df.sort_values(["epoch", "edge", "op"], ignore_index=True)


def _epochs(job_dir: str, rid: str) -> list[int]:
    return stored.read_frame(f"{job_dir}/epochs/run_id={rid}")["epoch"].tolist()


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the process ended (rc {proc.returncode}) before {path}"
        assert time.time() < deadline, f"no {path} after {timeout}s"
        time.sleep(0.05)


def test_s3_search_killed_resumes_and_evaluates(s3_env, write_job, tmp_path, capsys):
    ref = load_spec(write_job(name="ref", search=SEARCH))  # an uninterrupted search, local store
    rid = run_id(search_config(ref))
    from ray_nas.search.trial import run_trial

    run_trial(ref, search_config(ref), rid, progress=False, log=lambda s: None)

    job = write_job(name="s3job", search=SEARCH, store=f"s3://{BUCKET}/runs",
                    criteria=["final", "best_valid"], evaluate=NO_RETRAIN)  # fmt: skip
    spec = load_spec(job)
    pause = tmp_path / "pause"
    env = {**os.environ, **s3_env, "RAY_NAS_PAUSE_ONCE": f"{pause}:2"}
    cmd = [sys.executable, "-m", "ray_nas.cli", "search", str(job), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    _wait_for(pause / "paused", proc)  # epochs 0..2 are on S3, the checkpoint of epoch 2 is not
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _epochs(spec.job_dir, rid) == [0, 1, 2]
    capsys.readouterr()  # resumed in this process (the AWS_* variables are in its environment)
    assert main(["search", str(job), "--quiet"]) == 0
    assert "resuming from the checkpoint of epoch 1" in capsys.readouterr().out
    assert _epochs(spec.job_dir, rid) == [0, 1, 2, 3, 4]  # each epoch once
    pd.testing.assert_frame_equal(_alphas(spec.job_dir, rid), _alphas(ref.job_dir, rid))
    assert stored.read_status(spec.job_dir).status.tolist() == ["completed"]

    assert evaluate_command(str(job), []) == 0
    # what the README shows: pandas reads the store through pyarrow's S3 filesystem
    fs, path = pafs.FileSystem.from_uri(f"s3://{BUCKET}/runs/s3job/selections.parquet")
    sel = pd.read_parquet(path, filesystem=fs)
    assert sorted(sel.label) == ["best_valid", "final"] and set(sel.run_id) == {rid}
    assert report_command(str(job), [], None) == 0
    assert b"<html" in stored.read_bytes(f"{spec.job_dir}/report.html")[:200].lower()
    # a reader never sees a temporary object: only final names are in the bucket
    names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(f"{BUCKET}/runs", True))]
    assert not [n for n in names if n.endswith(".tmp")]


@pytest.mark.ray
def test_s3_sweep_with_evaluate_while_it_runs(s3_env, ray_session, write_job, tmp_path):
    """A sweep on an S3 store, run by a driver connected to a running Ray (the AWS_* variables
    reach the workers from the driver); `evaluate` while a trial is mid-run marks it in progress."""
    job = write_job(name="s3sweep", search={"epochs": 3, "steps_per_epoch": 1}, grid={"seed": [0, 1]},
                    store=f"s3://{BUCKET}/sweeps", resources={"cpu": 1, "gpu": 0},
                    criteria=["final"], evaluate=NO_RETRAIN, keep_checkpoints=False)  # fmt: skip
    spec = load_spec(job)
    pause = tmp_path / "pause"
    env = {**os.environ, **s3_env, "RAY_NAS_PAUSE_ONCE": f"{pause}:1",
           "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}  # fmt: skip
    cmd = [sys.executable, "-m", "ray_nas.cli", "sweep", str(job), "--no-evaluate"]
    log = tmp_path / "sweep.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        _wait_for(pause / "paused", proc)
        mid = evaluate_command(str(job), [])  # while one trial waits after its epoch 1
        sel = stored.read_frame(f"{spec.job_dir}/selections.parquet")
        (pause / "go").write_text("")
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert mid == 0 and sel.in_progress.any()
    paused = sel.loc[sel.in_progress, "run_id"].iloc[0]
    assert sel.loc[sel.run_id == paused, "stop_epoch"].max() <= 1  # it saw epochs 0..1, whole
    status = stored.read_status(spec.job_dir)
    assert set(status.status) == {"completed"} and len(status) == 2
    for rid in status.run_id:
        assert _epochs(spec.job_dir, rid) == [0, 1, 2, 3]
        # keep_checkpoints: false: a completed trial's checkpoint is gone
        assert not stored.exists(stored.trial_paths(spec.job_dir, rid)["checkpoint"])
    # the sweep's progress: one line per report (a log file: no Tune status tables), one
    # with every trial done and every epoch counted (3 per trial)
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("sweep s3sweep: ")]
    assert any(ln.startswith("sweep s3sweep: 2/2 trials done; epochs 6/6") for ln in lines)
    assert "| Trial name" not in log.read_text()
    # the sweep's end (no evaluation after it) compacted the trajectories; evaluate reads them
    assert f"compacted 2 trials into {spec.job_dir}/compact/" in log.read_text()
    assert stored.read_job_state(spec.job_dir).compacted == 2
    assert evaluate_command(str(job), []) == 0
    assert not stored.read_frame(f"{spec.job_dir}/selections.parquet").in_progress.any()


@pytest.mark.slow
def test_s3_compacted_copy(s3_env, tmp_path):
    """The compacted copy on S3: written (one PUT per file), read in place of the trial files,
    a trial rewritten since read from its own, a damaged copy ignored with a note."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from .nb201_golden import TRIALS, write_store
    from .test_criteria_batch import same_trials

    job_dir = f"{write_store(f's3://{BUCKET}/compact', TRIALS[:2])}/golden"
    assert stored.write_compact(stored.read_job_state(job_dir), settle=0) == 2
    state = stored.read_job_state(job_dir)
    assert state.compacted == 2 and state.note is None
    same_trials(state.trials, sorted(stored.read_job_files(job_dir)[0], key=lambda t: t.run_id))
    rid = state.trials[1].run_id
    fs, _ = stored._fs_path(job_dir)
    for kind in ("epochs", "alphas"):  # resumed from epoch 3
        path = stored.trial_paths(job_dir, rid)[kind]
        with fs.open_input_file(stored._fs_path(path)[1]) as f:
            table = pq.ParquetFile(f).read()
        meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
        keep = pc.less_equal(table["epoch"], 3)
        stored.write_table(table.replace_schema_metadata(None).filter(keep), path, meta)
    state = stored.read_job_state(job_dir)
    assert state.compacted == 1
    assert next(t for t in state.trials if t.run_id == rid).stored_shape[0] == 4
    stored.write_bytes(stored.compact_paths(job_dir)["alphas"], b"PAR1 cut short")
    state = stored.read_job_state(job_dir)
    assert state.compacted == 0 and "alphas.parquet is unreadable" in state.note
    same_trials(state.trials, sorted(stored.read_job_files(job_dir)[0], key=lambda t: t.run_id))
