"""NAS-Bench-101 accuracy table: convert the official record file once (no TensorFlow), then look
cells up by their graph hash.

The official files (``nasbench_only108.tfrecord``, ~499 MB; ``nasbench_full.tfrecord``, ~1.95 GB)
are TFRecord files: each record is an 8-byte little-endian length, the masked CRC32C of those 8
bytes, the payload, the masked CRC32C of the payload. A payload is the JSON list
``[hash, epochs, adjacency, ops, metrics]``: adjacency a row-major 0/1 string, ops comma-joined,
metrics a base64 ``ModelMetrics`` protobuf (``nasbench/lib/model_metrics.proto``), decoded here
by a small wire-format reader. Each (hash, epochs) has 3 records, one per training run.

Table columns (one row per hash; mean over the runs at 108 epochs, final evaluation):

================  =============================================================================
hash              NAS-Bench-101 key of the pruned cell (`ray_nas.spaces.nb101.spec_hash`), 32 hex chars
valid_accuracy    validation accuracy, percent
test_accuracy     test accuracy, percent
params            trainable parameters (int)
training_time     training time in seconds
runs              number of runs averaged (3 in the official files)
in_s1/2/3         bool, only with ``only_1shot1``: the cell is reachable from 1Shot1 space 1/2/3
================  =============================================================================

Cheap to import (pandas); the only Parquet access is through `ray_nas.store`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ray_nas import store
from ray_nas.spaces import nb1shot1, nb101
from ray_nas.tables import read_table_file

#: Parquet key-value metadata key naming the record file a table was converted from.
SOURCE_KEY = "ray_nas.benchmark_source"

#: The training length (epochs) the table keeps.
EPOCHS = 108

COLUMNS: tuple[str, ...] = (
    "hash",
    "valid_accuracy",
    "test_accuracy",
    "params",
    "training_time",
    "runs",
)

# --------------------------------------------------------------------------------------------
# TFRecord framing
# --------------------------------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data` (pure Python, ~12 MB/s)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum of `data`: CRC-32C rotated right by 15 bits plus 0xA282EAD8."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path: str | Path, *, check_crc: bool = True) -> Iterator[tuple[int, bytes]]:
    """(byte offset, payload) of every record of the TFRecord file `path`, in file order.

    With `check_crc` (the default) both checksums of every record are verified. Raises
    ValueError (one line naming the file and byte offset) on a checksum mismatch or a truncated
    record, FileNotFoundError if `path` does not exist.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"record file not found: {path}")
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(12)
            if not header:
                return
            what = "not a TFRecord file: " if offset == 0 else ""
            if len(header) < 12:
                raise ValueError(f"{path}: {what}truncated record header at byte {offset}")
            (length,) = struct.unpack("<Q", header[:8])
            if check_crc and struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
                raise ValueError(f"{path}: {what}length checksum mismatch at byte {offset}")
            payload = f.read(length)
            footer = f.read(4)
            if len(payload) < length or len(footer) < 4:
                raise ValueError(f"{path}: truncated record at byte {offset} (length {length})")
            if check_crc and struct.unpack("<I", footer)[0] != masked_crc32c(payload):
                raise ValueError(f"{path}: data checksum mismatch in the record at byte {offset}")
            yield offset, payload
            offset += 16 + length


# --------------------------------------------------------------------------------------------
# Protobuf wire format (ModelMetrics)
# --------------------------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of a serialized message: a varint or a
    fixed 64/32-bit value as an unsigned int, a length-delimited value as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise ValueError("truncated fixed-width field")
            value = int.from_bytes(buf[pos : pos + size], "little")
            pos += size
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated length-delimited field")
            value = bytes(buf[pos : pos + size])
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire} (field {number})")
        yield number, wire, value


def _double(wire: int, value, name: str) -> float:
    if wire != 1:
        raise ValueError(f"{name} is not a double (wire type {wire})")
    return struct.unpack("<d", value.to_bytes(8, "little"))[0]


_EVAL_FIELDS = {
    1: "current_epoch",
    2: "training_time",
    3: "train_accuracy",
    4: "validation_accuracy",
    5: "test_accuracy",
}


def decode_evaluation(data: bytes) -> dict[str, float]:
    """An ``EvaluationData`` message as {name: value} (doubles; ``checkpoint_path`` is skipped)."""
    out: dict[str, float] = {}
    for number, wire, value in _fields(data):
        if number in _EVAL_FIELDS:
            out[_EVAL_FIELDS[number]] = _double(wire, value, _EVAL_FIELDS[number])
    return out


