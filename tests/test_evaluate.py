"""The offline stage end to end on stores written by the real worker."""

import math
import os

import numpy as np
import pandas as pd
import pytest

from ray_nas import store as stored
from ray_nas.config import expand_grid, load_spec
from ray_nas.offline.evaluate import run_evaluate
from ray_nas.search.trial import run_trial

from .conftest import SHARED

TABLE = SHARED / "data" / "nb201" / "nb201_test_accuracy.parquet"
CRITERIA = ["final", "best_valid", {"name": "ss_eq12", "op": "nor_conv_3x3"},
            {"name": "ss_eq13", "op": "nor_conv_3x3", "exclude": ["none"]}, {"name": "dartsplus_sc", "k": 2},
            {"name": "dartsplus_rt", "k": 2}, {"name": "darts_es", "window": 1, "delta": 1}, "oracle"]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A 2-seed x 2-scheme job searched for real (tiny; batches of 8: the Hessians are most of
    the cost), shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("eval")
    if not TABLE.is_file():
        pytest.skip(f"shared NB201 table not found at {TABLE}")
    import yaml

    from .conftest import TINY_SEARCH

    job = {"name": "ev", "store": str(tmp / "store"), "tracking_uri": f"sqlite:///{tmp}/mlflow.db",
           "search": {**TINY_SEARCH, "epochs": 4, "hessian_every": 2, "batch_size": 8}, "grid": {"lr_scheme": ["nb201", "exchange"], "seed": [0, 1]},
           "criteria": CRITERIA, "evaluate": {"benchmark": str(TABLE), "metric": "cifar10_test", "retrain": None}}  # fmt: skip
    path = tmp / "ev.yaml"
    path.write_text(yaml.safe_dump(job))
    spec = load_spec(path)
    for cfg, rid, _ in expand_grid(spec):
        run_trial(spec, cfg, rid, progress=False, log=lambda s: None)
    return path


def test_selections_and_summary(store):
    spec = load_spec(store)
    res = run_evaluate(spec, log=lambda s: None)
    sel = pd.read_parquet(f"{spec.job_dir}/selections.parquet")
    assert len(sel) == 4 * len(CRITERIA) and not res.problems
    assert {
        "run_id",
        "criterion",
        "params",
        "label",
        "fired",
        "stop_epoch",
        "arch",
        "cifar10_test",
    } <= set(sel)
    assert (sel.stop_epoch >= 1).all() and (sel.stop_epoch <= 4).all()
    final = sel[sel.label == "final"]
    assert final.fired.all() and (final.stop_epoch == 4).all()
    # every selected arch is in the benchmark; its score is the table's
    table = pd.read_parquet(TABLE)
    scores = dict(zip(table.arch, table.cifar10_test))
    assert all(math.isclose(s, scores[a]) for a, s in zip(sel.arch, sel.cifar10_test))
    # the oracle is the best benchmark score over epochs 1..T
    ep = pd.read_parquet(f"{spec.job_dir}/epochs")
    for rid, g in ep.groupby("run_id", observed=True):
        best = max(scores[a] for a in g[g.epoch >= 1].arch)
        assert sel[(sel.run_id == rid) & (sel.criterion == "oracle")].cifar10_test.iloc[0] == best
    # summary: one group per lr scheme, means over the 2 seeds
    assert set(res.summary.group) == {"lr_scheme=nb201", "lr_scheme=exchange"}
    row = res.summary[
        (res.summary.group == "lr_scheme=nb201") & (res.summary.label == "final")
    ].iloc[0]
    runs = [rid for c, rid, p in expand_grid(spec) if p["lr_scheme"] == "nb201"]
    assert row["n"] == 2 and math.isclose(
        row["mean"], final[final.run_id.isin(runs)].cifar10_test.mean()
    )


def test_new_criteria_without_rerunning(store):
    spec = load_spec(store, ["criteria=[{name: dartsplus_sc, k: 3}]"])
    res = run_evaluate(spec, log=lambda s: None)
    assert res.selections.label.unique().tolist() == ["dartsplus_sc[k=3]"]


