"""A small synthetic NAS-Bench-201 store evaluated with the built-in table and the paper's
criteria: the selections the golden test (tests/test_nb201_golden.py) compares with
tests/data/nb201_selections_pre13.csv.

It uses only APIs that main had before the space refactor (commit 6c423da), so the same code
makes the expected values there:

    git worktree add /tmp/pre13 6c423da
    PYTHONPATH=/tmp/pre13 python tests/nb201_golden.py tests/data/nb201_selections_pre13.csv
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ray_nas import nb201, trajectory
from ray_nas.evaluate import run_evaluate
from ray_nas.spec import config_json, load_spec, resolve_search, run_id

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


def selections(tmp: str) -> pd.DataFrame:
    """Write the store under `tmp`, evaluate it (no MLflow), return every column of
    selections.parquet (run_id, criterion, params, label, fired, stop_epoch, arch, note,
    in_progress, the table's metrics cifar10_test ... and bench_index), sorted."""
    store, name = f"{tmp}/store", "golden"
    rng = np.random.default_rng(2026)
    for seed, ops in TRIALS:
        cfg = resolve_search({"seed": seed, "epochs": EPOCHS, "ops": list(ops)})
        rows, alpha, weights = synth_trial(rng, ops)
        writer = trajectory.TrialWriter(f"{store}/{name}", run_id(cfg), cfg.ops, nb201.EDGES,
                                        config_json(cfg))  # fmt: skip
        writer.write_all(rows, alpha, weights)
    job = Path(tmp, "job.yaml")
    job.write_text(json.dumps({"name": name, "store": store, "search": {"epochs": EPOCHS},
                               "evaluate": {"benchmark": "nb201", "retrain": None}}))  # fmt: skip
    sel = run_evaluate(load_spec(str(job)), log=lambda s: None, track=False).selections
    return sel.sort_values(["run_id", "label"]).reset_index(drop=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        out = selections(d)
    out.to_csv(sys.argv[1], index=False)
    print(f"{len(out)} rows, columns {list(out.columns)} -> {sys.argv[1]}")
