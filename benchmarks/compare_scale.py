"""Time `ray-nas compare` over several synthetic jobs in the real store layout.

    python benchmarks/compare_scale.py --jobs 3 --trials 1000 --epochs 50

Writes each job's store as `benchmarks/offline_scale.py` does (random-walk alphas, one trial per
seed, a different random stream per job) into a temporary folder (or --store, reused when already
written), then runs `ray-nas compare` on them in a subprocess with the paper's criteria and the
NB201 table in $RAY_NAS_NB201_TABLE when set, and prints the wall time and peak memory of the child.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from offline_scale import ENV_TABLE, write_store


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--store", help="store folder (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or tmp
        bench = ENV_TABLE
        paths = []
        for j in range(args.jobs):
            name = f"compare{j}_{args.trials}x{args.epochs}"
            job = {"name": name, "store": store, "tracking_uri": f"sqlite:///{tmp}/mlflow.db",
                   "search": {"epochs": args.epochs},
                   "evaluate": {"benchmark": bench, "retrain": None}}  # fmt: skip
            paths.append(Path(tmp) / f"{name}.yaml")
            paths[-1].write_text(yaml.safe_dump(job))
            if not Path(store, name, "epochs").exists():
                print(f"writing {args.trials} trials x {args.epochs} epochs under {store}/{name}")
                secs = write_store(f"{store}/{name}", args.trials, args.epochs, seed=j)
                print(f"  write: {secs:.1f}s")
        cmd = [sys.executable, "-m", "ray_nas.cli", "compare", *map(str, paths),
               "-o", f"{tmp}/compare.html"]  # fmt: skip
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
        print(
            "\n".join(line for line in out.splitlines() if line.startswith(("compare:", "mlflow")))
        )
        print(f"compare {args.jobs} jobs x {args.trials} trials x {args.epochs} epochs: "
              f"{wall:.1f}s wall, peak RSS {peak:.2f} GB, page {Path(tmp, 'compare.html').stat().st_size / 1e3:.0f} kB")  # fmt: skip


if __name__ == "__main__":
    main()
