"""The benchmark scripts run (tiny sizes, not timed): what a user would paste from the README."""

import subprocess
import sys

import pytest

from .conftest import REPO, run_benchmark


def _run(command: str, *more: str) -> str:
    """stdout of `python benchmarks/<command> <more>` run from the repository (the command's
    words split on spaces), the script run as __main__ in a forked child of the test process
    (conftest.run_benchmark: no interpreter start-up); fails on a non-zero exit."""
    script, *args = command.split()
    return run_benchmark(script, *args, *more)


def _run_fresh(command: str) -> str:
    """As _run, in a fresh `python` process, as a user runs it."""
    script, *args = command.split()
    return subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout


def test_search_step_benchmark_prints_every_algorithm_on_both_impls():
    algorithms = ("darts_v1", "darts_v2", "gaea", "drnas")
    out = _run(
        "search_step.py --channels 4 --cells 1 --batch 4 --size 16 --steps 1 --threads 1 --algorithm",
        *algorithms,
    )
    rows = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line.split() and line.split()[0].split("/")[0] in algorithms
    }
    assert set(rows) == {f"{a}/{i}" for a in algorithms for i in ("reference", "fast")}
    for ms, images_per_s, ratio, _total, vs_v1 in rows.values():
        assert float(ms) > 0 and float(images_per_s) > 0 and ratio.endswith("x")
        assert vs_v1.endswith("x")
    assert rows["darts_v1/reference"][2] == "1.00x"  # the first trial is the baseline
    assert rows["darts_v1/fast"][4] == rows["darts_v1/reference"][4] == "1.00x"  # vs v1, same impl


def test_equivalence_script_reports_every_layout_and_impl():
    out = _run_fresh("equivalence.py --channels 4 --cells 1 --batch 4 --size 8 --seeds 1")
    rows = [line.split() for line in out.splitlines()[3:] if line.split()]
    assert {(r[0], r[1]) for r in rows} == {
        (layout, impl) for layout in ("nchw", "channels-last") for impl in ("reference", "fast")
    }
    errors = {(r[0], r[1]): [float(v) for v in r[2:]] for r in rows}
    # NCHW float32 sits at rounding level against float64 (both impls)
    assert all(0 < e < 1e-4 for impl in ("reference", "fast") for e in errors[("nchw", impl)])


def test_darts_space_step_benchmark_prints_ms_per_step():
    out = _run(
        "darts_space_step.py --channels 2 --layers 3 --batch 2 --size 8 --steps 1 --threads 1"
    )
    row = next(line.split() for line in out.splitlines() if line.startswith("ray_nas"))
    assert float(row[1]) > 0 and float(row[2]) > 0 and float(row[3]) > 0


def test_nb1shot1_step_benchmark_prints_ms_per_step_per_space():
    out = _run("nb1shot1_step.py --channels 2 --layers 3 --batch 2 --size 8 --steps 1 --threads 1")
    rows = [line.split() for line in out.splitlines() if line.startswith("nb1shot1_s")]
    assert [r[0] for r in rows] == ["nb1shot1_s1", "nb1shot1_s2", "nb1shot1_s3"]
    assert all(float(v) > 0 for r in rows for v in r[1:])


@pytest.mark.slow
def test_algorithm_step_benchmark_runs_on_1shot1_and_names_what_the_space_refuses():
    out = _run("algorithm_step.py --space nb1shot1_s2 --channels 2 --layers 3 --batch 2 --size 8 "
               "--steps 1 --warmup 0 --threads 1 --algorithm darts_v2 gdas snas")  # fmt: skip
    rows = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()[3:] if ln.strip()}
    assert float(rows["darts_v1"][0]) > 0 and rows["darts_v2"][1].endswith("x")
    assert float(rows["gdas"][0]) > 0 and rows["gdas"][1].endswith("x")  # nasbench-1shot1's GDAS
    assert (
        rows["snas"][0] == "skipped:" and "valid there: darts_v1, darts_v2, gdas, pc_darts" in out
    )
