"""The sweep on a real local Ray (shared by these tests), results in a real MLflow."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ray_nas import store
from ray_nas.cli.commands import evaluate_command, sweep_command
from ray_nas.config import SpecError, expand_grid, load_spec
from ray_nas.offline.evaluate import run_evaluate

from .helpers import count_runs

pytestmark = pytest.mark.ray

GRID = {"lr_scheme": ["nb201", "exchange"], "seed": [0, 1]}
NO_RETRAIN = {"benchmark": None, "retrain": None}


def _epochs(spec):
    ep = pd.read_parquet(f"{spec.job_dir}/epochs")
    return ep.assign(run_id=ep.run_id.astype(str))


#: Tune's experiment-level files (the trial folders hold nothing unless a trial fails)
EXPERIMENT_FILES = [
    ".validate_storage_marker",
    "basic-variant-state",
    "experiment_state",
    "tuner.pkl",
]


def _tune_files(spec) -> dict[str, list]:
    """Tune's files under the job: those in its trial folders (paths), the experiment-level ones
    (names, less their timestamps)."""
    files = [p for p in Path(spec.job_dir, "tune").rglob("*") if p.is_file()]
    top = sorted(re.sub(r"-\d{4}-\d\d-\d\d_[\d-]+\.json$", "", p.name) for p in files
                 if p.parent.parent.name == "tune")  # fmt: skip
    return {"trial": [p for p in files if p.parent.parent.name != "tune"], "experiment": top}


def test_sweep_end_to_end_and_idempotent_mlflow(ray_session, write_job, capsys):
    """A 2x2 grid on the shared Ray, its four trials packed on its one (logical) GPU and run all at
    once; then evaluate and MLflow, idempotent; a rerun reruns nothing."""
    job = write_job(name="e2e", search={"epochs": 2}, grid=GRID, resources={"cpu": 0.5, "gpu": 0.25},
                    criteria=["final", {"name": "dartsplus_sc", "k": 2}], evaluate=NO_RETRAIN)  # fmt: skip
    assert sweep_command(str(job), [], dry_run=True) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    spec = load_spec(job)
    rids = [rid for _, rid, _ in expand_grid(spec)]
    assert [line.split()[0] for line in lines[:4]] == rids and "lr_scheme=nb201 seed=0" in lines[0]
    assert not os.path.exists(spec.job_dir)  # a dry run writes nothing

    assert sweep_command(str(job), []) == 0
    ep = _epochs(spec)
    assert sorted(ep.run_id.unique()) == sorted(rids)
    assert ep.groupby("run_id").epoch.apply(list).map(lambda e: sorted(e) == [0, 1, 2]).all()
    sel = pd.read_parquet(f"{spec.job_dir}/selections.parquet")
    assert len(sel) == 8
    trials = pd.read_parquet(f"{spec.job_dir}/trials.parquet")
    assert sorted(trials.run_id) == sorted(rids) and set(trials.status) == {"completed"}
    # Tune's folder: one experiment (its state files), its trial folders empty (no per-trial
    # logger files: the sweep sets TUNE_DISABLE_AUTO_CALLBACK_LOGGERS), the job in no config
    assert _tune_files(spec) == {"trial": [], "experiment": EXPERIMENT_FILES}
    state = next(Path(spec.job_dir, "tune").glob("tune-*/experiment_state-*.json")).read_text()
    assert rids[0] in state and "tracking_uri" not in state  # the job: not in the trials' configs
    st = store.read_status(spec.job_dir)
    assert st.started.max() < st.updated.min(), "the four trials did not run at the same time"
    first = count_runs(spec.tracking_uri, spec.name)
    assert (
        first["runs"] == 5 and first["valid_acc_points"] == 4 * 3 and first["duplicate_steps"] == 0
    )
    # a second evaluate creates no run and duplicates no step
    capsys.readouterr()
    assert evaluate_command(str(job), []) == 0
    assert count_runs(spec.tracking_uri, spec.name) == first
    assert "0 trial runs created, 0 updated, 4 unchanged" in capsys.readouterr().out
    # rerunning the sweep reruns nothing
    capsys.readouterr()
    assert sweep_command(str(job), [], evaluate=False) == 0
    assert "4 already complete, 0 to run" in capsys.readouterr().out


def test_crashed_trial_is_retried_from_its_checkpoint(
    ray_session, write_job, tmp_path, monkeypatch
):
    monkeypatch.setenv("RAY_NAS_FAIL_ONCE", f"{tmp_path}/fault:1")
    job = write_job(name="crash", search={"epochs": 3}, resources={"cpu": 1, "gpu": 0}, max_failures=2,
                    evaluate=NO_RETRAIN)  # fmt: skip
    assert sweep_command(str(job), [], evaluate=False) == 0
    assert (tmp_path / "fault" / "failed-once").exists()  # it did crash once
    spec = load_spec(job)
    # the crashed trial's folder holds Tune's error files (its trace), nothing else
    assert {p.name for p in _tune_files(spec)["trial"]} == {"error.txt", "error.pkl"}
    ep = _epochs(spec)
    assert sorted(ep.epoch) == [0, 1, 2, 3]  # every epoch exactly once
    assert store.read_status(spec.job_dir).status.tolist() == ["completed"]


def test_driver_killed_then_resumed(ray_session, write_job):
    job = write_job(name="killed", search={"epochs": 3, "steps_per_epoch": 4}, grid={"seed": [0, 1, 2, 3]},
                    resources={"cpu": 1, "gpu": 0}, evaluate=NO_RETRAIN)  # fmt: skip
    spec = load_spec(job)
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    cmd = [sys.executable, "-m", "ray_nas.cli", "sweep", str(job), "--no-evaluate"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    done = []
    while time.time() < deadline and proc.poll() is None:
        st = store.read_status(spec.job_dir)
        done = st[st.status == "completed"].run_id.tolist() if len(st) else []
        if done:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    mtimes = {rid: os.path.getmtime(store.trial_paths(spec.job_dir, rid)["epochs"]) for rid in done}
    time.sleep(1)  # let Ray reap the dead driver's trial actors
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    # A trial can still finish between the status read above and the kill (or before Ray reaps the
    # dead driver's actors), so the resumed sweep may find more complete than `done`, never fewer.
    m = re.search(r"(\d+) already complete", r.stdout)
    assert m and len(done) <= int(m.group(1)) <= 4, r.stdout[:400]
    st = store.read_status(spec.job_dir)
    assert len(st) == 4 and set(st.status) == {"completed"}
    ep = _epochs(spec)
    assert (ep.groupby("run_id").epoch.count() == 4).all()  # every epoch once, every trial
    for rid, mtime in mtimes.items():  # finished trials were not rerun
        assert os.path.getmtime(store.trial_paths(spec.job_dir, rid)["epochs"]) == mtime


def test_retrain_cache(write_job):
    job = write_job(name="rt", search={"epochs": 1, "steps_per_epoch": 2}, grid={"seed": [0, 1]},
                    criteria=["final", "best_valid"],
                    evaluate={"retrain": {"epochs": 1, "channels": 4, "cells": 1, "batch_size": 32, "steps_per_epoch": 2}})  # fmt: skip
    spec = load_spec(job)
    from ray_nas.search.trial import run_trial

    for cfg, rid, _ in expand_grid(spec):
        run_trial(spec, cfg, rid, progress=False, log=lambda s: None)
    first, second = [], []
    res = run_evaluate(spec, log=first.append)
    assert res.metric == "retrain_acc" and res.selections.retrain_acc.notna().all()
    assert any("0 cached" in line for line in first)
    run_evaluate(spec, log=second.append)
    assert any(" 0 to train" in line for line in second)
    cache = pd.read_parquet(f"{spec.job_dir}/retrain.parquet")
    assert len(cache) == cache.arch.nunique()


def test_online_stop_ends_where_the_offline_criterion_says(write_job):
    from ray_nas.criteria import from_trial, parse_criterion
    from ray_nas.search.trial import run_trial

    stop = {
        "name": "darts_es",
        "window": 1,
        "delta": 1,
        "factor": 1e-6,
        "rollback": False,
        "start_epoch": 1,
    }
    job = write_job(
        name="stop", search={"epochs": 5, "hessian_every": 1}, stop=stop, evaluate=NO_RETRAIN
    )
    spec = load_spec(job)
    cfg, rid, _ = expand_grid(spec)[0]
    assert run_trial(spec, cfg, rid, progress=False, log=lambda s: None) == "stopped"
    trials, _ = store.read_job(spec.job_dir)
    traj = from_trial(trials[0])
    crit = parse_criterion(stop)
    last = traj.last_epoch
    assert last < 5
    assert crit.apply(traj).fired and crit.apply(traj).epoch == last
    assert not crit.apply(traj.prefix(last - 1)).fired
    st = store.read_status(spec.job_dir).iloc[0]
    assert st.status == "stopped" and st.stop_epoch == last


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_input_fails_before_any_trial(ray_session, write_job, monkeypatch):
    job = write_job(name="bad", grid={"seed": [0]}, evaluate=NO_RETRAIN)
    spec = load_spec(job)
    # unreachable tracking server
    port = _free_port()
    with pytest.raises(Exception, match="not reachable"):
        sweep_command(str(job), [f"tracking_uri=http://127.0.0.1:{port}"])
    # a store that already holds this job with a different grid
    store.write_bytes(f"{spec.job_dir}/job.yaml", b"name: bad\ngrid: {seed: [5]}\nsearch: {}\n")
    with pytest.raises(SpecError, match="different `grid`"):
        sweep_command(str(job), [])
    assert not os.path.exists(f"{spec.job_dir}/status")  # no trial started
    # an unwritable store
    with pytest.raises(SpecError, match="not writable"):
        sweep_command(str(job), ["store=/proc/ray_nas_store"])


def test_unreachable_ray_address(write_job, monkeypatch):
    from ray_nas.search.sweep import check_ray_address

    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_free_port()}")
    with pytest.raises(SpecError, match="no Ray cluster answers"):
        check_ray_address(timeout=2)


def test_http_tracking_server(mlflow_server, write_job):
    from ray_nas.search.trial import run_trial
    from ray_nas.tracking import check_tracking, log_job

    uri = f"http://127.0.0.1:{mlflow_server}"  # a real `mlflow server`, shared (tests/conftest.py)
    check_tracking(uri, timeout=5)
    job = write_job(name="http", search={"epochs": 1, "steps_per_epoch": 1}, tracking_uri=uri,
                    criteria=["final"], evaluate=NO_RETRAIN)  # fmt: skip
    spec = load_spec(job)
    cfg, rid, _ = expand_grid(spec)[0]
    run_trial(spec, cfg, rid, progress=False, log=lambda s: None)
    for _ in range(2):  # as `ray-nas evaluate` twice: the second logs nothing new
        log_job(spec, run_evaluate(spec, log=lambda s: None), log=lambda s: None)
    counts = count_runs(uri, "http")
    assert (
        counts["runs"] == 2 and counts["valid_acc_points"] == 2 and counts["duplicate_steps"] == 0
    )


def test_new_criteria_or_evaluate_keys_are_the_same_job(write_job):
    import yaml

    from ray_nas.config import resolved_job_dict
    from ray_nas.search.sweep import check_job_identity

    job = write_job(name="ident", grid={"seed": [0, 1]}, criteria=["final"])
    spec = load_spec(job)
    store.write_bytes(f"{spec.job_dir}/job.yaml", yaml.safe_dump(resolved_job_dict(spec)).encode())
    check_job_identity(
        load_spec(
            job, ["criteria=[best_valid]", "evaluate.retrain=null", "stop={name: dartsplus_sc}"]
        )
    )
    with pytest.raises(SpecError, match="different `search`"):
        check_job_identity(load_spec(job, ["search.epochs=9"]))
    with pytest.raises(SpecError, match="different `grid`"):
        check_job_identity(load_spec(job, ["grid.seed=[0, 1, 2]"]))
    # where the data lies and how the same function runs (the fields run_id leaves out) do not
    # make another job: a sweep resumed on other machines keeps its store
    check_job_identity(
        load_spec(job, ["search.data_root=/elsewhere", "search.device=cpu", "search.compile=true"])
    )
    # a job.yaml written before a search field existed (here the two newest) is the same job
    # when the field's default is in force, and another one when it is not
    old = resolved_job_dict(spec)
    for key in ("channels_last", "compile_mode", "data_root"):
        old["search"].pop(key)
    store.write_bytes(f"{spec.job_dir}/job.yaml", yaml.safe_dump(old).encode())
    check_job_identity(spec)
    with pytest.raises(SpecError, match="different `search`"):
        check_job_identity(load_spec(job, ["search.track_running_stats=true"]))
