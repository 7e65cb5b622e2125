"""NAS-Bench-201 accuracy table: convert the official benchmark file once, then look up by join.

The official file (NAS-Bench-201-v1_1-096897.pth, 4.7 GB) needs the official API, tens of GB of
RAM and minutes to load. `convert` does that ONCE and writes a compact Parquet table with one row
per architecture; everything else (`load_table`, `lookup`) works on that table with pandas.

Table columns (accuracies in percent, mean over seeds, 200-epoch schedule, last epoch):

=================  ==================================================================
index              official NAS-Bench-201 architecture index (int)
arch               arch string, e.g. ``|nor_conv_3x3~0|+|...|+|...|``
cifar10_valid      dataset ``cifar10-valid`` (trained on the train half), x-valid
cifar10_test       dataset ``cifar10`` (trained on train+valid), ori-test
cifar100_valid     dataset ``cifar100``, x-valid
cifar100_test      dataset ``cifar100``, x-test
imagenet16_valid   dataset ``ImageNet16-120``, x-valid
imagenet16_test    dataset ``ImageNet16-120``, x-test
params             parameters in millions (``cifar10-valid`` compute costs); NaN if unknown
flops              FLOPs in millions (``cifar10-valid`` compute costs); NaN if unknown
=================  ==================================================================

A table may hold only some metric columns (the shared ``nb201_test_accuracy.parquet`` has no
200-epoch validation columns): `lookup` returns the ones present and never invents the others.

Cheap to import (pandas only); torch and ``nas_201_api`` (which imports torch) are imported inside
`convert`.
"""

from __future__ import annotations

import importlib
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ray_nas import store
from ray_nas.errors import first_line

#: Accuracy columns, in table order.
METRICS: tuple[str, ...] = (
    "cifar10_valid",
    "cifar10_test",
    "cifar100_valid",
    "cifar100_test",
    "imagenet16_valid",
    "imagenet16_test",
)

#: Compute-cost columns written by `convert` (millions of parameters / FLOPs).
COSTS: tuple[str, ...] = ("params", "flops")

#: Parquet key-value metadata key naming the benchmark file a table was converted from.
SOURCE_KEY = "ray_nas.benchmark_source"

#: column -> (dataset name in the official API, key of `get_more_info`'s result).
_SOURCES: dict[str, tuple[str, str]] = {
    "cifar10_valid": ("cifar10-valid", "valid-accuracy"),
    "cifar10_test": ("cifar10", "test-accuracy"),
    "cifar100_valid": ("cifar100", "valid-accuracy"),
    "cifar100_test": ("cifar100", "test-accuracy"),
    "imagenet16_valid": ("ImageNet16-120", "valid-accuracy"),
    "imagenet16_test": ("ImageNet16-120", "test-accuracy"),
}

_DEFAULT_METRIC: dict[str, str] = {
    "cifar10": "cifar10_test",
    "cifar100": "cifar100_test",
    "imagenet16-120": "imagenet16_test",
}


def default_metric(dataset: str) -> str | None:
    """The table column that scores a search on `dataset` (case-insensitive); None if there is none.

    >>> default_metric("cifar10"), default_metric("ImageNet16-120"), default_metric("mnist")
    ('cifar10_test', 'imagenet16_test', None)
    """
    return _DEFAULT_METRIC.get(str(dataset).lower())


# --------------------------------------------------------------------------------------------
# Conversion of the official file
# --------------------------------------------------------------------------------------------


class _SharedDict(dict):
    """A dict that `copy.deepcopy` returns as is.

    `NASBench201API(some_dict)` starts with `copy.deepcopy(some_dict)`, which for the official
    file doubles the peak memory (and takes minutes). The converter owns the loaded dict and
    drops it right after, so handing over the same objects is safe.
    """

    def __deepcopy__(self, memo):
        return self


