"""What the report, MLflow and the live metrics show is what the criteria read: the op magnitudes
m(t, o) per cell type (on the DARTS space normal and reduce apart), skip counts of the criteria's
cell; each space's default criteria are on its own ops; each space's ops get distinct colours;
a narrow magnitude range gets a readable y axis.

The DARTS store here is written through store.TrialWriter: random-walk logits over both cell
types where the reduce cell drifts to skip_connect and the normal cell's sep_conv_3x3 rises and
falls, so the two cells' magnitudes (and their mean) differ visibly.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from ray_nas import criteria, report, spaces
from ray_nas import store as stored
from ray_nas.config import config_json, expand_grid, load_spec
from ray_nas.offline.evaluate import job_criteria, run_evaluate
from ray_nas.search.metrics import epoch_magnitudes
from ray_nas.spaces import darts
from ray_nas.tracking import log_job

EPOCHS = 8
DARTS = spaces.get_space("darts")
CRITERIA = [
    "final",
    {"name": "ss_eq12", "op": "sep_conv_3x3"},  # reads the normal cell (the default)
    {"name": "ss_eq12", "op": "skip_connect", "cell": "reduce"},
    {"name": "dartsplus_sc", "k": 2},
]


def darts_trajectory(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, weights) [T+1, 28, 8]: rows 0-13 the normal cell, 14-27 the reduce cell."""
    alpha = np.cumsum(rng.normal(0, 0.1, size=(EPOCHS + 1, 28, len(darts.OPS))), axis=0)
    t = np.arange(EPOCHS + 1)[:, None]
    alpha[:, 14:, darts.OPS.index("skip_connect")] += 0.4 * t  # reduce: skips take over
    alpha[:, :14, darts.OPS.index("sep_conv_3x3")] += 1.5 * np.sin(np.pi * t / EPOCHS)
    z = np.exp(alpha - alpha.max(-1, keepdims=True))
    return alpha, z / z.sum(-1, keepdims=True)


def write_job(root, name: str, criteria_items) -> str:
    job = {
        "name": "darts_display",
        "store": str(root / "store"),
        "tracking_uri": f"sqlite:///{root}/mlflow.db",
        "search": {"space": "darts", "epochs": EPOCHS, "ops": list(darts.OPS)},
        "grid": {"seed": [0, 1]},
        "criteria": criteria_items,
        "evaluate": {"benchmark": None, "retrain": None},
    }
    path = root / name
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def darts_job(tmp_path_factory):
    """(job with CRITERIA, job without criteria) over one DARTS store of 2 seeds."""
    root = tmp_path_factory.mktemp("display")
    job = write_job(root, "job.yaml", CRITERIA)
    spec = load_spec(job)
    rng = np.random.default_rng(7)
    cells = [c for c, _ in DARTS.rows()]
    for cfg, rid, _ in expand_grid(spec):
        alpha, weights = darts_trajectory(rng)
        rows = [
            {
                "epoch": t,
                "train_loss": 1.0,
                "train_acc": 50.0,
                "valid_loss": 1.0,
                "valid_acc": 40.0 + t,
                "lr_weights": 0.025,
                "lr_alpha": 3e-4,
                "hessian_eig": None,
                "seconds": 1.0,
                "arch": DARTS.genotype_text(weights[t], darts.OPS),
            }
            for t in range(EPOCHS + 1)
        ]
        writer = stored.TrialWriter(
            spec.job_dir, rid, cfg.ops, [e for _, e in DARTS.rows()], config_json(cfg), cells=cells
        )
        writer.write_all(rows, alpha, weights)
    return job, write_job(root, "defaults.yaml", [])


def _trials(job):
    trials, problems = stored.read_job(load_spec(job).job_dir)
    assert len(trials) == 2 and not problems
    return sorted(trials, key=lambda t: t.config["seed"])


def _criteria_magnitude(trial, cell: str) -> np.ndarray:
    """[T+1, K] as a selective stop reads it: criteria.magnitude of the stored trajectory."""
    return criteria.magnitude(criteria.from_trial(trial), cell=cell)


