"""One reader of a job (`offline.results.JobResults`) behind `ray-nas evaluate`, the report,
`ray-nas compare` and `ray_nas.api`: jobs scored by retraining show their accuracies everywhere
evaluate prints them, the store is read once, and the DARTS space's alphas keep their cell."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ray_nas import api, cli, store
from ray_nas.config import config_json, expand_grid, load_spec, resolve_search, run_id
from ray_nas.offline.compare import compare_jobs
from ray_nas.offline.evaluate import export_genotypes, run_evaluate
from ray_nas.offline.results import JobResults
from ray_nas.report import load_report_data
from ray_nas.search.loop import EpochRecord
from ray_nas.spaces import darts

from .conftest import TINY_SEARCH

#: retraining made tiny (NAS-Bench-201's recipe keys): no table scores the `fake` data set
RETRAIN = {"epochs": 1, "channels": 4, "cells": 1, "batch_size": 8, "steps_per_epoch": 1}
CRITERIA = ["final", "best_valid", {"name": "dartsplus_sc", "k": 2}]


def _retrain_job(root: Path, name: str, search: dict) -> Path:
    import yaml

    job = {"name": name, "store": str(root / "store"), "tracking_uri": f"sqlite:///{root}/mlflow.db",
           "search": {**TINY_SEARCH, "epochs": 2, "steps_per_epoch": 1, **search},
           "grid": {"seed": [0, 1]}, "criteria": CRITERIA,
           "evaluate": {"benchmark": None, "retrain": RETRAIN}}  # fmt: skip
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def retrained(tmp_path_factory) -> tuple[Path, Path, str]:
    """Two tiny real jobs scored by retraining (as the quickstart: no benchmark table), each
    searched (2 seeds) and evaluated by `ray-nas evaluate`; returns (job a, job b, what
    evaluate printed for job a)."""
    from ray_nas.search.trial import run_trial

    root = tmp_path_factory.mktemp("retrained")
    a = _retrain_job(root, "rt_a", {})
    b = _retrain_job(root, "rt_b", {"lr_scheme": "exchange"})
    printed = {}
    for path in (a, b):
        spec = load_spec(path)
        for cfg, rid, _ in expand_grid(spec):
            assert run_trial(spec, cfg, rid, progress=False, log=lambda s: None) == "completed"
        lines: list[str] = []
        res = run_evaluate(spec, log=lines.append)
        assert res.metric == "retrain_acc"
        printed[path] = "\n".join(lines)
    return a, b, printed[a]


def test_evaluate_prints_the_retrained_accuracies(retrained):
    _, _, printed = retrained
    assert printed.count("retrain_acc: mean±std") == 1 and "n/a" not in printed


def test_compare_of_retrained_jobs_has_every_accuracy(retrained, tmp_path, capsys):
    a, b, _ = retrained
    out = tmp_path / "cmp.html"
    capsys.readouterr()
    assert cli.main(["compare", str(a), str(b), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    table = text.split("criteria by mean accuracy per job")[0]
    assert "score per job: rt_a=retrain_acc, rt_b=retrain_acc" in table and "n/a" not in table
    page = out.read_text()
    main = page[page.index('id="table"') : page.index('id="rank"')]
    assert "<td>–</td>" not in main and "–<br>" not in main
    for path in (a, b):  # each cell: the job's retrained accuracies, mean±std over its 2 seeds
        sel = pd.read_parquet(f"{load_spec(path).job_dir}/selections.parquet")
        for c in JobResults(load_spec(path)).criteria:
            acc = sel[sel.label == c.label].retrain_acc
            assert len(acc) == 2 and acc.notna().all()
            assert f"{acc.mean():.2f}±{acc.std(ddof=0):.2f} @" in table
            assert f"{acc.mean():.2f} ± {acc.std(ddof=0):.2f}<br>" in main


def test_api_summary_matches_evaluate(retrained):
    a, _, printed = retrained
    spec = load_spec(a)
    summary = api.open_job(a).summary()
    assert summary["mean"].notna().all() and len(summary) == len(CRITERIA)
    sel = pd.read_parquet(f"{spec.job_dir}/selections.parquet")
    for r in summary.itertuples():
        acc = sel[sel.label == r.label].retrain_acc
        assert r.mean == pytest.approx(acc.mean()) and r.std == pytest.approx(acc.std(ddof=0))
        assert f"{r.mean:.2f}±{r.std:.2f} @{r.stop_epoch:.1f}" in printed
    # and the selections are evaluate's rows, retrained accuracy included
    mine = api.open_job(a).selections()
    pd.testing.assert_frame_equal(mine[sel.columns], sel, check_exact=True)
    # criteria of the user's own: retrained accuracy where evaluate retrained the same arch
    final = api.open_job(a).summary(["final"])
    assert final["mean"].tolist() == summary[summary.label == "final"]["mean"].tolist()


def test_job_results_read_the_store_once(retrained, monkeypatch):
    a, b, _ = retrained
    calls: list[str] = []
    read_job = store.read_job_state

    def counted(job_dir: str, *args, **kwargs):
        calls.append(job_dir)
        return read_job(job_dir, *args, **kwargs)

    monkeypatch.setattr(store, "read_job_state", counted)
    spec = load_spec(a)
    res = JobResults(spec)
    first = res.selections
    report = load_report_data(spec, res)
    evaluated = run_evaluate(spec, log=lambda s: None, results=res)
    comparison = compare_jobs([res, JobResults(load_spec(b))])
    assert calls == [spec.job_dir, load_spec(b).job_dir]  # once per job
    assert report.trials is res.trials and evaluated.trials is res.trials
    assert report.selections.drop(columns="group").equals(first)
    assert res.selections is evaluated.selections and res.summary is res.summary
    # the report's score and notes are the same selections': retrained accuracy, complete
    assert report.metric == "retrain_acc" and report.notes == []
    assert comparison.cells["metric"].tolist() == ["retrain_acc"] * 2 * len(CRITERIA)


# ------------------------------------------------------------------------------------------
# a DARTS-space store: two cells whose edges share names


def _darts_store(root: Path, concentration: bool) -> Path:
    """A job over 2 synthetic DARTS-space trials (3 epochs, 2 ops, normal and reduce cells);
    with `concentration`, DrNAS's column filled as the worker writes it."""
    import yaml

    ops = ("skip_connect", "sep_conv_3x3")
    search = {"space": "darts", "ops": list(ops), "layers": 3, "channels": 2, "epochs": 2}
    job = {"name": "dstore", "store": str(root / "store"), "search": search, "grid": {"seed": [0, 1]},
           "criteria": ["final", "best_valid"], "evaluate": {"benchmark": None, "retrain": None}}  # fmt: skip
    path = root / "dstore.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    rng = np.random.default_rng(0)
    rows = darts.SPACE.rows()
    for seed in (0, 1):
        cfg = resolve_search({**search, "seed": seed})
        writer = store.TrialWriter(f"{root}/store/dstore", run_id(cfg), cfg.ops,
                                   tuple(e for _, e in rows), config_json(cfg),
                                   cells=tuple(c for c, _ in rows))  # fmt: skip
        for t in range(3):
            alpha = rng.normal(size=(len(rows), len(ops))).astype(np.float32)
            w = np.exp(alpha) / np.exp(alpha).sum(1, keepdims=True)
            extras = {"concentration": np.exp(alpha)} if concentration else {}
            writer.append(EpochRecord(t, 1.0, 50.0, 1.0, 50.0 + t, 0.01, 0.0, None, 1.0,
                                      darts.SPACE.genotype_text(w, ops), alpha, w, extras))  # fmt: skip
    return path