def decode_model_metrics(data: bytes) -> dict:
    """A ``ModelMetrics`` message: {"evaluation_data": [dict, ...], "trainable_parameters": int,
    "total_time": float}. Raises ValueError if `data` is not such a message."""
    evals: list[dict[str, float]] = []
    out: dict = {"evaluation_data": evals, "trainable_parameters": 0, "total_time": 0.0}
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            evals.append(decode_evaluation(value))
        elif number == 2 and wire == 0:
            out["trainable_parameters"] = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 3:
            out["total_time"] = _double(wire, value, "total_time")
    return out


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One training run of one cell: its hash, training length, spec and metrics."""

    hash: str
    epochs: int
    matrix: nb101.Matrix
    ops: list[str]
    trainable_parameters: int
    total_time: float
    evaluations: list[dict[str, float]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        """The end-of-training evaluation (entry 2: 0 = initialisation, 1 = halfway)."""
        return self.evaluations[2]


def decode_record(payload: bytes) -> Record:
    """Decode one record payload; ValueError (one line, saying what is wrong) if it is not a
    NAS-Bench-101 record."""
    try:
        row = json.loads(payload.decode("utf-8"))
        module_hash, epochs, adjacency, ops, metrics = row
        if not (isinstance(module_hash, str) and len(module_hash) == 32):
            raise ValueError(f"bad hash {module_hash!r}")
        matrix = nb101.from_adjacency_string(adjacency)
        ops = nb101.check_ops(ops.split(","), len(matrix))
        decoded = decode_model_metrics(base64.b64decode(metrics, validate=True))
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, AttributeError) as e:
        raise ValueError(f"not a NAS-Bench-101 record ({type(e).__name__})") from None
    except (ValueError, binascii.Error) as e:
        raise ValueError(f"not a NAS-Bench-101 record ({e})") from None
    if len(decoded["evaluation_data"]) < 3:
        raise ValueError(
            f"not a NAS-Bench-101 record: {len(decoded['evaluation_data'])} evaluations, need 3"
        )
    return Record(
        hash=module_hash,
        epochs=int(epochs),
        matrix=matrix,
        ops=ops,
        trainable_parameters=int(decoded["trainable_parameters"]),
        total_time=float(decoded["total_time"]),
        evaluations=decoded["evaluation_data"],
    )


def iter_records(path: str | Path, *, check_crc: bool = True) -> Iterator[tuple[int, Record]]:
    """(byte offset, decoded record) of every record of the file; ValueError (one line naming the
    file and the byte offset) for a record that cannot be decoded."""
    for offset, payload in read_records(path, check_crc=check_crc):
        try:
            yield offset, decode_record(payload)
        except ValueError as e:
            raise ValueError(f"{path}: record at byte {offset}: {e}") from None


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


@dataclass
class _Sums:
    params: int
    valid: float = 0.0
    test: float = 0.0
    time: float = 0.0
    runs: int = 0


def _accumulate(sums: dict[str, _Sums], rec: Record) -> None:
    s = sums.get(rec.hash)
    if s is None:
        s = sums[rec.hash] = _Sums(params=rec.trainable_parameters)
    final = rec.final
    s.valid += final.get("validation_accuracy", float("nan"))
    s.test += final.get("test_accuracy", float("nan"))
    s.time += final.get("training_time", float("nan"))
    s.runs += 1


def _frame(sums: dict[str, _Sums]) -> pd.DataFrame:
    hashes = list(sums)
    vals = [sums[h] for h in hashes]
    df = pd.DataFrame(
        {
            "hash": pd.Series(hashes, dtype="str"),
            "valid_accuracy": [100.0 * s.valid / s.runs for s in vals],
            "test_accuracy": [100.0 * s.test / s.runs for s in vals],
            "params": pd.Series([s.params for s in vals], dtype="int64"),
            "training_time": [s.time / s.runs for s in vals],
            "runs": pd.Series([s.runs for s in vals], dtype="int32"),
        }
    )
    return df


def _space_hashes(names: Sequence[str], say: Callable[[str], object]) -> dict[str, frozenset[str]]:
    """{"in_s<k>": reachable hashes} of the named 1Shot1 spaces (ValueError for an unknown name)."""
    spaces = [nb1shot1.get_space(name) for name in names]
    out = {}
    for space in spaces:
        t0 = time.monotonic()
        hashes = out[f"in_s{space.number}"] = nb1shot1.reachable_hashes(space)
        say(f"nb101: {space.name}: {len(hashes)} distinct cells ({time.monotonic() - t0:.0f}s)")
    return out


def record_problem(rec: Record, cache: dict | None = None) -> str | None:
    """Why a record cannot go into the table, or None: its hash must be its cell's (the pruned
    spec's `spec_hash`), its cell inside the benchmark's space (`nb101.is_valid`), its final
    validation and test accuracies finite fractions in [0, 1] (the table's [0, 100] %).
    `cache`: (hash, cell) -> the cell's verdict, so each distinct cell is hashed once."""
    key = (rec.hash, tuple(map(tuple, rec.matrix)), tuple(rec.ops))
    cell = cache.get(key) if cache is not None else None
    if cell is None:
        try:
            pruned = nb101.prune(rec.matrix, rec.ops)  # is_valid and spec_hash, pruning once
            if pruned is None or (
                len(pruned[0]) > nb101.MAX_VERTICES or nb101.num_edges(pruned[0]) > nb101.MAX_EDGES
            ):
                cell = "its cell is not in the space (input and output not joined, or too big)"
            elif (own := nb101.hash_module(pruned[0], nb101.labels(pruned[1]))) != rec.hash:
                cell = f"its hash {rec.hash} is not its cell's ({own})"
            else:
                cell = ""
        except ValueError as e:
            cell = f"its cell is malformed ({e})"
        if cache is not None:
            cache[key] = cell
    if cell:
        return cell
    final = rec.final
    for name in ("validation_accuracy", "test_accuracy"):
        v = final.get(name, float("nan"))
        if not (0.0 <= v <= 1.0):  # NaN fails too
            return f"its {name} is {100.0 * v:g}% (not in [0, 100])"
    return None


#: (a word of record_problem's reason, the kind it is counted under)
_KINDS = (("hash", "hash not its cell's"), ("not in the space", "cell outside the space"),
          ("malformed", "malformed cell"), ("accuracy", "accuracy outside [0, 100]"))  # fmt: skip


def _read_sums(
    record_path: str, wanted: set[str] | None, say: Callable[[str], object], every: int
) -> dict[str, _Sums]:
    """Per-hash sums of the `EPOCHS`-epoch runs of the file (only `wanted` hashes if given);
    records that fail `record_problem` are left out and counted (the first few named)."""
    total = os.path.getsize(record_path)
    sums: dict[str, _Sums] = {}
    n = skipped = 0
    rejected: dict[str, int] = {}
    first: list[str] = []
    cache: dict = {}
    t0 = time.monotonic()
    for offset, rec in iter_records(record_path):
        n += 1
        if rec.epochs != EPOCHS or (wanted is not None and rec.hash not in wanted):
            skipped += 1
        elif why := record_problem(rec, cache):
            kind = next((k for w, k in _KINDS if w in why), "other")
            rejected[kind] = rejected.get(kind, 0) + 1
            if len(first) < 3:
                first.append(f"record at byte {offset}: {why}")
        else:
            _accumulate(sums, rec)
        if n % every == 0:
            pct = 100.0 * offset / max(total, 1)
            say(
                f"nb101: {n} records ({pct:.0f}% of {total / 1e6:.0f} MB, {time.monotonic() - t0:.0f}s)"
            )
    say(
        f"nb101: {n} records read in {time.monotonic() - t0:.0f}s; {len(sums)} cells kept, "
        f"{skipped} records skipped (other epochs or outside 1Shot1)"
    )
    if rejected:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items()))
        say(f"nb101: warning: {sum(rejected.values())} records rejected, not in the table "
            f"({kinds}); first: {'; '.join(first)}")  # fmt: skip
    return sums


