"""The benchmark scripts run (tiny sizes, not timed): what a user would paste from the README."""

import subprocess
import sys

from .conftest import REPO


def test_search_step_benchmark_prints_both_impls():
    cmd = [sys.executable, "benchmarks/search_step.py", "--channels", "4", "--cells", "1",
           "--batch", "4", "--size", "16", "--steps", "2", "--threads", "1"]  # fmt: skip
    out = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    ).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    for impl in ("reference", "fast"):
        ms, images_per_s, ratio = rows[impl][:3]
        assert float(ms) > 0 and float(images_per_s) > 0 and ratio.endswith("x")
    assert rows["reference"][2] == "1.00x"  # the first trial is the baseline


def test_equivalence_script_reports_every_layout_and_impl():
    cmd = [sys.executable, "benchmarks/equivalence.py", "--channels", "4", "--cells", "1",
           "--batch", "4", "--size", "8", "--seeds", "1"]  # fmt: skip
    out = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    ).stdout
    rows = [line.split() for line in out.splitlines()[3:] if line.split()]
    assert {(r[0], r[1]) for r in rows} == {
        (layout, impl) for layout in ("nchw", "channels-last") for impl in ("reference", "fast")
    }
    errors = {(r[0], r[1]): [float(v) for v in r[2:]] for r in rows}
    # NCHW float32 sits at rounding level against float64 (both impls)
    assert all(0 < e < 1e-4 for impl in ("reference", "fast") for e in errors[("nchw", impl)])


def test_search_step_benchmark_times_every_algorithm():
    cmd = [sys.executable, "benchmarks/search_step.py", "--channels", "4", "--cells", "1",
           "--batch", "4", "--size", "16", "--steps", "1", "--threads", "1", "--impl", "fast",
           "--algorithm", "darts_v1", "darts_v2", "gaea", "drnas"]  # fmt: skip
    out = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    ).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if "/fast" in line}
    assert set(rows) == {f"{a}/fast" for a in ("darts_v1", "darts_v2", "gaea", "drnas")}
    assert rows["darts_v1/fast"][4] == "1.00x"  # vs v1 on the same impl
    assert all(float(r[0]) > 0 and r[4].endswith("x") for r in rows.values())
