"""Time MLflow logging at scale: N synthetic trials of T epochs logged to a fresh SQLite file.

    python benchmarks/mlflow_scale.py --trials 500 --epochs 50
    python benchmarks/mlflow_scale.py --trials 2000 --epochs 50

Writes N random-walk NAS-Bench-201 trials into a temporary store (offline_scale.py's writer), runs
the offline stage on them (criteria `final`, `best_valid`, no benchmark table), then times
`tracking.log_job` into a new SQLite database (MLflow's tables created first, timed apart): the
first log (every run created), and a rerun
(which must create and update nothing). Prints both, the runs and metric points written, and the
database's size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from offline_scale import write_store  # noqa: E402

from ray_nas.config import spec_from_dict  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--criteria", nargs="+", default=["final", "best_valid"])
    args = ap.parse_args()
    from ray_nas.offline.evaluate import run_evaluate
    from ray_nas.tracking import _client, log_job

    with tempfile.TemporaryDirectory() as tmp:
        name = f"mlflow_{args.trials}x{args.epochs}"
        db = Path(tmp) / "mlflow.db"
        spec = spec_from_dict({"name": name, "store": f"{tmp}/store", "tracking_uri": f"sqlite:///{db}",
                               "search": {"epochs": args.epochs}, "criteria": list(args.criteria),
                               "evaluate": {"benchmark": None, "retrain": None}})  # fmt: skip
        print(f"writing {args.trials} trials x {args.epochs} epochs under {spec.job_dir}")
        print(f"  write: {write_store(spec.job_dir, args.trials, args.epochs):.1f}s")
        t0 = time.perf_counter()
        result = run_evaluate(spec, log=lambda s: None)
        print(f"  offline stage: {time.perf_counter() - t0:.1f}s")
        t0 = time.perf_counter()
        _client(spec.tracking_uri).search_experiments()  # MLflow creates its tables
        print(f"  new database (MLflow's schema migrations): {time.perf_counter() - t0:.1f}s")
        t0 = time.perf_counter()
        first = log_job(spec, result, log=lambda s: None)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = log_job(spec, result, log=lambda s: None)
        t_again = time.perf_counter() - t0
        size = db.stat().st_size / 1024**2
        print(f"mlflow log {args.trials} trials x {args.epochs} epochs to a fresh SQLite file: "
              f"{t_first:.1f}s ({first['created']} runs created, {first['epochs_logged']} epochs); "
              f"rerun {t_again:.1f}s ({again['created']} created, {again['updated']} updated, "
              f"{again['unchanged']} unchanged); database {size:.0f} MB")  # fmt: skip
        if again["created"] or again["updated"]:
            sys.exit("a rerun wrote again: logging is not idempotent")


if __name__ == "__main__":
    main()