@pytest.mark.parametrize("concentration", [False, True])
def test_alphas_of_a_darts_store_keep_the_cell(tmp_path, concentration):
    job = api.open_job(_darts_store(tmp_path, concentration))
    al = job.alphas()
    key = ["run_id", "epoch", "cell", "edge", "op"]
    assert list(al.columns[:5]) == key and not al.duplicated(key).any()
    assert len(al) == 2 * 3 * 28 * 2 and set(al.cell) == {"normal", "reduce"}
    assert al.duplicated(["run_id", "epoch", "edge", "op"]).any()  # why the cell is needed
    sums = al.groupby(["run_id", "epoch", "cell", "edge"]).weight.sum()
    assert np.allclose(sums, 1.0, atol=1e-5)
    t = job.trials[0]
    reduce = al[(al.run_id == t.run_id) & (al.epoch == 2) & (al.cell == "reduce")]
    assert np.allclose(reduce.alpha, t.alpha[2, 14:].reshape(-1))
    if concentration:
        assert np.allclose(reduce.concentration, np.exp(t.alpha[2, 14:]).reshape(-1), rtol=1e-6)
    else:
        assert "concentration" not in al


def test_export_writes_the_space_format(tmp_path):
    """`ray-nas export` of the DARTS store: DARTS's genotypes.py, one genotype per selection."""
    path = _darts_store(tmp_path, False)
    spec = load_spec(path)
    sel = run_evaluate(spec, log=lambda s: None).selections
    assert cli.main(["export", str(path), "-o", str(tmp_path / "g.py")]) == 0
    text = (tmp_path / "g.py").read_text()
    assert text.startswith("# Selected genotypes of job 'dstore' (ray-nas export)")
    ns: dict = {}
    exec(compile(text, "g.py", "exec"), ns)
    names = {re.sub(r"\W+", "_", f"{r.label}_{r.run_id}"): r.arch for r in sel.itertuples()}
    assert {n: repr(ns[n]) for n in names} == names
    _, count = export_genotypes(spec, str(tmp_path / "again.py"))
    assert count == len(sel) == 4


# ------------------------------------------------------------------------------------------
# the criteria's faster arithmetic gives the same bits as the plain one


def test_local_averages_and_ratios_are_numpys_bit_for_bit():
    """DARTS-ES's local averages (one reduction over all full windows) equal np.mean of each
    window, and the ratios (one array division) equal _ratio's one pair at a time, bit for bit,
    over random eigenvalue series with zeros, NaN and inf."""
    from ray_nas.criteria.builtin import _local_averages, _ratio, _ratios

    rng = np.random.default_rng(7)
    for trial in range(300):
        ev = np.abs(
            np.cumsum(rng.normal(0.01, rng.choice([0.05, 1.0, 1e3]), size=rng.integers(0, 90)))
        )
        ev *= rng.choice([1e-8, 1.0, 1e8])
        if len(ev) and trial % 5 == 0:
            ev[rng.integers(0, len(ev), 2)] = rng.choice([0.0, -0.0, np.nan, np.inf], 2)
        for window in (1, 2, 3, 5, 8, 9, 10, 17):
            first = math.ceil(window / 2) - 1
            want = [float(np.mean(ev[max(0, k - window + 1) : k + 1])) if k >= first else None
                    for k in range(len(ev))]  # fmt: skip
            got = _local_averages(ev, window)
            assert np.array_equal(
                np.array(got, dtype=float), np.array(want, dtype=float), equal_nan=True
            )
            assert [g is None for g in got] == [w is None for w in want]
            for delta in (1, 4):
                start = first + delta
                pairs = [_ratio(want[k], want[k - delta]) for k in range(start, len(ev))]
                assert np.array_equal(_ratios(got, delta, start), pairs, equal_nan=True)
