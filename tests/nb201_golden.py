"""A small synthetic NAS-Bench-201 store evaluated with the built-in table and the paper's
criteria: the selections, the report and (on digits) the retraining cache that the golden test
(tests/test_nb201_golden.py) compares with tests/data/nb201_*.

It uses only APIs that main had before the space refactor (commit 6c423da), so the same code
makes the expected values there:

    git worktree add /tmp/pre13 6c423da
    PYTHONPATH=/tmp/pre13 python tests/nb201_golden.py selections tests/data/nb201_selections_pre13.csv
    PYTHONPATH=/tmp/pre13 python tests/nb201_golden.py retrain tests/data/nb201_retrain_pre13.csv

The report's fixture is today's (`python tests/nb201_golden.py report tests/data/nb201_report.html`;
see tests/test_nb201_golden.py for how it was checked against 6c423da's).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ray_nas import store as stored
from ray_nas.config import config_json, load_spec, resolve_search, run_id
from ray_nas.offline.evaluate import run_evaluate
from ray_nas.report import build_report
from ray_nas.spaces import nb201

EPOCHS = 30
#: (seed, ops): four seeds of the full op set and two of the set without `none`
TRIALS = [(s, nb201.OPS) for s in range(4)] + [(s, nb201.OPS[1:]) for s in (10, 11)]


def synth_trial(rng: np.random.Generator, ops) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """A random-walk alpha trajectory [T+1, 6, K] and the epoch rows the worker writes (like
    benchmarks/offline_scale.py's, kept here so the fixture does not move when the benchmark does)."""
    k = len(ops)
    steps = rng.normal(0, 0.08, size=(EPOCHS + 1, 6, k))
    steps[0] = rng.normal(0, 1e-3, size=(6, k))
    alpha = np.cumsum(steps, axis=0)
    z = np.exp(alpha - alpha.max(-1, keepdims=True))
    weights = z / z.sum(-1, keepdims=True)
    archs = [nb201.arch_string([ops[i] for i in row]) for row in alpha.argmax(-1)]
    eig = np.abs(np.cumsum(rng.normal(0.01, 0.05, size=EPOCHS + 1))) + 0.05
    valid = 40 + 40 * np.arange(EPOCHS + 1) / EPOCHS + rng.normal(0, 2, size=EPOCHS + 1)
    rows = [
        {"epoch": t, "train_loss": 2.0 - t / (EPOCHS + 1), "train_acc": 50.0, "valid_loss": 1.0,
         "valid_acc": float(valid[t]), "lr_weights": 0.025, "lr_alpha": 3e-4,
         "hessian_eig": float(eig[t]), "seconds": 1.0, "arch": archs[t]}
        for t in range(EPOCHS + 1)
    ]  # fmt: skip
    return rows, alpha, weights


def write_store(tmp: str, trials=TRIALS, dataset: str | None = None) -> str:
    """The synthetic store of `trials` (seeded random walks) under `tmp`; returns the store path."""
    store, name = f"{tmp}/store", "golden"
    rng = np.random.default_rng(2026)
    extra = {"dataset": dataset} if dataset else {}
    for seed, ops in trials:
        cfg = resolve_search({"seed": seed, "epochs": EPOCHS, "ops": list(ops), **extra})
        rows, alpha, weights = synth_trial(rng, ops)
        writer = stored.TrialWriter(f"{store}/{name}", run_id(cfg), cfg.ops, nb201.EDGES,
                                        config_json(cfg))  # fmt: skip
        writer.write_all(rows, alpha, weights)
    return store


def _job(tmp: str, file: str, **keys) -> str:
    job = Path(tmp, file)
    job.write_text(json.dumps({"name": "golden", "store": f"{tmp}/store", **keys}))
    return str(job)


def selections(tmp: str) -> pd.DataFrame:
    """Write the store under `tmp`, evaluate it (no MLflow), return every column of
    selections.parquet (run_id, criterion, params, label, fired, stop_epoch, arch, note,
    in_progress, the table's metrics cifar10_test ... and bench_index), sorted."""
    write_store(tmp)
    job = _job(tmp, "job.yaml", search={"epochs": EPOCHS},
               evaluate={"benchmark": "nb201", "retrain": None})  # fmt: skip
    sel = run_evaluate(load_spec(job), log=lambda s: None).selections
    return sel.sort_values(["run_id", "label"]).reset_index(drop=True)


def report(tmp: str) -> str:
    """The HTML report of the store `selections(tmp)` wrote and evaluated, under a job whose grid
    names its two op sets (the job of `selections` has no grid, and the report at 6c423da could
    not chart trials of two op sets in one grid group), with the parts that are not the
    store's content normalised: the store path, the time written, the CSS and script, and the
    resolved job spec (it lists every config key the code has, so it grows with new keys)."""
    seeds = sorted({s for s, _ in TRIALS})
    job = _job(tmp, "report.yaml", search={"epochs": EPOCHS},
               grid={"ops": [list(nb201.OPS), list(nb201.OPS[1:])], "seed": seeds},
               evaluate={"benchmark": "nb201", "retrain": None})  # fmt: skip
    page = build_report(load_spec(job)).replace(tmp, "<tmp>")
    page = re.sub(r"<dt>written</dt><dd>[^<]*</dd>", "<dt>written</dt><dd>-</dd>", page)
    page = re.sub(r"<style>.*?</style>|<script>.*?</script>", "", page, flags=re.S)
    return re.sub(r'<details class="section" id="spec".*?</details>', "", page, flags=re.S)


#: the retraining golden: 2 trials on digits, their selected archs retrained tiny (NB201 recipe)
RETRAIN = {"epochs": 2, "channels": 4, "cells": 1, "batch_size": 32, "steps_per_epoch": 4}


def retrain_job(tmp: str) -> str:
    """A store of TRIALS[:2] on digits and a job that retrains its selections (the paper's 15
    criteria; no benchmark covers digits); returns the job file."""
    write_store(tmp, TRIALS[:2], dataset="digits")
    return _job(tmp, "retrain.yaml", search={"epochs": EPOCHS, "dataset": "digits"},
                evaluate={"benchmark": None, "retrain": RETRAIN})  # fmt: skip


def retrained(tmp: str) -> pd.DataFrame:
    """Evaluate `retrain_job(tmp)` (retraining every distinct selected arch in this process) and
    return its cache, retrain.parquet (arch, dataset, settings, test_acc, seconds), by arch."""
    spec = load_spec(retrain_job(tmp))
    run_evaluate(spec, log=lambda s: None)
    cache = stored.read_frame(f"{spec.job_dir}/retrain.parquet")
    return cache.sort_values("arch").reset_index(drop=True)


if __name__ == "__main__":
    what, out_path = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as d:
        if what == "selections":
            out = selections(d)
            out.to_csv(out_path, index=False)
            print(f"{len(out)} rows, columns {list(out.columns)} -> {out_path}")
        elif what == "report":
            selections(d)
            Path(out_path).write_text(report(d))
            print(f"report ({Path(out_path).stat().st_size} bytes) -> {out_path}")
        else:
            out = retrained(d)
            out.to_csv(out_path, index=False)
            print(f"{len(out)} retrained archs -> {out_path}")
