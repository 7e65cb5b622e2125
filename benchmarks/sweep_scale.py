"""Measure what a big grid costs the sweep driver: N tiny trials on the local Ray.

    python benchmarks/sweep_scale.py --trials 500            # the README's numbers
    python benchmarks/sweep_scale.py --trials 20 --cpus 2    # a quick look

Each trial is as small as a search gets (`fake` data, C=2, N=1, 1 epoch of 1 step, no Hessian),
so the wall time is the driver's and Tune's per-trial overhead, not training. Runs the sweep in
this process (so this process is the driver) on a fresh local Ray of `--cpus` CPUs, one CPU per
trial, then the offline stage, and prints:

- sweep wall time, wall seconds per trial, and the driver's overhead per trial: wall x slots
  minus the trials' own epoch seconds, over the trials (slot-seconds not spent in an epoch);
- the driver's peak RSS (ru_maxrss of this process; Ray's own processes are not counted) at the
  end of the sweep, and again after the offline stage (evaluate and MLflow logging run in this
  process too);
- files and bytes in the store (trajectories, status, checkpoints, Tune's folder), Tune's split
  into its per-trial folders and its experiment-level files;
- evaluate wall time (criteria + selections) and the MLflow logging time (SQLite);
- the machine's load average (1, 5, 15 minutes) at the end: the timings depend on it.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import yaml


def store_usage(root: Path) -> dict[str, tuple[int, int]]:
    """{top-level folder under the job: (files, bytes)} and 'total'."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, _dirs, files in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        key = rel[0] if rel else "(job files)"
        n, b = out.get(key, (0, 0))
        out[key] = (n + len(files), b + sum((Path(dirpath) / f).stat().st_size for f in files))
    out["total"] = (sum(n for n, _ in out.values()), sum(b for _, b in out.values()))
    return out


def tune_usage(tune_dir: Path) -> dict[str, tuple[int, int]]:
    """Tune's folder split: its per-trial folders' files, and the experiment-level files."""
    out = {"trial folders": (0, 0), "experiment": (0, 0)}
    for dirpath, _dirs, files in os.walk(tune_dir):
        depth = len(Path(dirpath).relative_to(tune_dir).parts)  # 1: tune-<time>/, 2: a trial's
        key = "trial folders" if depth >= 2 else "experiment"
        n, b = out[key]
        out[key] = (n + len(files), b + sum((Path(dirpath) / f).stat().st_size for f in files))
    return out


def rss_mb() -> float:
    """This process's resident memory now (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (one per trial)")
    ap.add_argument("--store", help="store folder (default: a temporary one)")
    ap.add_argument(
        "--keep-checkpoints", action="store_true", help="keep each trial's checkpoint file"
    )
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from ray_nas import store as stored
    from ray_nas.config import expand_grid, load_spec
    from ray_nas.offline.evaluate import run_evaluate
    from ray_nas.search.sweep import run_sweep
    from ray_nas.tracking import log_job

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or f"{tmp}/store"
        job = {"name": f"scale{args.trials}", "store": store,
               "tracking_uri": f"sqlite:///{tmp}/mlflow.db", "resources": {"cpu": 1, "gpu": 0},
               "keep_checkpoints": args.keep_checkpoints,
               "search": {"dataset": "fake", "channels": 2, "cells": 1, "epochs": 1,
                          "steps_per_epoch": 1, "batch_size": 8, "hessian_every": 0, "device": "cpu"},
               "grid": {"seed": list(range(args.trials))}, "criteria": ["final", "best_valid"],
               "evaluate": {"benchmark": None, "retrain": None}}  # fmt: skip
        path = Path(tmp) / "job.yaml"
        path.write_text(yaml.safe_dump(job, sort_keys=False))
        spec = load_spec(path)
        trials = expand_grid(spec)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        t0 = time.perf_counter()
        status = run_sweep(spec, trials, log=lambda s: print(s, flush=True))
        wall = time.perf_counter() - t0
        sweep_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sweep_rss = rss_mb()
        ray.shutdown()
        done = sum(s == "completed" for s in status.values())
        epoch_s = stored.read_frame(f"{spec.job_dir}/epochs", columns=["seconds"])["seconds"]
        overhead = (wall * args.cpus - float(epoch_s.sum())) / len(trials)
        t1 = time.perf_counter()
        result = run_evaluate(spec, log=lambda s: None)
        evaluate_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        log_job(spec, result, log=lambda s: None)
        mlflow_s = time.perf_counter() - t2
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\nsweep_scale: {len(trials)} trials ({done} completed) on {args.cpus} CPUs")
        print(f"  sweep wall {wall:.1f}s = {wall / len(trials):.2f}s per trial; "
              f"driver overhead {overhead:.2f} slot-seconds per trial "
              f"(epochs themselves: {epoch_s.sum() / len(trials):.2f}s per trial)")  # fmt: skip
        print(f"  driver peak RSS {sweep_peak:.0f} MB at the sweep's end (RSS then {sweep_rss:.0f} MB); "
              f"{peak:.0f} MB after evaluate and MLflow")  # fmt: skip
        usage = store_usage(Path(spec.job_dir))
        for key, (n, b) in sorted(usage.items()):
            print(f"  store {key:<12} {n:>6} files {b / 1e6:>9.1f} MB")
        n, b = usage["total"]
        per = len(trials)
        for key, (tn, tb) in tune_usage(Path(spec.job_dir) / "tune").items():
            print(
                f"  store tune: {key:<13} {tn:>6} files {tb / 1e6:>9.1f} MB ({tn / per:.2f} per trial)"
            )
        print(f"  per trial: {n / per:.1f} files, {b / per / 1e3:.0f} KB "
              f"(x 10,000 trials: {n / per * 1e4:,.0f} files, {b / per * 1e4 / 1e9:.1f} GB)")  # fmt: skip
        print(f"  evaluate {evaluate_s:.1f}s ({len(result.selections)} selections); "
              f"MLflow logging {mlflow_s:.1f}s")  # fmt: skip
        print("  load average (1, 5, 15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