def _load_official(pth_path: str, progress: Callable[[str], object]):
    """torch.load the trusted official file (unpickles it) and build the official API on it."""
    import torch  # heavy: only here
    from nas_201_api import NASBench201API  # imports torch at import time

    with open(pth_path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch zip, or a pickle
        raise ValueError(f"{pth_path} is not a NAS-Bench-201 file (not a torch.save file)")
    warnings.warn(
        f"unpickling {pth_path} with torch.load(weights_only=False): this can run arbitrary "
        "code; only convert the trusted official NAS-Bench-201 file",
        UserWarning,
        stacklevel=3,
    )
    t0 = time.monotonic()
    progress(f"nb201: loading {pth_path} (the official file takes minutes and ~25 GB of RAM)")
    try:
        data = torch.load(pth_path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - truncated, not a torch file, foreign pickle
        raise ValueError(
            f"{pth_path} is not a NAS-Bench-201 file (torch.load: {_first(e)})"
        ) from None
    if not isinstance(data, dict) or not {"meta_archs", "arch2infos"} <= set(data):
        what = (
            "a dict without meta_archs/arch2infos"
            if isinstance(data, dict)
            else f"a {type(data).__name__}"
        )
        raise ValueError(f"{pth_path} is not a NAS-Bench-201 file (holds {what})")
    progress(f"nb201: loaded in {time.monotonic() - t0:.0f}s; building the official API")
    try:
        api = NASBench201API(_SharedDict(data), verbose=False)
    except Exception as e:  # noqa: BLE001 - a file of another format or version
        raise ValueError(
            f"{pth_path}: the official API cannot read it ({type(e).__name__}: {_first(e)})"
        ) from None
    del data
    return api


def _first(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def convert(
    pth_path: str | Path,
    out_path: str | Path,
    progress: Callable[[str], object] | None = print,
    *,
    every: int = 1000,
) -> pd.DataFrame:
    """Convert the official NAS-Bench-201 file into the project's table and write it to `out_path`.

    `pth_path` is NAS-Bench-201-v1_1-096897.pth (or a file of the same format); it is unpickled
    with ``torch.load(weights_only=False)`` (a UserWarning says so): only pass a trusted file.
    One row per architecture of the file's ``meta_archs`` (official index order), with the
    columns described in the module docstring; values are what the official
    ``get_more_info(index, dataset, hp='200', is_random=False)`` gives (mean over seeds, last
    epoch). An architecture or dataset the file lacks gives NaN. `progress` gets a line every
    `every` architectures (None: silent). `out_path` (local path or URI) gets the table with
    metadata `SOURCE_KEY` = the file name. Returns the table.
    """
    pth_path = str(pth_path)
    if not Path(pth_path).is_file():
        raise FileNotFoundError(f"NAS-Bench-201 benchmark file not found: {pth_path}")
    problem = store.output_problem(str(out_path))
    if problem:
        raise ValueError(f"-o {out_path}: {problem}")
    say = progress if progress is not None else (lambda _msg: None)
    api = _load_official(pth_path, say)

    n = len(api)
    columns: dict[str, list] = {c: [] for c in ("index", "arch", *METRICS, *COSTS)}
    datasets = sorted({ds for ds, _ in _SOURCES.values()})
    unavailable: dict[str, int] = dict.fromkeys((*METRICS, *COSTS), 0)
    t0 = time.monotonic()
    say(f"nb201: reading {n} architectures ({len(api.evaluated_indexes)} evaluated)")
    for index in range(n):
        columns["index"].append(index)
        columns["arch"].append(api.meta_archs[index])
        infos = {ds: _more_info(api, index, ds) for ds in datasets}
        for col, (ds, key) in _SOURCES.items():
            value = infos[ds].get(key)
            if value is None:
                unavailable[col] += 1
                value = float("nan")
            columns[col].append(float(value))
        costs = _costs(api, index)
        for col in COSTS:
            value = costs.get(col)
            if value is None:
                unavailable[col] += 1
                value = float("nan")
            columns[col].append(float(value))
        done = index + 1
        if done % every == 0 or done == n:
            say(f"nb201: {done}/{n} architectures ({time.monotonic() - t0:.0f}s)")

    df = pd.DataFrame(columns)
    df["index"] = df["index"].astype("int64")
    for col in (*METRICS, *COSTS):
        df[col] = df[col].astype("float64")
    gaps = {c: k for c, k in unavailable.items() if k}
    if gaps:
        say(f"nb201: values not in the file (NaN): {gaps}")
    store.write_frame(df, str(out_path), metadata={SOURCE_KEY: Path(pth_path).name})
    say(f"nb201: wrote {len(df)} rows to {out_path}")
    return df


def _more_info(api, index: int, dataset: str) -> dict:
    """get_more_info(hp='200', mean over seeds), or {} when the file lacks that arch/dataset."""
    if index not in api.arch2infos_dict:
        return {}
    try:
        return api.get_more_info(index, dataset, iepoch=None, hp="200", is_random=False)
    except (KeyError, ValueError, AssertionError, ZeroDivisionError, TypeError):
        return {}


def _costs(api, index: int) -> dict:
    """params/flops (millions) from the 200-epoch cifar10-valid results, {} if not available.

    Reads `arch2infos_dict` directly: the API's get_cost_info deep-copies the whole ArchResults.
    """
    try:
        info = api.arch2infos_dict[index]["200"].get_compute_costs("cifar10-valid")
    except (KeyError, ValueError, AssertionError, ZeroDivisionError, TypeError):
        return {}
    return {"params": info.get("params"), "flops": info.get("flops")}


# --------------------------------------------------------------------------------------------
# Reading and looking up
# --------------------------------------------------------------------------------------------


#: `evaluate.benchmark` names of the tables shipped inside the package (ray_nas/tables/README.md)
BUILTIN_TABLES = {"nb201": "nb201_test_accuracy.parquet"}


def table_path(name: str | Path) -> str:
    """A built-in table's file (`nb201`: the compact test-accuracy table), else `name` itself."""
    if str(name) in BUILTIN_TABLES:
        from importlib.resources import files

        return str(files("ray_nas") / "tables" / BUILTIN_TABLES[str(name)])
    return str(name)


@dataclass(frozen=True)
class TableKind:
    """The benchmark tables keyed by one column (a space's `benchmark_key_column`)."""

    benchmark: str
    """the benchmark they come from"""
    make: str
    """how to make such a table (error messages)"""
    metrics: tuple[str, ...]
    """the `METRICS` such a table can hold"""
    adapt: str = ""
    """"module:function" turning a stored table into the offline stage's column names ("": as is)"""


#: key column -> the kind of tables keyed by it
TABLE_KINDS: dict[str, TableKind] = {
    "arch": TableKind(
        "NAS-Bench-201",
        "`ray-nas benchmark convert NAS-Bench-201-v1_1-096897.pth -o TABLE.parquet`, or "
        "evaluate.benchmark: nb201 (built in)",
        METRICS,
    ),
    "hash": TableKind(
        "NAS-Bench-101",
        "`ray-nas benchmark convert-nb101 nasbench_only108.tfrecord -o TABLE.parquet "
        "[--only-1shot1]`",
        ("cifar10_valid", "cifar10_test"),  # NAS-Bench-101 trained on CIFAR-10 only
        "ray_nas.tables.nb101:as_benchmark",
    ),
}


def load_table(path: str | Path, key: str = "arch") -> pd.DataFrame:
    """Read a benchmark table whose rows are keyed by column `key` (a space's
    `benchmark_key_column`): a built-in name (`nb201`), a local path or a URI.

    ``arch``: a NAS-Bench-201 table as is. ``hash``: a NAS-Bench-101 table
    (`ray_nas.tables.nb101`) with its columns under the pipeline's names
    (`nb101_table.as_benchmark`: ``cifar10_valid``, ``cifar10_test``, ``params`` in millions).
    Raises FileNotFoundError if `path` does not exist and ValueError if it cannot be read or has
    no `key` column (one line naming `path`, the column and how to make such a table).
    """
    if key not in TABLE_KINDS:
        raise ValueError(f"no benchmark table is keyed by {key!r}; known keys: {list(TABLE_KINDS)}")
    kind = TABLE_KINDS[key]
    df = read_table_file(table_path(path), kind.benchmark, key)
    if kind.adapt:
        module, _, function = kind.adapt.partition(":")
        df = getattr(importlib.import_module(module), function)(df)
    return df


def read_table_file(path: str, kind: str, key: str) -> pd.DataFrame:
    """A `kind` benchmark table (local path or URI) whose rows are keyed by column `key`;
    FileNotFoundError / ValueError, one line naming `path`, if missing, unreadable or keyless."""
    path = str(path)
    if not store.exists(path):
        raise FileNotFoundError(f"{kind} table not found: {path}")
    try:
        df = store.read_frame(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {kind} table {path}: {first_line(e)}") from e
    if key not in df.columns:
        how = f"; make one with {TABLE_KINDS[key].make}" if key in TABLE_KINDS else ""
        raise ValueError(
            f"{path} is not a {kind} table: no {key!r} column (columns: {list(df.columns)}){how}"
        )
    return df


def _arch_list(archs: Iterable[str]) -> list:
    if isinstance(archs, str):
        raise TypeError("archs must be a sequence of arch strings, not one string")
    return list(archs)


def lookup(table: pd.DataFrame, archs: Sequence[str], key: str = "arch") -> pd.DataFrame:
    """Rows of `table` for `archs`, by a left join on the key column `key` (a space's
    `benchmark_key_column`: ``arch`` for NAS-Bench-201, ``hash`` for NAS-Bench-101 tables read
    with `load_table(path, "hash")`); `archs` are the keys (`Space.benchmark_key` of each genotype).

    Returns one row per input key, in input order (duplicates kept), with columns `key`, then
    those of ``index``, `METRICS` and `COSTS` that `table` has: a metric the table lacks is NOT
    added (read it with ``row.get(col)`` / ``col in result``). ``index`` is nullable ``Int64``.
    A key that is not in the table gets ``<NA>`` index and NaN metrics (no error); list those
    with `missing_archs`. Raises ValueError if `table` has no `key` column or repeats a key.
    """
    archs = _arch_list(archs)
    if key not in table.columns:
        raise ValueError(f"benchmark table has no {key!r} column")
    cols = [key] + [c for c in ("index", *METRICS, *COSTS) if c in table.columns]
    right = table[cols].astype({key: "str"})
    if not right[key].is_unique:
        dup = right.loc[right[key].duplicated(), key].iloc[0]
        raise ValueError(f"benchmark table repeats {key} {dup!r}")
    left = pd.DataFrame({key: pd.Series(archs, dtype="str")})
    out = left.merge(right, on=key, how="left", sort=False)
    if "index" in out.columns:
        out["index"] = out["index"].astype("Int64")
    return out


def missing_archs(table: pd.DataFrame, archs: Sequence[str], key: str = "arch") -> list[str]:
    """The distinct `archs` (keys of column `key`; first-seen order) that have no row in `table`."""
    s = pd.Series(_arch_list(archs), dtype=object)
    absent = s[~s.isin(table[key])]
    return list(dict.fromkeys(absent))