def test_the_report_charts_the_criteria_magnitudes_per_cell(darts_job):
    job, _ = darts_job
    trials = _trials(job)
    for cell in ("normal", "reduce"):
        charted = report._magnitudes(trials, cell)
        for i, t in enumerate(trials):
            want = _criteria_magnitude(t, cell)
            for k, op in enumerate(t.ops):
                np.testing.assert_array_equal(charted[op][i], want[:, k])
    # the default ("") is the cell the criteria read: normal, not the mean of both cells
    both = trials[0].weights.mean(axis=1)
    default = report._magnitudes(trials)["skip_connect"][0]
    np.testing.assert_array_equal(default, _criteria_magnitude(trials[0], "normal")[:, 3])
    assert np.abs(default - both[:, 3]).max() > 0.05

    page = report.build_report(load_spec(job))
    figures = re.findall(r'<figure class="chart">.*?</figure>', page, flags=re.S)
    titles = [re.search(r"<figcaption>([^<]*)", f).group(1) for f in figures]
    assert titles[:2] == [
        "Operation magnitude m(t, o): normal cell (the criteria&#39;s default)",
        "Operation magnitude m(t, o): reduce cell",
    ]
    normal, reduce = figures[:2]
    # hover values: the mean over the 2 seeds of the criteria's own magnitudes, per cell
    for fig, cell in ((normal, "normal"), (reduce, "reduce")):
        mean = np.mean([_criteria_magnitude(t, cell) for t in trials], axis=0)
        for k, op in enumerate(darts.OPS):
            for t in range(EPOCHS + 1):
                assert f"{op}, epoch {t}: {mean[t, k]:.3f} (" in fig, (cell, op, t)
    # stop markers: each criterion on the chart of the cell it reads (numbers = job order)
    marks = {
        name: set(re.findall(r"<title>(\d)\. ", fig))
        for name, fig in (("n", normal), ("r", reduce))
    }
    assert marks == {"n": {"1", "2", "4"}, "r": {"3"}}
    # Table 4's skip count is the normal cell's (Space.skips), also for the reduce-heavy genotypes
    sel = report.load_report_data(load_spec(job)).selections
    arch = sel["arch"].iloc[-1]
    assert DARTS.skips(arch) == DARTS.skip_count(arch, "normal") != DARTS.skip_count(arch, "reduce")
    assert "<th>skips (normal)</th>" in page


def test_mlflow_logs_the_criteria_magnitudes_per_cell(darts_job):
    """Read back from a real SQLite MLflow: magnitude.<op> is the normal cell's (what the criteria
    read), magnitude.reduce.<op> the reduce cell's; nothing is logged as the mean of both."""
    from mlflow.tracking import MlflowClient

    job, _ = darts_job
    spec = load_spec(job)
    log_job(spec, run_evaluate(spec, log=lambda s: None), log=lambda s: None)
    client = MlflowClient(tracking_uri=spec.tracking_uri)
    exp = client.get_experiment_by_name(spec.name)
    runs = {
        r.data.params["run_id"]: r
        for r in client.search_runs([exp.experiment_id])
        if "run_id" in r.data.params
    }
    for t in _trials(job):
        run = runs[t.run_id]
        names = set(run.data.metrics)
        for cell, prefix in (("normal", "magnitude."), ("reduce", "magnitude.reduce.")):
            want = _criteria_magnitude(t, cell)
            for k, op in enumerate(t.ops):
                hist = client.get_metric_history(run.info.run_id, prefix + op)
                got = np.array([m.value for m in sorted(hist, key=lambda m: m.step)])
                assert [m.step for m in hist] == sorted(m.step for m in hist)
                np.testing.assert_allclose(got, want[:, k], rtol=1e-12, atol=0)
        assert not any(n.startswith("magnitude.normal.") for n in names)


def test_live_metrics_show_the_criteria_magnitudes_per_cell(darts_job):
    """The Prometheus gauge nas_op_magnitude{cell, op}: one epoch's rows per cell type."""
    trial = _trials(darts_job[0])[0]
    got = epoch_magnitudes(trial.weights[3], "darts")
    assert list(got) == ["normal", "reduce"]
    for cell in got:
        np.testing.assert_array_equal(got[cell], _criteria_magnitude(trial, cell)[3])
    nb201 = spaces.get_space("nb201")
    w = np.random.default_rng(0).dirichlet(np.ones(len(nb201.ops)), size=len(nb201.edges))
    np.testing.assert_allclose(epoch_magnitudes(w, "nb201")["shared"], w.mean(axis=0))


def test_a_darts_job_without_criteria_gets_criteria_on_darts_ops_that_fire(darts_job):
    _, defaults = darts_job
    spec = load_spec(defaults)
    labels = [c.label for c in job_criteria(spec, None)]
    assert "ss_eq12[op=sep_conv_3x3]" in labels and "ss_eq12[op=dil_conv_5x5]" in labels
    assert not any("nor_conv" in label for label in labels)
    sel = run_evaluate(spec, log=lambda s: None).selections
    ss = sel[sel["criterion"].isin(["ss_eq12", "ss_eq13"])]
    assert len(ss) and ss["fired"].all(), ss[["label", "fired", "note"]]
    # NAS-Bench-201's default set is unchanged; NAS-Bench-1Shot1's reads its 3x3 conv
    assert [c.label for c in criteria.default_criteria("nb201")] == [
        c.label for c in criteria.default_criteria()
    ]
    shot = [c.label for c in criteria.default_criteria("nb1shot1_s2")]
    assert "ss_eq12[op=conv3x3-bn-relu]" in shot and not any("dartsplus_sc" in c for c in shot)
    assert "darts:\n    final, best_valid, ss_eq12[op=sep_conv_5x5]" in criteria.describe_criteria()


