"""What a newcomer sees: the summary's width, the sweep's progress line, the block that says where
the results are, criteria reruns that keep the other criteria's results, a criterion naming an op
the job's searches lack refused before any work, and MLflow laid out on the runs."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pandas as pd
import pytest

from ray_nas import cli
from ray_nas.cli.commands import where_text
from ray_nas.config import load_spec
from ray_nas.offline.summary import format_summary, short_labels

REPO = Path(__file__).resolve().parents[1]
NO_SCORE = {"benchmark": None, "retrain": None}
LABELS = [
    "final",
    "best_valid",
    "ss_eq12[op=nor_conv_3x3]",
    "ss_eq13[exclude=[none],op=nor_conv_3x3]",
    "dartsplus_sc[k=2]",
    "dartsplus_rt[k=3]",
    "darts_es",
]


def _summary(groups: list[str]) -> pd.DataFrame:
    rows = [(g, lab, 3, 90.0 + i + j / 10, 3.63, 20.0 - i, 3)
            for i, g in enumerate(groups) for j, lab in enumerate(LABELS)]  # fmt: skip
    return pd.DataFrame(rows, columns=["group", "label", "n", "mean", "std", "stop_epoch", "fired"])


@pytest.mark.parametrize("n_groups", [1, 2, 7])
def test_summary_fits_100_columns_and_its_legend_names_every_shortened_criterion(n_groups):
    groups = [f"lr_scheme=scheme{i}" for i in range(n_groups)]
    text = format_summary(_summary(groups), "retrain_acc")
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    for i, g in enumerate(groups):  # every cell is there, under its group's column
        assert text.count(g) == 1
        for j, _ in enumerate(LABELS):
            assert f"{90.0 + i + j / 10:.2f}±3.63 @{20.0 - i:.1f} 3/3" in text
    legend = lines[lines.index("criteria:") + 1 :]
    assert legend == [f"  {short_labels(LABELS)[lab]} = {lab}" for lab in LABELS if "[" in lab]


def test_short_labels_number_criteria_that_share_a_name():
    got = short_labels(["final", "ss_eq12[op=a]", "ss_eq12[op=b]"])
    assert got == {"final": "final", "ss_eq12[op=a]": "ss_eq12.1", "ss_eq12[op=b]": "ss_eq12.2"}


def _trial(status: str, epoch: int | None, acc: float | None, epochs: int = 20):
    last = {} if epoch is None else {"epoch": epoch, "valid_acc": acc}
    cfg = {"trial": {"search": {"epochs": epochs, "warmup_epochs": 0}}}
    return types.SimpleNamespace(status=status, config=cfg, last_result=last)


def test_progress_is_one_line_rewritten_on_a_terminal_and_throttled_in_a_log():
    from ray_nas.search.sweep import PLAIN_PROGRESS_SECONDS, progress_line, progress_reporter

    trials = [
        _trial("TERMINATED", 20, 93.5),
        _trial("RUNNING", 7, 95.25),
        _trial("PENDING", None, None),
    ]
    line = progress_line("quickstart", trials)
    assert line == ("sweep quickstart: 1/3 trials done, 1 running, 1 pending; epochs 27/60; "
                    "best valid_acc 95.2%")  # fmt: skip
    # a trial Tune has not started has only its run_id resolved (its entry is a placeholder
    # until then): its epochs come from the sweep's run_id -> epochs
    waiting = types.SimpleNamespace(status="PENDING", last_result={},
                                    config={"run_id": "r9", "trial": ("__fn_ph", "1f2e")})  # fmt: skip
    assert progress_line("q", [*trials, waiting], {"r9": 30}) == (
        "sweep q: 1/4 trials done, 1 running, 2 pending; epochs 27/90; best valid_acc 95.2%"
    )
    assert "epochs 27/60;" in progress_line("q", [*trials, waiting])

    class Tty(io.StringIO):
        def isatty(self):
            return True

    spec = types.SimpleNamespace(name="quickstart")
    tty = Tty()
    rep = progress_reporter(spec, tty)
    for _ in range(3):
        assert rep.should_report(trials)
        rep.report(trials, False)
    rep.report(trials, True)
    # written when it changes (Tune asks several times a second: 13,000 rewrites in a 24-minute
    # quickstart before), and once more at the end
    assert tty.getvalue().count("\n") == 1 and tty.getvalue().count("\r") == 2
    trials[1].last_result = {"epoch": 8, "valid_acc": 95.25}
    rep.report(trials, False)
    assert tty.getvalue().count("\r") == 3 and tty.getvalue().endswith(
        "epochs 28/60; best valid_acc 95.2%"
    )

    line = progress_line("quickstart", trials)
    log = io.StringIO()
    rep = progress_reporter(spec, log)
    assert rep.should_report(trials)
    rep.report(trials, False)
    assert not rep.should_report(trials)  # the next plain line waits PLAIN_PROGRESS_SECONDS
    rep.last -= PLAIN_PROGRESS_SECONDS
    assert rep.should_report(trials) and rep.should_report(trials, done=True)
    rep.report(trials, True)
    assert log.getvalue().splitlines() == [line, line]


def test_where_block_names_the_report_mlflow_and_the_parquet_files(write_job):
    spec = load_spec(write_job(name="w"))
    text = where_text(spec, "jobs/w.yaml", f"{spec.job_dir}/report.html")
    assert f"report:       {spec.job_dir}/report.html" in text
    assert f"mlflow ui --backend-store-uri {spec.tracking_uri}" in text
    assert f"{spec.job_dir}/selections.parquet" in text and "never the search" in text
    assert "ray-nas report jobs/w.yaml` writes" in where_text(spec, "jobs/w.yaml")
    assert len(text.splitlines()) <= 12
    # a run with --set overrides (the store, the name): the commands it names carry them
    sets = ["store=/mnt/shared/runs", "grid.seed=[0]", "criteria=[final]"]
    text = where_text(spec, "jobs/w.yaml", None, sets)
    again = "jobs/w.yaml --set store=/mnt/shared/runs --set 'grid.seed=[0]'"
    assert f"ray-nas report {again} --set 'criteria=[final]'` writes" in text
    assert f"ray-nas evaluate {again} --report --set 'criteria=[...]'" in text


def test_a_criterion_on_an_op_the_space_lacks_is_refused_before_any_work(write_job, capsys):
    job = write_job(name="refuse", grid={"seed": [0]}, evaluate=NO_SCORE)
    spec = load_spec(job)
    for bad, what, valid in (
        ("{name: ss_eq12, op: sep_conv_3x3}", "op 'sep_conv_3x3' is not an op of this job",
         "nor_conv_3x3"),
        ("{name: ss_eq12, op: nor_conv_3x3, cell: reduce}", "cell 'reduce' is not a cell type",
         "valid: shared"),
    ):  # fmt: skip
        assert cli.main(["evaluate", str(job), "--set", f"criteria=[final, {bad}]"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "criteria[1]: " + what in err and valid in err
    # the same op on a search whose ops leave it out
    over = [
        "search.ops=[none, skip_connect, avg_pool_3x3]",
        "criteria=[{name: ss_eq12, op: nor_conv_3x3}]",
    ]
    assert cli.main(["evaluate", str(job), *[a for o in over for a in ("--set", o)]]) == 2
    assert "valid: none, skip_connect, avg_pool_3x3" in capsys.readouterr().err
    assert not os.path.exists(spec.job_dir) and not os.path.exists(spec.tracking_uri[10:])


@pytest.mark.slow
def test_criteria_reruns_keep_the_other_criteria_and_mlflow_opens_on_the_runs(write_job, capsys):
    """One tiny search, evaluated with the job's criteria, then with a changed one: selections
    keep both sets (the job's rows untouched), the summary shows what was asked for; MLflow's
    experiment opens on training runs named by group and seed, timed by the search."""
    from mlflow.tracking import MlflowClient

    job = write_job(name="rerun", grid={"seed": [0]}, evaluate=NO_SCORE,
                    criteria=["final", {"name": "dartsplus_sc", "k": 2}])  # fmt: skip
    spec = load_spec(job)
    assert cli.main(["search", str(job), "--quiet"]) == 0
    assert cli.main(["evaluate", str(job)]) == 0
    path = f"{spec.job_dir}/selections.parquet"
    first = pd.read_parquet(path)
    assert sorted(first.label) == ["dartsplus_sc[k=2]", "final"]
    capsys.readouterr()
    assert (
        cli.main(["evaluate", str(job), "--set", "criteria=[final, {name: dartsplus_sc, k: 1}]"])
        == 0
    )
    out = capsys.readouterr().out
    assert "dartsplus_sc = dartsplus_sc[k=1]" in out and "[k=2]" not in out.split("criteria:")[1]
    assert "1 rows of 1 other criteria kept" in out
    both = pd.read_parquet(path)
    assert sorted(both.label) == ["dartsplus_sc[k=1]", "dartsplus_sc[k=2]", "final"]
    kept = both[both.label == "dartsplus_sc[k=2]"].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        kept, first[first.label == "dartsplus_sc[k=2]"].reset_index(drop=True)
    )
    # back to the job's own criteria: nothing else changed meaning, the variant's rows stay
    assert cli.main(["evaluate", str(job)]) == 0
    again = pd.read_parquet(path)
    assert sorted(again.label) == sorted(both.label)
    # export, report and summary read the job's criteria only
    summary, where = capsys.readouterr().out.split("where the results are")
    assert "dartsplus_sc[k=1]" not in summary

    client = MlflowClient(spec.tracking_uri)
    exp = client.get_experiment_by_name(spec.name)
    # the printed link opens the "Model training" side on the runs, sorted by name: flat, the
    # trial runs listed by group and seed (MLflow 3.17 ignores the kind tag for its side)
    link = (f"then open http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs"
            "?workflowType=machine_learning&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true")  # fmt: skip
    assert f"\n                {link}\n" in where
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (trial,) = client.search_runs([exp.experiment_id], "tags.`ray_nas.key` LIKE 'trial:%'")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`ray_nas.key` LIKE 'job:%'")
    rid = pd.read_parquet(f"{spec.job_dir}/trials.parquet").run_id.iloc[0]
    assert trial.info.run_name == "seed=0"
    assert trial.data.tags["ray_nas.run_id"] == rid and trial.data.params["run_id"] == rid
    status = pd.read_parquet(f"{spec.job_dir}/trials.parquet").iloc[0]
    assert trial.info.start_time == int(status.started * 1000)
    assert trial.info.end_time == int(status.updated * 1000)
    assert not any(k.startswith(("final", "dartsplus")) for k in trial.data.metrics)
    assert "valid_acc" in trial.data.metrics
    assert (
        parent.data.metrics["all/final.stop_epoch"]
        == first.set_index("label").loc["final", "stop_epoch"]
    )
    assert parent.data.metrics["all/final.fired"] == 1.0


@pytest.mark.slow
@pytest.mark.ray
def test_a_local_sweep_leaves_home_alone_prints_little_and_ends_at_the_report(write_job, tmp_path):
    """`ray-nas sweep JOB --report` as the quickstart runs it, in a process of its own (its own
    local Ray, RAY_AUTH_MODE unset, HOME a fresh folder, stdout a pipe)."""
    job = write_job(name="qs", grid={"seed": [0, 1]}, evaluate=NO_SCORE,
                    criteria=["final", {"name": "ss_eq12", "op": "nor_conv_3x3"}],
                    resources={"cpu": 1, "gpu": 0})  # fmt: skip
    spec = load_spec(job)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    ray_tmp = tempfile.mkdtemp(prefix="rq", dir="/tmp")  # Ray's socket paths must stay short
    env.update(HOME=str(home), PYTHONPATH=str(REPO), RAY_TMPDIR=ray_tmp)
    try:
        p = subprocess.run(
            [sys.executable, "-m", "ray_nas.cli", "sweep", str(job), "--report"],
            env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not (home / ".ray").exists()
    lines = (p.stdout + p.stderr).splitlines()
    assert len(lines) < 60, "\n".join(lines)
    assert not any("epoch " in line and line.startswith("(") for line in lines)  # no worker epochs
    assert not any("== Status ==" in line for line in lines)
    assert sum(line.startswith("sweep qs: ") and "trials done" in line for line in lines) >= 1
    assert f"  report:       {spec.job_dir}/report.html  (open it in a browser)" in p.stdout
    assert Path(spec.job_dir, "report.html").is_file()
    out = p.stdout.splitlines()
    table = out[next(i for i, s in enumerate(out) if s.startswith("no metric: mean±std")) :]
    table = table[: table.index("criteria:")]
    assert len(table) == 5 and max(map(len, table)) <= 100  # title, header, rule, 2 criteria
