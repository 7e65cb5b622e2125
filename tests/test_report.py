"""`ray-nas report`: the HTML dashboard of a tiny real sweep, rendered by a headless Chromium."""

from __future__ import annotations

import html
import itertools
import time
from pathlib import Path
from types import SimpleNamespace

import markupsafe
import numpy as np
import pandas as pd
import pytest
import yaml

from ray_nas import cli, report
from ray_nas import store as ray_store
from ray_nas.config import config_json, expand_grid, load_spec
from ray_nas.spaces import nb201

from .conftest import TINY_SEARCH, render

CRITERIA = [
    "final",
    "best_valid",
    {"name": "ss_eq12", "op": "nor_conv_3x3"},
    {"name": "ss_eq13", "op": "nor_conv_3x3", "exclude": ["none"]},
    {"name": "dartsplus_sc", "k": 2},
    "darts_es",
]


def write_benchmark(path: Path) -> None:
    """A made-up table over all 5^6 archs: accuracy grows with convolutions, drops with `none`."""
    archs, c10 = [], []
    for ops in itertools.product(nb201.OPS, repeat=len(nb201.EDGES)):
        archs.append(nb201.arch_string(ops))
        c10.append(
            60
            + 5 * ops.count("nor_conv_3x3")
            + 3 * ops.count("nor_conv_1x1")
            - 4 * ops.count("none")
        )
    c10 = np.array(c10, dtype=np.float64)
    df = pd.DataFrame({"index": np.arange(len(archs)), "arch": archs, "cifar10_valid": c10 - 1.0,
                       "cifar10_test": c10, "cifar100_test": c10 - 25.0})  # fmt: skip
    ray_store.write_frame(df, str(path))


def write_job_file(root: Path, name: str, grid: dict, search: dict | None = None) -> Path:
    if not (root / "bench.parquet").exists():
        write_benchmark(root / "bench.parquet")
    job = {"name": name, "store": str(root / "store"), "tracking_uri": f"sqlite:///{root}/mlflow.db",
           "search": {**TINY_SEARCH, "steps_per_epoch": 2, **(search or {})}, "grid": grid, "criteria": CRITERIA,
           "evaluate": {"benchmark": str(root / "bench.parquet"), "metric": "cifar10_test", "retrain": None}}  # fmt: skip
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory) -> Path:
    """A real sweep's store: 2 lr schemes x 2 seeds, 3 epochs of 2 steps each, run in this process."""
    from ray_nas.search.trial import run_trial

    root = tmp_path_factory.mktemp("report")
    path = write_job_file(root, "tiny_report", {"lr_scheme": ["nb201", "exchange"], "seed": [0, 1]})
    spec = load_spec(path)
    for cfg, rid, _ in expand_grid(spec):
        assert run_trial(spec, cfg, rid, progress=False, log=lambda s: None) == "completed"
    return path


def test_report_is_written_with_every_criterion(tiny_job, capsys):
    assert cli.main(["report", str(tiny_job)]) == 0
    spec = load_spec(tiny_job)
    path = Path(spec.job_dir) / "report.html"
    assert f"report written to {path}" in capsys.readouterr().out
    page = path.read_text()
    for label in ("final", "best_valid", "ss_eq12[op=nor_conv_3x3]", "ss_eq13[exclude=[none],op=nor_conv_3x3]",
                  "dartsplus_sc[k=2]", "darts_es"):  # fmt: skip
        assert html.escape(label) in page, label
    for group in ("lr_scheme=nb201", "lr_scheme=exchange"):
        assert group in page
    assert page.count("<svg") == 2 * 2  # magnitude and accuracy per group (Hessian not recorded)
    assert "not recorded (search.hessian_every: 0)" in page
    assert 'id="figure4"' not in page  # Figure 4 is for NAS-Bench-1Shot1 jobs only
    # Table 3: lr_scheme varies weights.lr; its columns say so with the grid's own key=value
    assert "<th>weights.lr=0.025 (lr_scheme=nb201)</th>" in page
    assert "<th>weights.lr=0.0003 (lr_scheme=exchange)</th>" in page
    assert "CIFAR-10 test" in page  # the benchmark column and per-epoch benchmark curve
    assert str(markupsafe.escape("of the epoch's genotype")) in page  # autoescaped
    # self-contained: nothing loaded from elsewhere
    assert (
        "<link" not in page and "src=" not in page and "@import" not in page and "url(" not in page
    )