def convert(
    record_path: str | Path,
    out_path: str | Path,
    *,
    only_1shot1: bool | Sequence[str] = False,
    progress: Callable[[str], object] | None = print,
    every: int = 200_000,
) -> pd.DataFrame:
    """Convert the official NAS-Bench-101 record file into the table and write it to `out_path`.

    Keeps the records trained for `EPOCHS` epochs (the full file also has 4, 12 and 36) and
    averages each hash's runs (module docstring). `only_1shot1`: keep only the cells reachable
    from the three NAS-Bench-1Shot1 spaces (enumerated, pruned, hashed; about a minute) and add
    ``in_s1..3``; a list of space names (``nb1shot1.SPACES``) keeps those spaces only.
    `progress` gets a line every `every` records (None: silent). The table is written once, at
    the end, atomically (an existing `out_path` is replaced only by a complete table), with
    metadata `SOURCE_KEY` = the file name. Raises FileNotFoundError / ValueError (one line) for a
    missing or malformed file, before anything is written. Returns the table.
    """
    say = progress if progress is not None else (lambda _msg: None)
    record_path = str(record_path)
    if not os.path.isfile(record_path):
        raise FileNotFoundError(f"NAS-Bench-101 record file not found: {record_path}")
    if os.path.abspath(str(out_path)) == os.path.abspath(record_path):
        raise ValueError(f"output {out_path} would overwrite the record file")
    if next(iter_records(record_path), None) is None:  # not a benchmark file: fails here, at once
        raise ValueError(f"{record_path}: no records (empty file)")
    if only_1shot1 is True:
        only_1shot1 = list(nb1shot1.SPACES)
    keep = _space_hashes(only_1shot1, say) if only_1shot1 else {}
    sums = _read_sums(record_path, set().union(*keep.values()) if keep else None, say, every)
    if not sums:
        where = " of the 1Shot1 spaces" if keep else ""
        raise ValueError(f"{record_path}: no {EPOCHS}-epoch records{where}; nothing written")
    df = _frame(sums)
    for col, hashes in keep.items():
        df[col] = df["hash"].isin(hashes)
    store.write_frame(df, str(out_path), metadata={SOURCE_KEY: Path(record_path).name})
    say(f"nb101: wrote {len(df)} rows to {out_path}")
    return df


