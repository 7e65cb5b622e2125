"""ray_nas.tables: converting the official NAS-Bench-201 file, loading tables, lookups."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from ray_nas import store
from ray_nas import tables as benchmark
from ray_nas.spaces.nb201 import arch_string

SHARED = Path(__file__).parents[2] / "shared"
SHARED_TABLE = SHARED / "data" / "nb201" / "nb201_test_accuracy.parquet"

ALL_SKIP = arch_string(["skip_connect"] * 6)
ALL_CONV3 = arch_string(["nor_conv_3x3"] * 6)
MIXED = arch_string(
    ["nor_conv_3x3", "nor_conv_1x1", "skip_connect", "avg_pool_3x3", "none", "nor_conv_3x3"]
)
UNKNOWN = "|bogus~0|+|bogus~0|bogus~1|+|bogus~0|bogus~1|bogus~2|"

# The eval sets each dataset has in the official file.
EVAL_SETS = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("ori-test", "x-valid", "x-test"),
    "ImageNet16-120": ("ori-test", "x-valid", "x-test"),
}


# --------------------------------------------------------------------------------------------
# A tiny file in the official format, built with the official API's own classes
# --------------------------------------------------------------------------------------------


def _result(dataset, seed, arch, finals, epochs, params, flop):
    """A ResultsCount built the way the benchmark's collection script builds one (new version).

    `finals` maps an eval set to its last-epoch accuracy; earlier epochs are lower.
    """
    from nas_201_api import ResultsCount

    train_acc = {e: 50.0 + e for e in range(epochs)}
    train_loss = {e: 2.0 - 0.1 * e for e in range(epochs)}
    config = {"channel": 16, "num_cells": 5, "arch_str": arch, "class_num": 10}
    r = ResultsCount(dataset, None, train_acc, train_loss, params, flop, config, seed, epochs, None)
    r.update_train_info(train_acc, dict(train_acc), train_loss, {e: 1.0 for e in range(epochs)})
    accs, losses, times = {}, {}, {}
    for name in EVAL_SETS[dataset]:
        for e in range(epochs):
            key = f"{name}@{e}"
            accs[key] = finals[name] - (epochs - 1 - e)  # NOT the final value before the last epoch
            losses[key] = 1.0
            times[key] = 0.5
    r.update_eval(accs, losses, times)
    r.update_latency([0.01])
    return r


def _arch_results(index, arch, runs, epochs):
    """ArchResults from {(dataset, seed): (finals, params, flop)}, weights cleared as in the file."""
    from nas_201_api import ArchResults

    info = ArchResults(index, arch)
    for (dataset, seed), (finals, params, flop) in runs.items():
        info.update(dataset, seed, _result(dataset, seed, arch, finals, epochs, params, flop))
    info.clear_params()
    return info


def _finals(base):
    """Per-dataset last-epoch accuracies derived from one number, distinct per set."""
    return {
        "cifar10-valid": {"x-valid": base + 0.1, "ori-test": base + 0.2},
        "cifar10": {"ori-test": base + 0.3},
        "cifar100": {"ori-test": base - 20.1, "x-valid": base - 20.2, "x-test": base - 20.3},
        "ImageNet16-120": {"ori-test": base - 40.1, "x-valid": base - 40.2, "x-test": base - 40.3},
    }


#: arch index -> (arch, {seed: base accuracy}, datasets present, params, flops)
SPEC = {
    0: (MIXED, {777: 80.0, 888: 82.0}, tuple(EVAL_SETS), 0.5, 70.0),
    1: (ALL_SKIP, {777: 54.0}, tuple(EVAL_SETS), 0.07, 15.6),
    2: (ALL_CONV3, {777: 93.0, 888: 94.0}, ("cifar10-valid", "cifar10", "cifar100"), 1.5, 200.0),
}


def _expected(index):
    """The table row `convert` must produce for SPEC[index] (mean over seeds of the last epoch)."""
    arch, seeds, datasets, params, flops = SPEC[index]

    def mean(dataset, setname):
        if dataset not in datasets:
            return math.nan
        return sum(_finals(b)[dataset][setname] for b in seeds.values()) / len(seeds)

    return {
        "index": index,
        "arch": arch,
        "cifar10_valid": mean("cifar10-valid", "x-valid"),
        "cifar10_test": mean("cifar10", "ori-test"),
        "cifar100_valid": mean("cifar100", "x-valid"),
        "cifar100_test": mean("cifar100", "x-test"),
        "imagenet16_valid": mean("ImageNet16-120", "x-valid"),
        "imagenet16_test": mean("ImageNet16-120", "x-test"),
        "params": params,
        "flops": flops,
    }


@pytest.fixture(scope="module")
def official_pth(tmp_path_factory):
    """A 3-architecture file with the official layout (see the benchmark's merge script)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("nas_201_api")
    arch2infos = {}
    for index, (arch, seeds, datasets, params, flops) in SPEC.items():
        full = {
            (ds, seed): (_finals(base)[ds], params, flops)
            for seed, base in seeds.items()
            for ds in datasets
        }
        less = {("cifar10-valid", 777): (_finals(30.0)["cifar10-valid"], params, flops)}
        arch2infos[index] = {
            "full": _arch_results(index, arch, full, epochs=4).state_dict(),
            "less": _arch_results(index, arch, less, epochs=2).state_dict(),
        }
    data = {
        "meta_archs": [SPEC[i][0] for i in sorted(SPEC)],
        "total_archs": len(SPEC),
        "arch2infos": arch2infos,
        "evaluated_indexes": sorted(arch2infos),
    }
    path = tmp_path_factory.mktemp("nb201") / "NAS-Bench-201-v1_1-096897.pth"
    torch.save(data, path)
    return path


# --------------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------------


def test_convert_official_format(official_pth, tmp_path):
    out = tmp_path / "nb201.parquet"
    lines: list[str] = []
    with pytest.warns(UserWarning, match="weights_only=False"):
        df = benchmark.convert(official_pth, out, progress=lines.append, every=2)

    assert list(df.columns) == ["index", "arch", *benchmark.METRICS, *benchmark.COSTS]
    assert df["index"].dtype == "int64"
    expected = pd.DataFrame([_expected(i) for i in sorted(SPEC)])
    pd.testing.assert_frame_equal(df, expected, check_dtype=False, check_exact=False)
    # the mean over two seeds, last epoch, from the right dataset/eval set
    assert df.loc[0, "cifar10_test"] == pytest.approx(81.3)
    assert df.loc[0, "cifar10_valid"] == pytest.approx(81.1)
    assert df.loc[2, ["imagenet16_valid", "imagenet16_test"]].isna().all()

    assert any("2/3" in line for line in lines) and any("3/3" in line for line in lines)
    assert any("imagenet16_test" in line for line in lines)  # the NaN gaps are reported

    back = benchmark.load_table(out)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    import pyarrow.parquet as pq  # the test inspects the file's metadata directly

    meta = pq.read_schema(out).metadata
    assert meta[benchmark.SOURCE_KEY.encode()] == b"NAS-Bench-201-v1_1-096897.pth"


def test_convert_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        benchmark.convert(tmp_path / "nope.pth", tmp_path / "out.parquet", progress=None)


# --------------------------------------------------------------------------------------------
# load_table / lookup / missing_archs / default_metric
# --------------------------------------------------------------------------------------------


def _small_table():
    """A test-accuracy-only table (no valid columns), like the shared one."""
    return pd.DataFrame(
        {
            "index": [5, 7],
            "arch": [ALL_SKIP, ALL_CONV3],
            "cifar10_test": [54.3, 93.76],
            "cifar100_test": [15.61, 71.11],
            "imagenet16_test": [16.32, 41.44],
            "cifar10_test_12ep": [36.8, 82.2],
        }
    )


def test_lookup_join_unknown_and_missing_columns():
    table = _small_table()
    archs = [ALL_CONV3, UNKNOWN, ALL_SKIP, ALL_CONV3, "not an arch"]
    res = benchmark.lookup(table, archs)
    assert list(res["arch"]) == archs
    assert list(res.columns) == [
        "arch",
        "index",
        "cifar10_test",
        "cifar100_test",
        "imagenet16_test",
    ]
    assert "cifar10_valid" not in res.columns  # not invented
    assert res["index"].dtype == "Int64"
    assert res["index"].tolist()[0] == 7 and res["index"].tolist()[2] == 5
    assert res["cifar10_test"].tolist()[3] == 93.76
    assert res.loc[[1, 4], "cifar10_test"].isna().all()
    assert res.loc[[1, 4], "index"].isna().all()
    assert benchmark.missing_archs(table, archs) == [UNKNOWN, "not an arch"]
    assert benchmark.missing_archs(table, [ALL_SKIP]) == []
    assert benchmark.lookup(table, []).empty


def test_lookup_rejects_bad_input():
    table = _small_table()
    with pytest.raises(TypeError):
        benchmark.lookup(table, ALL_SKIP)
    with pytest.raises(ValueError, match="repeats arch"):
        benchmark.lookup(pd.concat([table, table]), [ALL_SKIP])


def test_load_table_errors(tmp_path):
    missing = tmp_path / "absent.parquet"
    with pytest.raises(FileNotFoundError, match="absent.parquet"):
        benchmark.load_table(missing)
    no_arch = tmp_path / "no_arch.parquet"
    store.write_frame(pd.DataFrame({"index": [0], "cifar10_test": [1.0]}), str(no_arch))
    with pytest.raises(ValueError, match="no_arch.parquet.*'arch'"):
        benchmark.load_table(no_arch)


def test_default_metric():
    assert benchmark.default_metric("cifar10") == "cifar10_test"
    assert benchmark.default_metric("cifar100") == "cifar100_test"
    assert benchmark.default_metric("ImageNet16-120") == "imagenet16_test"
    assert benchmark.default_metric("imagenet16-120") == "imagenet16_test"
    assert benchmark.default_metric("mnist") is None
    assert set(benchmark._DEFAULT_METRIC.values()) <= set(benchmark.METRICS)


# --------------------------------------------------------------------------------------------
# The shared table (../shared/data/nb201), read in place
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_table():
    if not SHARED_TABLE.exists():
        pytest.skip(f"shared NAS-Bench-201 table not found at {SHARED_TABLE} (../shared absent)")
    return benchmark.load_table(SHARED_TABLE)


def test_shared_table_anchors(shared_table):
    assert len(shared_table) == 15625
    res = benchmark.lookup(shared_table, [ALL_SKIP, UNKNOWN])
    skip = res.iloc[0]
    assert skip["index"] == 1835
    assert [round(skip[c], 2) for c in ("cifar10_test", "cifar100_test", "imagenet16_test")] == [
        54.30,
        15.61,
        16.32,
    ]
    # test columns only: the valid ones are absent, not invented; callers use .get
    assert skip.get("cifar10_valid") is None
    assert res.iloc[1][["cifar10_test", "cifar100_test", "imagenet16_test"]].isna().all()
    assert benchmark.missing_archs(shared_table, [ALL_SKIP, UNKNOWN]) == [UNKNOWN]

    arch_1462 = shared_table.loc[shared_table["index"] == 1462, "arch"].item()
    assert arch_1462 == ALL_CONV3
    assert round(benchmark.lookup(shared_table, [arch_1462])["cifar10_test"].item(), 2) == 93.76


def test_builtin_nb201_table_ships_in_the_package(tmp_path):
    """`evaluate.benchmark: nb201` is the packaged compact table (no conversion needed)."""
    from ray_nas.tables import BUILTIN_TABLES, load_table, lookup, table_path

    assert table_path("nb201").endswith("ray_nas/tables/nb201_test_accuracy.parquet")
    table = load_table("nb201")
    assert len(table) == 15625
    skip = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    assert round(float(lookup(table, [skip])["cifar10_test"].iloc[0]), 2) == 54.30
    # packaged: pyproject's package-data covers it, so a wheel carries it
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["ray_nas"]
    assert "tables/*.parquet" in data and BUILTIN_TABLES["nb201"].endswith(".parquet")
