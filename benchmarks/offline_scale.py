"""Time the offline stage at scale: N synthetic trials of T epochs in the real store layout.

    python benchmarks/offline_scale.py --trials 2000 --epochs 50
    python benchmarks/offline_scale.py --trials 10000 --epochs 50
    python benchmarks/offline_scale.py --trials 1000 --epochs 500
    python benchmarks/offline_scale.py --trials 100000 --epochs 50 --procs 2 --store DIR

Writes the store into a temporary folder (or --store: kept, and reused when it holds the job),
then runs `ray-nas evaluate`'s offline stage on it twice, each in a fresh Python process, with
the paper's criteria and an NB201 table (--table, or $RAY_NAS_NB201_TABLE): the first reads the
per-trial files and writes the compacted copy (`{job}/compact/`, docs/store.md), the second
reads the copy (what every evaluation after a sweep does). For each it prints the wall time
(Python's start and imports included), the CPU seconds (user + system, all threads; a busy
machine changes them less than wall time) and the peak memory (the child's own
ru_maxrss, Linux: a fresh process, not a fork of this one). Beside them, the time pyarrow needs
to read the same trajectories in this process: the per-trial files (one `pyarrow.dataset` of
each folder) and the compacted copy's two files (`pyarrow.parquet.read_table`).

The trials are written by `--procs` processes (default 1), each trial's two files as
`store.TrialWriter` writes them (the same schema, metadata, atomic write), the constant columns
built once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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


def write_store(job_dir: str, trials: int, epochs: int, seed: int = 0, procs: int = 1) -> float:
    """N trials (seeds 0..N-1 of one config) written as `store.TrialWriter.write_all` writes them
    (the same schema, metadata and files), by `procs` processes; returns the seconds taken."""
    t0 = time.perf_counter()
    step = max(1, min(1000, trials // (10 * procs) or 1))
    parts = [(job_dir, lo, min(trials, lo + step), epochs, seed) for lo in range(0, trials, step)]
    done = 0
    if procs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(procs) as pool:
            for n in pool.imap_unordered(_write_part, parts):
                done += n
                _progress(done, trials, t0, step)
    else:
        for part in parts:
            done += _write_part(part)
            _progress(done, trials, t0, step)
    return time.perf_counter() - t0


def _progress(done: int, trials: int, t0: float, step: int) -> None:
    if done % max(step, trials // 10) < step or done == trials:
        print(f"  wrote {done}/{trials} trials ({time.perf_counter() - t0:.0f}s)", flush=True)


def _write_part(part: tuple) -> int:
    """Trials lo..hi-1 of write_store (their own random stream: any split gives the same)."""
    job_dir, lo, hi, epochs, seed = part
    first = resolve_search({"seed": 0, "epochs": epochs})
    n, e, k = epochs + 1, len(nb201.EDGES), len(first.ops)
    const = {
        "epoch": pa.array(np.repeat(np.arange(n, dtype=np.int32), e * k)),
        "cell": pa.array(["shared"] * (n * e * k), pa.string()),
        "edge": pa.array(np.tile(np.repeat(np.array(nb201.EDGES, dtype=object), k), n).tolist()),
        "op": pa.array(np.tile(np.array(first.ops, dtype=object), n * e).tolist()),
    }
    for i in range(lo, hi):
        rng = np.random.default_rng([seed, i])
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
    return hi - lo


def read_seconds(job_dir: str) -> dict[str, tuple[float, float]]:
    """{layout: (wall, CPU) seconds} pyarrow needs to read the job's trajectories whole (the
    floor of any offline stage over them; each batch dropped once read); CPU: this process's,
    all threads. "trial files": one pyarrow.dataset per folder (epochs/, alphas/); "compacted":
    compact/epochs.parquet and compact/alphas.parquet row group by row group, when there."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    out = {}
    t0, c0 = time.perf_counter(), time.process_time()
    for kind in ("epochs", "alphas"):  # batch by batch: a 100,000-trial job is ~16 GB in Arrow
        for _ in ds.dataset(
            f"{job_dir}/{kind}", format="parquet", partitioning="hive"
        ).to_batches():
            pass
    out["trial files"] = time.perf_counter() - t0, time.process_time() - c0
    if Path(job_dir, "compact", "index.parquet").exists():
        t0, c0 = time.perf_counter(), time.process_time()
        for kind in ("epochs", "alphas"):
            pf = pq.ParquetFile(f"{job_dir}/compact/{kind}.parquet")
            for g in range(pf.num_row_groups):
                pf.read_row_group(g)
        out["compacted"] = time.perf_counter() - t0, time.process_time() - c0
    return out


def evaluate_once(job_path: Path) -> tuple[float, float, float, str]:
    """`ray-nas evaluate`'s offline stage in a fresh process: (wall, CPU seconds, peak RSS in
    GB, what it logged about the compacted copy)."""
    code = ("import resource, sys\n"
            "from ray_nas.config import load_spec\n"
            "from ray_nas.offline.evaluate import run_evaluate\n"
            "log = lambda s: print(s) if 'compact' in s else None\n"
            f"run_evaluate(load_spec({str(job_path)!r}), log=log)\n"
            "u = resource.getrusage(resource.RUSAGE_SELF)\n"
            "print('RUSAGE', u.ru_maxrss, u.ru_utime + u.ru_stime)\n")  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE,
                         text=True).stdout  # fmt: skip
    wall = time.perf_counter() - t0
    lines = out.strip().splitlines()
    _, peak_kb, cpu = lines[-1].split()
    return wall, float(cpu), int(peak_kb) / 1024**2, "; ".join(s.strip() for s in lines[:-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--store", help="store folder (default: a temporary one)")
    ap.add_argument("--procs", type=int, default=1, help="processes writing the store")
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
        job_dir = f"{store}/{name}"
        if not Path(job_dir, "epochs").exists():
            print(f"writing {args.trials} trials x {args.epochs} epochs under {job_dir}")
            took = write_store(job_dir, args.trials, args.epochs, procs=args.procs)
            print(f"  write: {took:.1f}s")
            time.sleep(2.5)  # store.compact's SETTLE_S: files this recent are not compacted
        runs = []
        for what in ("first", "again"):
            wall, cpu, peak, said = evaluate_once(job_path)
            runs.append((what, wall, cpu, peak))
            print(f"evaluate ({what}) {args.trials} trials x {args.epochs} epochs: {wall:.1f}s "
                  f"wall ({cpu:.1f}s CPU), peak RSS {peak:.2f} GB" + (f"  [{said}]" if said else ""))  # fmt: skip
        reads = read_seconds(job_dir)
        for layout, (read, read_cpu) in reads.items():
            print(f"  pyarrow read of the {layout} (epochs + alphas): {read:.1f}s wall "
                  f"({read_cpu:.1f}s CPU)")  # fmt: skip
        _, wall, cpu, _ = runs[-1]
        for layout, (read, read_cpu) in reads.items():
            print(f"  evaluate (again) / read of the {layout}: {wall / read:.1f}x wall, "
                  f"{cpu / read_cpu:.1f}x CPU")  # fmt: skip
        print(f"  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