# --------------------------------------------------------------------------------------------
# Reading and looking up
# --------------------------------------------------------------------------------------------


def load_table(path: str | Path) -> pd.DataFrame:
    """Read a NAS-Bench-101 table (local path or URI); FileNotFoundError / ValueError (one line
    naming `path`) if it is missing, unreadable or has no ``hash`` column."""
    return read_table_file(str(path), "NAS-Bench-101", "hash")


#: table column -> its name in the offline stage (`benchmark.METRICS`; NAS-Bench-101 is CIFAR-10
#: only: ``evaluate.metric`` cifar10_test, the default on cifar10, or cifar10_valid)
BENCHMARK_NAMES: dict[str, str] = {
    "valid_accuracy": "cifar10_valid",
    "test_accuracy": "cifar10_test",
}


def as_benchmark(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the offline stage reads it (`benchmark.load_table(path, "hash")`): the
    accuracy columns renamed by `BENCHMARK_NAMES` (percent) and ``params`` in millions (float,
    as NAS-Bench-201's); the other columns unchanged."""
    out = table.rename(columns=BENCHMARK_NAMES)
    if "params" in out.columns:
        out["params"] = out["params"].astype("float64") / 1e6
    return out


def lookup(table: pd.DataFrame, hashes: Sequence[str]) -> pd.DataFrame:
    """Rows of `table` for `hashes` (left join on ``hash``): one row per input hash, in input
    order, with the table's columns; a hash not in the table gets NaN metrics (``runs`` is
    nullable ``Int32``, ``params`` ``Int64``). Raises ValueError if the table repeats a hash."""
    if isinstance(hashes, str):
        raise TypeError("hashes must be a sequence of hashes, not one string")
    if not table["hash"].is_unique:
        raise ValueError("NAS-Bench-101 table repeats a hash")
    left = pd.DataFrame({"hash": pd.Series(list(hashes), dtype="str")})
    out = left.merge(table.astype({"hash": "str"}), on="hash", how="left", sort=False)
    for col, dtype in (("params", "Int64"), ("runs", "Int32")):
        if col in out.columns:
            out[col] = out[col].astype(dtype)
    return out


def lookup_cell(table: pd.DataFrame, matrix, ops: Sequence[str]) -> dict | None:
    """The table row (a dict) of the cell (matrix, ops) after pruning and hashing, or None if the
    cell is not in the table (or its input and output are not connected)."""
    key = nb101.spec_hash(matrix, ops)
    if key is None:
        return None
    rows = table.loc[table["hash"] == key]
    return None if rows.empty else rows.iloc[0].to_dict()
