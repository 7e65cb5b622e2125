"""Time MLflow logging at scale: N synthetic trials of T epochs logged to a fresh SQLite file.

    python benchmarks/mlflow_scale.py --trials 500 --epochs 50
    python benchmarks/mlflow_scale.py --trials 2000 --epochs 50
    python benchmarks/mlflow_scale.py --trials 500 --epochs 50 --server

Writes N random-walk NAS-Bench-201 trials into a temporary store (offline_scale.py's writer), runs
the offline stage on them (criteria `final`, `best_valid`, no benchmark table), then times
`tracking.log_job` into a new SQLite database (MLflow's tables created first, timed apart): the
first log (every run created), a rerun (which must create and update nothing), and a resumed
log (`--resume K`: the first log had K epochs fewer; the resumed one appends only those). With
`--server`, the database is behind `mlflow server` on 127.0.0.1 (its start timed apart) and
ray_nas logs to it over HTTP (its `log_batch` path). Prints each time, the runs and epochs
written, the database's size and the load average before and after.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from offline_scale import write_store  # noqa: E402

from ray_nas.config import spec_from_dict  # noqa: E402


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _server(db: Path, artifacts: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` on a free port of 127.0.0.1 with `db` as its backend; waits for /health."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--default-artifact-root", str(artifacts)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, uri
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit(f"mlflow server exited with code {proc.returncode}")
        time.sleep(0.5)
    proc.terminate()
    sys.exit("mlflow server did not answer /health within 10 minutes")


def _shorter(result, cut: int):
    """The result with every trial `cut` epochs shorter (as if still searching)."""
    trials = [
        dataclasses.replace(t, epochs={k: v[:-cut] for k, v in t.epochs.items()},
                            alpha=t.alpha[:-cut], weights=t.weights[:-cut])
        for t in result.trials
    ]  # fmt: skip
    return dataclasses.replace(result, trials=trials)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--criteria", nargs="+", default=["final", "best_valid"])
    ap.add_argument("--server", action="store_true", help="log over HTTP to `mlflow server`")
    ap.add_argument("--resume", type=int, default=0, metavar="K",
                    help="log the trials K epochs short first, then whole (a resumed search)")  # fmt: skip
    args = ap.parse_args()
    if not 0 <= args.resume < args.epochs:
        sys.exit(f"--resume {args.resume}: must be 0 (none) to {args.epochs - 1} (--epochs - 1)")
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
        proc = None
        t0 = time.perf_counter()
        if args.server:
            proc, uri = _server(db, Path(tmp) / "artifacts")
            spec = dataclasses.replace(spec, tracking_uri=uri)
            print(f"  mlflow server at {uri} (its schema migrations included): "
                  f"{time.perf_counter() - t0:.1f}s")  # fmt: skip
        else:
            _client(spec.tracking_uri).search_experiments()  # MLflow creates its tables
            print(f"  new database (MLflow's schema migrations): {time.perf_counter() - t0:.1f}s")
        try:
            where = "an mlflow server (HTTP)" if args.server else "a fresh SQLite file"
            load = _load()
            t0 = time.perf_counter()
            first = log_job(spec, _shorter(result, args.resume) if args.resume else result,
                            log=lambda s: None)  # fmt: skip
            t_first = time.perf_counter() - t0
            print(f"mlflow log {args.trials} trials x {args.epochs - args.resume} epochs to {where}: "
                  f"{t_first:.1f}s ({first['created']} runs created, {first['epochs_logged']} epochs)"
                  f"; load average {load} -> {_load()}")  # fmt: skip
            if args.resume:
                load, t0 = _load(), time.perf_counter()
                resumed = log_job(spec, result, log=lambda s: None)
                print(f"  resumed: {time.perf_counter() - t0:.1f}s ({resumed['updated']} runs "
                      f"updated, {resumed['epochs_logged']} epochs); load average {load} -> {_load()}")  # fmt: skip
                if resumed["created"] or resumed["epochs_logged"] != args.trials * args.resume:
                    sys.exit("a resumed log wrote more than the new epochs")
            load, t0 = _load(), time.perf_counter()
            again = log_job(spec, result, log=lambda s: None)
            t_again = time.perf_counter() - t0
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)
        size = db.stat().st_size / 1024**2
        print(f"  rerun {t_again:.1f}s ({again['created']} created, {again['updated']} updated, "
              f"{again['unchanged']} unchanged); load average {load} -> {_load()}; "
              f"database {size:.0f} MB")  # fmt: skip
        if again["created"] or again["updated"]:
            sys.exit("a rerun wrote again: logging is not idempotent")


if __name__ == "__main__":
    main()