def test_corrupted_and_in_progress_trials(store, tmp_path):
    import shutil

    spec = load_spec(store)
    copy = tmp_path / "copy"
    shutil.copytree(spec.job_dir, copy / spec.name)
    spec = load_spec(store, [f"store={copy}"])
    rids = sorted(r for _, r, _ in expand_grid(spec))
    # one unreadable alphas file, one trial that is still running with 2 epochs only
    (copy / spec.name / "alphas" / f"run_id={rids[0]}" / "part-0.parquet").write_bytes(
        b"not parquet"
    )
    st = stored.read_status(spec.job_dir)
    row = st[st.run_id == rids[1]].iloc[0].to_dict()
    row["status"] = "running"
    stored.write_status(spec.job_dir, rids[1], row)
    w = stored.TrialWriter(spec.job_dir, rids[1], (), (), "{}")
    ep = stored.read_frame(w.paths["epochs"])
    al = stored.read_frame(w.paths["alphas"])
    meta_src = w.paths["epochs"]
    import pyarrow.parquet as pq

    meta = {
        k.decode(): v.decode()
        for k, v in pq.read_schema(meta_src).metadata.items()
        if k.startswith(b"ray_nas")
    }
    stored.write_frame(ep[ep.epoch <= 2], w.paths["epochs"], meta)
    stored.write_frame(al[al.epoch <= 2], w.paths["alphas"], meta)
    os.remove(
        copy / spec.name / "alphas" / f"run_id={rids[3]}" / "part-0.parquet"
    )  # a missing file
    lines = []
    res = run_evaluate(spec, log=lines.append)
    assert sorted(res.problems) == [rids[0], rids[3]] and "unreadable" in res.problems[rids[0]]
    assert "missing alphas" in res.problems[rids[3]]
    assert any(f"skipped trial {rids[0]}" in line for line in lines)
    assert any("2 trials skipped" in line for line in lines)
    sel = res.selections
    assert rids[0] not in set(sel.run_id)
    part = sel[sel.run_id == rids[1]]
    assert part.in_progress.all() and (part.stop_epoch <= 2).all()
    assert not sel[sel.run_id == rids[2]].in_progress.any()


def test_unknown_arch_in_table_is_nan_not_crash(store, tmp_path):
    spec = load_spec(store)
    small = pd.read_parquet(TABLE).head(10)
    stored.write_frame(small, str(tmp_path / "small.parquet"))
    spec = load_spec(store, [f"evaluate.benchmark={tmp_path / 'small.parquet'}"])
    res = run_evaluate(spec, log=lambda s: None)
    assert np.isnan(res.selections.cifar10_test).any()


def _write_trial(job_dir: str, cfg, archs: list[str]) -> str:
    """A trial's store as the worker writes it, with the given genotype per epoch."""
    from ray_nas.config import config_json, run_id
    from ray_nas.search.loop import EpochRecord
    from ray_nas.spaces import nb201

    rid = run_id(cfg)
    writer = stored.TrialWriter(job_dir, rid, cfg.ops, nb201.EDGES, config_json(cfg))
    for t, arch in enumerate(archs):
        ops = nb201.parse_arch(arch)
        alpha = np.array([[1.0 if o == op else 0.0 for o in cfg.ops] for op in ops], np.float32)
        w = np.exp(alpha) / np.exp(alpha).sum(1, keepdims=True)
        writer.append(EpochRecord(t, 1.0, 50.0, 1.0, 50.0, 0.01, 0.0, None, 1.0, arch, alpha, w))
    return rid


def test_dataset_grid_scores_each_trial_on_its_own_data_set(tmp_path):
    """grid: dataset: [cifar10, cifar100] -> each trial's oracle and summary read its own column."""
    if not TABLE.is_file():
        pytest.skip(f"shared NB201 table not found at {TABLE}")
    import yaml

    table = pd.read_parquet(TABLE).dropna(subset=["cifar10_test", "cifar100_test"]).head(400)
    # two archs ranked one way on CIFAR-10 and the other way on CIFAR-100
    a, b = next(
        (x, y) for x in table.itertuples() for y in table.itertuples()
        if x.cifar10_test > y.cifar10_test + 1 and y.cifar100_test > x.cifar100_test + 1
    )  # fmt: skip
    job = {"name": "dsgrid", "store": str(tmp_path / "store"), "grid": {"dataset": ["cifar10", "cifar100"]},
           "criteria": ["final", "oracle"], "evaluate": {"benchmark": str(TABLE), "retrain": None}}  # fmt: skip
    path = tmp_path / "dsgrid.yaml"
    path.write_text(yaml.safe_dump(job))
    spec = load_spec(path)
    best = {}
    for cfg, _, _ in expand_grid(spec):
        rid = _write_trial(spec.job_dir, cfg, [b.arch, a.arch, b.arch, b.arch])
        best[rid] = 1 if cfg.dataset == "cifar10" else 2  # the oracle's epoch on its own column
    res = run_evaluate(spec, log=lambda s: None)
    oracle = res.selections[res.selections.label == "oracle"].set_index("run_id")
    for rid, epoch in best.items():
        assert oracle.loc[rid, "stop_epoch"] == epoch
    summary = res.summary[res.summary.label == "oracle"].set_index("group")["mean"]
    assert summary["dataset=cifar10"] == pytest.approx(a.cifar10_test)
    assert summary["dataset=cifar100"] == pytest.approx(b.cifar100_test)
