"""`ray-nas status`: a job's trials read from the store's status and epochs files, while a real
search runs in a subprocess, on real diverged / stopped / failed trials, and on an S3 store."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_nas import cli, store
from ray_nas.config import expand_grid, load_spec
from ray_nas.offline.status import format_status, job_status
from tests.test_s3_store import BUCKET, s3_env  # noqa: F401 - the moto S3 server fixture

REPO = Path(__file__).resolve().parents[1]
SEARCH_ALL = """import sys
from ray_nas.config import expand_grid, load_spec
from ray_nas.search.trial import run_trial
spec = load_spec(sys.argv[1])
for cfg, rid, _ in expand_grid(spec):
    run_trial(spec, cfg, rid, progress=False)
"""


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the process ended (rc {proc.returncode}) before {path}"
        assert time.time() < deadline, f"no {path} after {timeout}s"
        time.sleep(0.05)


def _status_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ray_nas.cli", "status", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.slow
def test_status_while_a_search_runs_then_watch_to_the_end(write_job, tmp_path):
    job = write_job(name="live", grid={"seed": [0, 1]}, search={"epochs": 3, "steps_per_epoch": 2})
    spec = load_spec(job)
    (cfg, rid, _), (_, other, _) = expand_grid(spec)
    pause = tmp_path / "pause"
    env = {**os.environ, "RAY_NAS_PAUSE_ONCE": f"{pause}:1"}
    # the grid's trials one after another (a sweep at one trial at a time), without Ray
    cmd = [sys.executable, "-c", SEARCH_ALL, str(job)]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        _wait_for(pause / "paused", proc)  # epochs 0 and 1 are stored, the search waits
        assert not Path(spec.job_dir, "trials.parquet").exists()  # written only at the end
        js = job_status(spec)
        row = js.trials.set_index("run_id").loc[rid]
        last = store.read_frame(store.trial_paths(spec.job_dir, rid)["epochs"])
        assert row.status == "running" and row.epoch == 1 and row.total_epochs == cfg.total_epochs
        assert row.valid_acc == pytest.approx(last.valid_acc.iloc[-1])
        assert row.s_per_epoch == pytest.approx(last.loc[last.epoch == 1, "seconds"].iloc[0])
        # the ETA: the epochs left of both trials at this trial's pace, one trial at a time
        assert js.eta_s == pytest.approx(
            row.s_per_epoch * (cfg.total_epochs - 1 + cfg.total_epochs)
        )
        assert js.trials.set_index("run_id").loc[other, "status"] == "pending"
        assert not js.finished
        # a trial that has not written for long is marked (here: read an hour later)
        late = job_status(spec, now=time.time() + 3600).trials.set_index("run_id").loc[rid]
        assert late.note.startswith("no update for 1h00m")

        r = _status_cli(str(job))
        assert r.returncode == 0, r.stderr
        line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith(rid))
        assert line.split()[1:5] == [
            "0",
            "running",
            f"1/{cfg.total_epochs}",
            f"{row.valid_acc:.2f}",
        ]
        assert "job live: 2 trials: 1 running, 1 pending" in r.stdout and "ETA: ~" in r.stdout

        # --watch follows the search to its end; the second trial runs too, then it stops
        watch = subprocess.Popen([sys.executable, "-m", "ray_nas.cli", "status", str(job), "--watch", "0.3"],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        (pause / "go").touch()
        assert proc.wait(timeout=240) == 0, proc.stdout.read()
        out, err = watch.communicate(timeout=60)
        assert watch.returncode == 0, err
        reads = out.count("job live: 2 trials")
        assert reads >= 2 and "1 running" in out  # printed during the run, then at the end
        assert out.rstrip().endswith("every trial has ended")
        final = out[out.rindex("job live:") :]
        assert final.startswith("job live: 2 trials: 2 completed")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    end = job_status(spec)
    assert end.finished and end.trials.status.tolist() == ["completed", "completed"]
    assert end.trials.epoch.tolist() == [cfg.total_epochs] * 2


@pytest.mark.slow
def test_diverged_stopped_and_failed_trials_are_marked(write_job, monkeypatch):
    from ray_nas.search.trial import run_trial

    stop = {"name": "darts_es", "window": 1, "delta": 1, "factor": 1e-6, "rollback": False,
            "start_epoch": 1}  # fmt: skip
    job = write_job(name="marks", search={"epochs": 3, "steps_per_epoch": 2, "hessian_every": 1,
                                                "weights": {"grad_clip": 0}},
                    grid={"weights.lr": [1e6, 0.025, 0.01]}, stop=stop)  # fmt: skip
    spec = load_spec(job)
    (c0, diverging, _), (c1, stopping, _), (c2, failing, _) = expand_grid(spec)
    assert run_trial(spec, c0, diverging, progress=False, log=lambda s: None) == "diverged"
    assert run_trial(spec, c1, stopping, progress=False, log=lambda s: None) == "stopped"
    monkeypatch.setenv("RAY_NAS_FAIL_ONCE", f"{spec.job_dir}/fault:0")
    with pytest.raises(RuntimeError, match="injected failure"):
        run_trial(spec, c2, failing, progress=False, log=lambda s: None)

    js = job_status(spec)
    t = js.trials.set_index("run_id")
    st = store.read_status(spec.job_dir).set_index("run_id")
    assert t.loc[diverging, "status"] == "diverged"
    assert t.loc[diverging, "note"].startswith(
        f"DIVERGED at epoch {int(st.loc[diverging, 'diverged_epoch'])}: non-finite"
    )
    assert t.loc[stopping, "status"] == "stopped"
    assert t.loc[stopping, "note"].startswith(
        f"STOPPED online at epoch {int(st.loc[stopping, 'stop_epoch'])}: "
    )
    assert t.loc[failing, "status"] == "failed" and "InjectedFailure" in t.loc[failing, "note"]
    assert js.finished  # nothing runs: the failed trial waits for a resubmission
    text = format_status(js)
    assert "1 stopped, 1 diverged, 1 failed" in text
    assert text.endswith("no trial is running; 1 failed (resubmit the job to resume them)")
    for group in ("weights.lr=1000000.0", "weights.lr=0.025", "weights.lr=0.01"):
        assert f"\n{group}  (" in text


@pytest.mark.slow
@pytest.mark.usefixtures("s3_env")
def test_status_on_an_s3_store(write_job):
    from ray_nas.search.trial import run_trial

    job = write_job(name="s3status", grid={"seed": [0, 1]}, store=f"s3://{BUCKET}/status",
                    search={"epochs": 2, "steps_per_epoch": 1})  # fmt: skip
    spec = load_spec(job)
    (cfg, rid, _), (_, other, _) = expand_grid(spec)
    assert run_trial(spec, cfg, rid, progress=False, log=lambda s: None) == "completed"
    t = job_status(spec).trials.set_index("run_id")
    last = store.read_frame(store.trial_paths(spec.job_dir, rid)["epochs"])
    assert t.loc[rid, "status"] == "completed" and t.loc[rid, "epoch"] == cfg.total_epochs
    assert t.loc[rid, "valid_acc"] == pytest.approx(last.valid_acc.iloc[-1])
    assert t.loc[other, "status"] == "pending"
    r = _status_cli(str(job))
    assert r.returncode == 0 and "job s3status: 2 trials: 1 pending, 1 completed" in r.stdout, (
        r.stderr
    )


def test_status_reads_nothing_before_the_first_trial(write_job, capsys):
    job = write_job(name="fresh", grid={"seed": [0, 1, 2]})
    assert cli.main(["status", str(job)]) == 0
    out = capsys.readouterr().out
    assert "job fresh: 3 trials: 3 pending" in out
    assert out.rstrip().endswith("ETA: unknown until a trial has timed an epoch")
    assert not (Path(load_spec(job).store) / "fresh").exists()  # nothing written


@pytest.mark.parametrize("args", [["--watch", "0"], ["--watch", "soon"]])
def test_status_bad_watch_is_refused(write_job, args, capsys):
    job = write_job(name="bad")
    with pytest.raises(SystemExit) as e:
        cli.main(["status", str(job), *args])
    assert e.value.code == 2 and "expected seconds > 0" in capsys.readouterr().err


def test_status_of_a_missing_job_file(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ray-nas status: error: ") and "nope.yaml" in err


def test_status_module_imports_no_ray_or_torch():
    code = ("import sys, ray_nas.offline.status, ray_nas.cli; "
            "print(sorted(m for m in ('ray', 'torch', 'mlflow') if m in sys.modules))")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
