"""Time the offline stage at scale: N synthetic trials of T epochs in the real store layout.

    python benchmarks/offline_scale.py --trials 10000 --epochs 50
    python benchmarks/offline_scale.py --trials 1000 --epochs 500

Writes the store into a temporary folder (or --store), then runs `ray-nas evaluate`'s offline
stage on it in a subprocess with the paper's criteria and an NB201 table (--table, or
$RAY_NAS_NB201_TABLE), and prints the write time, the evaluate wall time (the subprocess's, Python's start and
imports included) and its peak memory (VmHWM of the child, Linux), beside the time pyarrow.dataset
needs to read the same epochs and alphas in this process; each also in CPU seconds (user +
system, all threads), which a busy machine changes less than wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from ray_nas import store as stored
from ray_nas.config import config_json, resolve_search, run_id
from ray_nas.spaces import nb201

#: a NAS-Bench-201 accuracy table (Parquet, as `evaluate.benchmark` takes) to score with, from
#: the environment; none: the criteria run without scores (oracle and scoring left out)
ENV_TABLE = os.environ.get("RAY_NAS_NB201_TABLE") or None


def synth_trial(rng: np.random.Generator, epochs: int, ops=nb201.OPS):
    """A random-walk alpha trajectory [T+1, 6, K] with the columns the worker writes."""
    k = len(ops)
    steps = rng.normal(0, 0.05, size=(epochs + 1, 6, k))
    steps[0] = rng.normal(0, 1e-3, size=(6, k))
    alpha = np.cumsum(steps, axis=0)
    z = np.exp(alpha - alpha.max(-1, keepdims=True))
    weights = z / z.sum(-1, keepdims=True)
    archs = [nb201.arch_string([ops[i] for i in row]) for row in alpha.argmax(-1)]
    eig = np.abs(np.cumsum(rng.normal(0.01, 0.05, size=epochs + 1))) + 0.05
    rows = [
        {"epoch": t, "train_loss": 2.0 - t / (epochs + 1), "train_acc": 50.0, "valid_loss": 1.0,
         "valid_acc": float(40 + 40 * t / epochs + rng.normal()), "lr_weights": 0.025, "lr_alpha": 3e-4,
         "hessian_eig": float(eig[t]), "seconds": 1.0, "arch": archs[t]}
        for t in range(epochs + 1)
    ]  # fmt: skip
    return rows, alpha, weights


def write_store(job_dir: str, trials: int, epochs: int, seed: int = 0) -> float:
    """N trials (seeds 0..N-1 of one config) written as `store.TrialWriter.write_all` writes them
    (the same schema, metadata and files), the constant columns built once."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    first = resolve_search({"seed": 0, "epochs": epochs})
    n, e, k = epochs + 1, len(nb201.EDGES), len(first.ops)
    const = {
        "epoch": pa.array(np.repeat(np.arange(n, dtype=np.int32), e * k)),
        "cell": pa.array(["shared"] * (n * e * k), pa.string()),
        "edge": pa.array(np.tile(np.repeat(np.array(nb201.EDGES, dtype=object), k), n).tolist()),
        "op": pa.array(np.tile(np.array(first.ops, dtype=object), n * e).tolist()),
    }
    for i in range(trials):
        cfg = dataclasses.replace(first, seed=i)
        writer = stored.TrialWriter(job_dir, run_id(cfg), cfg.ops, nb201.EDGES, config_json(cfg))
        rows, alpha, weights = synth_trial(rng, epochs)
        alphas = pa.table(
            {**const, "alpha": pa.array(alpha.astype(np.float32).reshape(-1)),
             "weight": pa.array(weights.astype(np.float32).reshape(-1)),
             "concentration": pa.nulls(n * e * k, pa.float32())},
            schema=stored.ALPHAS_SCHEMA,
        )  # fmt: skip
        ep = pa.Table.from_pylist(rows, schema=stored.EPOCHS_SCHEMA)
        stored.write_table(alphas, writer.paths["alphas"], writer.metadata)
        stored.write_table(ep, writer.paths["epochs"], writer.metadata)
        if (i + 1) % max(1, trials // 10) == 0:
            print(f"  wrote {i + 1}/{trials} trials ({time.perf_counter() - t0:.0f}s)", flush=True)
    return time.perf_counter() - t0


def read_seconds(job_dir: str) -> tuple[float, float]:
    """(wall, CPU) seconds pyarrow needs to read the job's two trajectory datasets whole (the
    floor of any offline stage over them); CPU: this process's, all threads."""
    import pyarrow.dataset as ds

    t0, c0 = time.perf_counter(), time.process_time()
    for kind in ("epochs", "alphas"):
        ds.dataset(f"{job_dir}/{kind}", format="parquet", partitioning="hive").to_table()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--store", help="store folder (default: a temporary one)")
    ap.add_argument("--table", default=ENV_TABLE,
                    help="NAS-Bench-201 table (default: $RAY_NAS_NB201_TABLE, else none)")  # fmt: skip
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or tmp
        name = f"scale_{args.trials}x{args.epochs}"
        job = {"name": name, "store": store, "tracking_uri": f"sqlite:///{tmp}/mlflow.db",
               "search": {"epochs": args.epochs},
               "evaluate": {"benchmark": args.table, "retrain": None}}  # fmt: skip
        job_path = Path(tmp) / "job.yaml"
        job_path.write_text(json.dumps(job))
        if not Path(store, name, "epochs").exists():
            print(f"writing {args.trials} trials x {args.epochs} epochs under {store}/{name}")
            print(f"  write: {write_store(f'{store}/{name}', args.trials, args.epochs):.1f}s")
        read, read_cpu = read_seconds(f"{store}/{name}")
        cmd = [sys.executable, "-c", "import sys; from ray_nas.cli.commands import evaluate_command; "
               f"from ray_nas.config import load_spec; from ray_nas.offline.evaluate import run_evaluate; "
               f"run_evaluate(load_spec({str(job_path)!r}), log=lambda s: None); "
               "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"]  # fmt: skip
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        wall = time.perf_counter() - t0
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        # the child's own peak (VmHWM): its ru_maxrss counts this process's pages it was forked with
        peak, cpu = int(out.split()[-1]) / 1024**2, child.ru_utime + child.ru_stime
        print(f"evaluate {args.trials} trials x {args.epochs} epochs: {wall:.1f}s wall "
              f"({cpu:.1f}s CPU), peak RSS {peak:.2f} GB")  # fmt: skip
        print(f"  pyarrow.dataset read of the same store (epochs + alphas): {read:.1f}s wall "
              f"({read_cpu:.1f}s CPU); evaluate / read = {wall / read:.1f}x wall, "
              f"{cpu / read_cpu:.1f}x CPU")  # fmt: skip


if __name__ == "__main__":
    main()