@pytest.mark.parametrize("name", spaces.NAMES)
def test_every_space_draws_its_ops_in_distinct_colours(name):
    space = spaces.get_space(name)
    colors = space.op_colors()
    assert list(colors) == list(space.ops)
    assert len(set(colors.values())) == len(space.ops)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colors.values())


def test_nb201_keeps_its_colours_and_the_report_uses_the_spaces(darts_job):
    assert spaces.get_space("nb201").op_colors() == {
        "none": "#7f7f7f",
        "skip_connect": "#d62728",
        "nor_conv_1x1": "#1f77b4",
        "nor_conv_3x3": "#2ca02c",
        "avg_pool_3x3": "#ff7f0e",
    }
    page = report.build_report(load_spec(darts_job[0]))
    keys = re.search(r'<div class="keys">(.*?)</div>', page, flags=re.S).group(1)
    shown = dict(re.findall(r"border-color:(#[0-9a-f]{6});[^>]*></i>([\w-]+)</span>", keys))
    assert {op: c for c, op in shown.items()} == DARTS.op_colors()


def test_a_narrow_magnitude_range_gets_a_fitted_axis():
    ticks = report.y_range(np.array([0.196, 0.2, 0.204]), margin=report.MAGNITUDE_MARGIN)
    assert 0.19 <= ticks[0] < 0.196 and 0.204 < ticks[-1] <= 0.21 and len(ticks) >= 4
    runs = np.array([[0.196, 0.199, 0.204, 0.201], [0.197, 0.2, 0.203, 0.2]])
    svg = report.svg_chart(
        [report.Series("op", "#2ca02c", runs)],
        xlabel="epoch",
        ylabel="m",
        x_max=3,
        margin=report.MAGNITUDE_MARGIN,
    )
    labels = re.findall(r'class="tick"[^>]*text-anchor="end">([^<]*)<', svg)
    values = [float(v) for v in labels]
    assert len(set(labels)) == len(labels)  # every tick tells its value apart
    assert min(values) >= 0.19 and max(values) <= 0.21
    # the data fill most of the axis (on 0-0.25 they took 3% of it)
    assert (0.204 - 0.196) / (max(values) - min(values)) > 0.5
    # from zero when asked, as before
    assert report.y_range(np.array([0.196, 0.204]), zero=True)[0] == 0.0


@pytest.mark.parametrize("name", ["nb201", "nb1shot1_s1"])
def test_one_op_cell_spaces_keep_their_metric_names(tmp_path, name):
    """NAS-Bench-201 and -1Shot1 have one op cell: MLflow keeps `magnitude.<op>` alone (existing
    dashboards), the mean over the op rows; 1Shot1's connection rows never enter it."""
    from ray_nas.config import resolve_search, run_id
    from ray_nas.tracking import _epoch_metrics

    space = spaces.get_space(name)
    cfg = resolve_search({"space": name, "epochs": 3})
    rng = np.random.default_rng(1)
    weights = rng.dirichlet(np.ones(len(space.ops)), size=(4, len(space.edges)))
    conn = space.connection_rows()
    extra = {"connections": conn} if conn else {}
    writer = stored.TrialWriter(
        str(tmp_path), run_id(cfg), space.ops, space.edges, config_json(cfg), **extra
    )
    rows = [
        {
            "epoch": t,
            "train_loss": 1.0,
            "train_acc": 1.0,
            "valid_loss": 1.0,
            "valid_acc": 1.0,
            "lr_weights": 0.1,
            "lr_alpha": 0.1,
            "hessian_eig": None,
            "seconds": 1.0,
            "arch": "x",
        }
        for t in range(4)
    ]
    c = np.full((4, len(conn)), 0.5)
    writer.write_all(rows, np.log(weights), weights, **({"connections": (c, c)} if conn else {}))
    trial = stored.read_trial(str(tmp_path), run_id(cfg))
    items = [(n, v, t) for n, v, t in _epoch_metrics(trial, 0) if n.startswith("magnitude")]
    assert {n for n, _, _ in items} == {f"magnitude.{op}" for op in space.ops}
    got = {(n, t): v for n, v, t in items}
    for k, op in enumerate(space.ops):
        want = weights[:, :, k].mean(axis=1)
        np.testing.assert_allclose([got[f"magnitude.{op}", t] for t in range(4)], want, rtol=1e-6)
        np.testing.assert_array_equal(
            report._magnitudes([trial])[op][0], trial.weights[:, :, k].mean(1)
        )


def test_the_darts_report_renders_in_chromium(darts_job, chromium, tmp_path):
    from .conftest import render

    path = tmp_path / "report.html"
    path.write_text(report.build_report(load_spec(darts_job[0])))
    _png, console = render(chromium, path, tmp_path)
    assert console == []