def test_report_output_option(tiny_job, tmp_path):
    out = tmp_path / "sub" / "mine.html"
    assert cli.main(["report", str(tiny_job), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_retrained_scores_come_from_matching_selections(tiny_job):
    """retrain_acc is read from selections.parquet only where the selected arch still matches."""
    spec = load_spec(tiny_job)
    sel = report.load_report_data(spec).selections
    stored = sel[["run_id", "criterion", "params", "label", "fired", "stop_epoch", "arch"]].copy()
    stored["retrain_acc"] = 77.0
    stored.loc[0, "arch"] = "stale"  # e.g. selected before the trajectory grew
    path = f"{spec.job_dir}/selections.parquet"
    ray_store.write_frame(stored, path)
    try:
        d = report.load_report_data(spec)
        got = d.selections.set_index(["run_id", "label"])["retrain_acc"]
        assert np.isnan(got.pop((sel.loc[0, "run_id"], sel.loc[0, "label"])))
        assert (got == 77.0).all()
        assert "retrain_acc" in d.score_cols
        assert any("1 of 24 selections have no retrain_acc" in n for n in d.notes), d.notes
    finally:
        ray_store.delete(path)


# ------------------------------------------------------------------------------------------
# headless Chromium (the `chromium` fixture and `render` live in conftest.py)


def test_console_errors_are_detected(chromium, tmp_path):
    """The harness itself: a page whose script throws is caught (so 'no errors' below means something)."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><p>x</p><script>document.getElementById('nope').click()</script>"
    )
    _, console = render(chromium, bad, tmp_path, size=(400, 300))
    assert any("Uncaught" in ln for ln in console), console


def test_report_renders_in_chromium(tiny_job, chromium, tmp_path):
    spec = load_spec(tiny_job)
    page = Path(report.write_report(spec, tmp_path / "report.html", log=lambda s: None))
    png, console = render(chromium, page, tmp_path)
    assert console == []
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(np.int32)
    not_white = (img.min(axis=2) < 235).mean()
    colored = (img.max(axis=2) - img.min(axis=2) > 60).mean()  # chart lines and bands
    assert not_white > 0.02, f"screenshot is almost blank ({not_white:.1%} non-white pixels)"
    assert colored > 0.002, f"no chart colours in the screenshot ({colored:.2%})"


# ------------------------------------------------------------------------------------------
# a large sweep renders in seconds


def synthetic_store(spec, epochs: int, rng: np.random.Generator) -> None:
    """Trajectories shaped like real ones (softmax of a random walk) for every grid point, no training."""
    e, k = len(nb201.EDGES), len(nb201.OPS)
    for cfg, rid, _ in expand_grid(spec):
        w = ray_store.TrialWriter(spec.job_dir, rid, cfg.ops, nb201.EDGES, config_json(cfg))
        w.flush = lambda: None  # one write at the end, not one per epoch
        alpha = np.zeros((e, k))
        for t in range(epochs + 1):
            alpha += 0.05 * rng.standard_normal((e, k)) * (t > 0)
            weights = np.exp(alpha) / np.exp(alpha).sum(1, keepdims=True)
            arch = nb201.arch_string([cfg.ops[i] for i in weights.argmax(1)])
            w.append(SimpleNamespace(epoch=t, train_loss=2.0, train_acc=50.0, valid_loss=2.0,
                                     valid_acc=float(10 + t + rng.normal()), lr_weights=0.025, lr_alpha=3e-4,
                                     hessian_eig=float(0.1 * t) if t % 2 == 0 else None, seconds=1.0,
                                     arch=arch, alpha=alpha, weights=weights))  # fmt: skip
        ray_store.TrialWriter.flush(w)


@pytest.mark.slow
def test_hundred_trials_render_in_seconds(tmp_path):
    path = write_job_file(tmp_path, "big", {"lr_scheme": ["nb201", "exchange"], "seed": list(range(50))},
                          search={"epochs": 50})  # fmt: skip
    spec = load_spec(path)
    synthetic_store(spec, 50, np.random.default_rng(0))
    t0 = time.perf_counter()
    page = report.build_report(spec)
    seconds = time.perf_counter() - t0
    assert seconds < 20, f"100 trials x 50 epochs took {seconds:.1f}s"
    assert page.count('<tr class="st-') == 100
    assert page.count("<svg") == 2 * 3  # magnitude, accuracy, Hessian per group
    assert len(page) < 5e6
