"""`ray-nas compare` over two tiny real jobs, and the notebook API (`ray_nas.api`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ray_nas import api, cli
from ray_nas.config import expand_grid, load_spec

from .conftest import REPO, render
from .test_report import write_job_file

EXAMPLE = "ray_nas.examples.stops:entropy_drop"
COMPARED = [
    "final",
    {"name": "ss_eq12", "op": "nor_conv_3x3"},
    {"name": EXAMPLE, "threshold": 0.999},
]


@pytest.fixture(scope="module")
def two_jobs(tmp_path_factory) -> tuple[Path, Path]:
    """Two real tiny jobs (2 seeds each, 3 epochs of 2 steps) sharing a made-up benchmark table."""
    from ray_nas.search.trial import run_trial

    root = tmp_path_factory.mktemp("compare")
    a = write_job_file(root, "cmp_a", {"seed": [0, 1]})
    b = write_job_file(root, "cmp_b", {"seed": [0, 1]}, search={"lr_scheme": "exchange"})
    for path in (a, b):
        spec = load_spec(path)
        for cfg, rid, _ in expand_grid(spec):
            assert run_trial(spec, cfg, rid, progress=False, log=lambda s: None) == "completed"
    return a, b


def test_api_imports_without_ray_mlflow_or_torch():
    code = ("import sys, ray_nas.api; "
            "print(sorted(m for m in ('ray', 'mlflow', 'torch') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(REPO), "PATH": ""}).stdout  # fmt: skip
    assert out.strip() == "[]"


def test_api_reproduces_evaluate_selections_exactly(two_jobs, capsys):
    path = two_jobs[0]
    assert cli.main(["evaluate", str(path)]) == 0
    job = api.open_job(path)
    on_disk = pd.read_parquet(f"{job.job_dir}/selections.parquet")
    frame = job.selections()
    assert len(frame) == 2 * 6 and "cifar10_test" in frame
    pd.testing.assert_frame_equal(frame, on_disk, check_exact=True)
    # frames and trajectories, and any criterion on them
    ep, al = job.epochs(), job.alphas()
    assert len(ep) == 2 * 4 and set(ep.run_id) == set(on_disk.run_id)
    assert len(al) == 2 * 4 * 6 * 5
    assert np.allclose(al.groupby(["run_id", "epoch", "edge"]).weight.sum(), 1.0, atol=1e-5)
    trajs = job.trajectories()
    rid = sorted(trajs)[0]
    assert trajs[rid].metrics["cifar10_test"].shape == (4,)
    mine = job.selections(["final", {"name": EXAMPLE, "threshold": 0.999}])
    row = mine[(mine.run_id == rid) & (mine.criterion == EXAMPLE)].iloc[0]
    r = api.apply(trajs[rid], {"name": EXAMPLE, "threshold": 0.999})
    assert (row.stop_epoch, row.fired, row.arch) == (r.epoch, r.fired, r.arch)
    summary = job.summary(["final"])
    assert summary.loc[0, "mean"] == pytest.approx(
        on_disk[on_disk.label == "final"].cifar10_test.mean()
    )


def test_compare_two_jobs(two_jobs, chromium, tmp_path, capsys):
    a, b = two_jobs
    out = tmp_path / "cmp.html"
    crit = "criteria=" + str(COMPARED).replace("'", '"')
    capsys.readouterr()
    assert cli.main(["compare", str(a), str(b), "-o", str(out), "--set", crit]) == 0
    text = capsys.readouterr().out
    assert "cmp_a | all" in text and "cmp_b | all" in text and f"{EXAMPLE}[threshold=0.999]" in text
    assert "criteria by mean accuracy per job" in text and f"page written to {out}" in text
    # the numbers are the jobs' own selections, averaged over seeds
    for path in (a, b):
        sel = api.open_job(path).selections(COMPARED)
        final = sel[sel.label == "final"].cifar10_test
        mean, std = final.mean(), final.std(ddof=0)
        assert f"{mean:.2f}±{std:.2f} @3.0 2/2" in text
    page = out.read_text()
    assert page.count('<tr><td><span class="badge">') == len(COMPARED)
    png, console = render(chromium, out, tmp_path, size=(1200, 900))
    assert console == []
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(np.int32)
    assert (img.min(axis=2) < 235).mean() > 0.01, "the page rendered almost blank"
    # MLflow: one comparison run, its artifacts replaced on a rerun
    from mlflow.tracking import MlflowClient

    spec = load_spec(a)
    client = MlflowClient(spec.tracking_uri)
    assert cli.main(["compare", str(a), str(b), "-o", str(out), "--set", crit]) == 0
    exp = client.get_experiment_by_name("ray_nas-compare")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["ray_nas.key"] == "compare:cmp_a+cmp_b"
    names = {f.path for f in client.list_artifacts(runs[0].info.run_id)}
    assert names == {"compare.csv", "compare_rank.csv", "compare.txt", "cmp.html"}


def test_compare_checks_every_job_before_work(two_jobs, tmp_path, capsys, monkeypatch):
    a, b = two_jobs
    out = tmp_path / "never.html"
    bad = 'criteria=[final, {name: "ray_nas.examples.stops:entropy_drop", threshold: high}]'
    assert cli.main(["compare", str(a), str(b), "-o", str(out), "--set", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert "parameter 'threshold' expects float, got 'high'" in err and "\n" not in err
    assert not out.exists()
    assert cli.main(["compare", str(a), str(b), "-o", str(tmp_path)]) == 2  # a folder: refused
    assert capsys.readouterr().err.strip() == (
        f"ray-nas compare: error: compare -o {tmp_path}: is a folder; give a file name"
    )
    # without -o: beside the first job's store output, never into the current folder (a clone)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["compare", str(a), str(b), "--set", "criteria=[final]"]) == 0
    page = f"{load_spec(a).job_dir}/compare.html"
    assert f"page written to {page}" in capsys.readouterr().out
    assert Path(page).is_file() and not (tmp_path / "compare.html").exists()
