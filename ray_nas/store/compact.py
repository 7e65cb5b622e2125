"""The compacted copy of a job's trajectories, `{job}/compact/`: its trials' epochs and alphas
rows in two Parquet files instead of two files per trial, read in their place.

    compact/index.parquet   one row per compacted trial: run_id, group (its row group in the
                            two files below), epochs (its T+1 epochs rows), ops, edges (JSON
                            texts, as its files' metadata), config (JSON: its top-level items
                            that differ from the copy's `base_config`, or with config_whole
                            the whole config), epochs_size, epochs_mtime_ns, alphas_size,
                            alphas_mtime_ns (its two files' size and modification time when
                            they were compacted)
    compact/epochs.parquet  the trials' epochs rows, one trial after the other (EPOCHS_SCHEMA)
    compact/alphas.parquet  their alphas rows: epoch, cell, alpha, weight, concentration (edge
                            and op are the rows' order in `edges` x `ops`, as in the trial files)

The per-trial files stay the source of truth. `read_job_state` lists them as before (size and
modification time come with that listing) and takes a trial from the copy only where both of its
files still have the size and time recorded there; every other trial (changed, resumed, redone,
new, or of NAS-Bench-1Shot1 with connection rows) is read from its own files. A copy that is
missing, truncated, unreadable or another job's is ignored (`JobRead.note` says why). The three
files carry one build id (`ray_nas.compact` metadata), so a copy half replaced is ignored too.
`write_compact` (the sweep's end, `ray-nas evaluate` when the copy is stale) writes all three
atomically (temp name + rename; S3: one PUT each), the index last.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ray_nas.errors import first_line
from ray_nas.store.fs import _fs_path, _removed_on_error
from ray_nas.store.trials import (
    _ALPHA_COLUMNS,
    ALPHAS_SCHEMA,
    EPOCHS_SCHEMA,
    EXTRA_ALPHA_COLUMNS,
    SCAN_CHUNK,
    SCAN_ROWS,
    TrialData,
    _cut_trials,
    _listing,
    _same,
    read_job_files,
    scan_trials,
)

COMPACT_DIR = "compact"
#: the metadata key of the three files: {"version", "build" (one id for the three), "job"}
COMPACT_KEY = b"ray_nas.compact"
COMPACT_VERSION = 1
#: a trial file modified less than this long before the listing is not compacted (a filesystem
#: whose times are coarse, S3's whole seconds, could give a rewrite the same size and time)
SETTLE_S = 2.0

INDEX_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("group", pa.int32()),
        ("epochs", pa.int32()),
        ("ops", pa.string()),
        ("edges", pa.string()),
        ("config", pa.string()),
        ("config_whole", pa.bool_()),
        ("epochs_size", pa.int64()),
        ("epochs_mtime_ns", pa.int64()),
        ("alphas_size", pa.int64()),
        ("alphas_mtime_ns", pa.int64()),
    ]
)
COMPACT_ALPHAS_SCHEMA = pa.schema([ALPHAS_SCHEMA.field(c) for c in _ALPHA_COLUMNS])
_SCHEMAS = {"index": INDEX_SCHEMA, "epochs": EPOCHS_SCHEMA, "alphas": COMPACT_ALPHAS_SCHEMA}
#: the string columns read dictionary-encoded (decoding them as strings is most of the read)
_DICTIONARY = {"epochs": ["arch"], "alphas": ["cell"]}

Stamps = dict[str, tuple[int, int]]


@dataclass
class JobRead:
    """What `read_job_state` read: the trials, and what `write_compact` needs to bring the
    compacted copy up to date."""

    job_dir: str
    trials: list[TrialData]
    """every readable trial, sorted by run_id"""
    problems: dict[str, str]
    """run_id -> why its trajectory could not be read"""
    stamps: dict[str, Stamps] = field(default_factory=dict)
    """"epochs" / "alphas" -> {run_id: (size, mtime in ns)} of the trial files as listed"""
    listed_at: float = 0.0
    """time.time() just before the listing"""
    compacted: int = 0
    """trials read from the compacted copy"""
    note: str | None = None
    """why the compacted copy was ignored (None: it was used, or there is none)"""
    stale: bool = False
    """whether write_compact would add trials the copy lacks (or replace a copy ignored)"""


def compact_paths(job_dir: str) -> dict[str, str]:
    base = f"{job_dir.rstrip('/')}/{COMPACT_DIR}"
    return {name: f"{base}/{name}.parquet" for name in ("index", "epochs", "alphas")}


def read_job(job_dir: str, threads: int = 4) -> tuple[list[TrialData], dict[str, str]]:
    """Every trial's trajectory under `job_dir`: its `epochs/` and `alphas/` files read as whole
    columns (`scan_trials`), with the per-file reader (`read_job_files`) for every trial the
    scan leaves (a file missing, unreadable or inconsistent: the problem is said as that reader
    says it; connection rows).

    Returns (trials sorted by run_id, problems: run_id -> why it was skipped) where problems are
    missing, partial or unreadable files. A trial whose two files are unchanged since the job's
    compacted copy was written (`store.compact`) is read from that copy instead.
    """
    state = read_job_state(job_dir, threads)
    return state.trials, state.problems


def read_job_state(job_dir: str, threads: int = 4) -> JobRead:
    """`store.read_job` (every trial's trajectory, the problems), telling which trials came from
    the compacted copy and whether it is stale."""
    fs, p = _fs_path(job_dir.rstrip("/"))
    listed_at = time.time()
    listed = {kind: _listing(fs, f"{p}/{kind}") for kind in ("epochs", "alphas")}
    ids = sorted(set().union(*(folders for folders, _ in listed.values())))
    stamps = {k: files for k, (_, files) in listed.items()}
    names: dict[str, str] = {}
    got, note, present = _read_compact(fs, p, stamps, names)
    served = {t.run_id for t in got}
    trials, left = scan_trials(job_dir, [r for r in ids if r not in served], stamps, threads)
    problems: dict[str, str] = {}
    if left:
        more, problems = read_job_files(job_dir, threads, left)
        trials += more
    eligible = _eligible(trials, stamps, listed_at, SETTLE_S)
    pa.default_memory_pool().release_unused()  # the chunks' freed buffers: back to the system
    trials = sorted([*got, *trials], key=lambda t: t.run_id)
    stale = bool(eligible) and (
        note is not None or not present or len(eligible) > len(trials) // 50
    )
    return JobRead(job_dir, trials, problems, stamps, listed_at, len(got), note, stale)


def _eligible(trials: list[TrialData], stamps: dict[str, Stamps], listed_at: float,
              settle: float) -> list[TrialData]:  # fmt: skip
    """The trials a compacted copy may hold: no connection rows, both files listed with a time,
    neither modified within `settle` seconds before the listing."""
    limit = int((listed_at - settle) * 1e9)
    ep, al = stamps.get("epochs", {}), stamps.get("alphas", {})
    out = []
    for t in trials:
        a, b = ep.get(t.run_id), al.get(t.run_id)
        if t.connections or a is None or b is None or min(a[1], b[1]) < 0 or (
                len(t.cells) != t.stored_shape[1]):  # fmt: skip
            continue
        if settle > 0 and max(a[1], b[1]) > limit:
            continue
        out.append(t)
    return out


class _Ignored(Exception):
    """The compacted copy cannot be used (the message says why)."""


def _meta(pf: pq.ParquetFile, name: str) -> dict:
    raw = (pf.schema_arrow.metadata or {}).get(COMPACT_KEY)
    if raw is None:
        raise _Ignored(f"{name}.parquet is not a compacted copy (no ray_nas.compact metadata)")
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise _Ignored(f"{name}.parquet: unreadable ray_nas.compact metadata") from e
    if not isinstance(meta, dict) or meta.get("version") != COMPACT_VERSION:
        raise _Ignored(f"{name}.parquet: compacted copy of another version "
                       f"({meta.get('version') if isinstance(meta, dict) else meta!r})")  # fmt: skip
    return meta


def _read_compact(fs, base: str, stamps: dict[str, Stamps], names: dict[str, str]):
    """(trials read from the copy: those whose files match their stamps, note (why the copy was
    ignored, or None), whether a copy is there)."""
    folder = f"{base}/{COMPACT_DIR}"
    paths = {k: f"{folder}/{k}.parquet" for k in ("index", "epochs", "alphas")}
    if fs.get_file_info(paths["index"]).type == pafs.FileType.NotFound:
        if fs.get_file_info(folder).type == pafs.FileType.NotFound:
            return [], None, False
        return [], f"{folder}: ignored (no index.parquet); rewritten by `ray-nas evaluate`", True
    try:
        with contextlib.ExitStack() as stack:
            pfs = {}
            for name, path in paths.items():
                try:
                    f = stack.enter_context(_open(fs, path))
                    pfs[name] = pq.ParquetFile(f, read_dictionary=_DICTIONARY.get(name))
                except FileNotFoundError as e:
                    raise _Ignored(f"{name}.parquet is missing") from e
                except Exception as e:  # noqa: BLE001 - truncated, not Parquet: said in the note
                    raise _Ignored(f"{name}.parquet is unreadable ({type(e).__name__}: "
                                   f"{first_line(e, 120)})") from e  # fmt: skip
            return _served(pfs, base, stamps, names), None, True
    except _Ignored as e:
        why = str(e)
    except Exception as e:  # noqa: BLE001 - a damaged copy is never trusted, never fatal
        why = f"unreadable ({type(e).__name__}: {first_line(e, 120)})"
    return [], f"{folder}: ignored ({why}); rewritten by `ray-nas evaluate`", True


def _open(fs, path: str):
    """The file for reading: memory-mapped when local (a third of the CPU time of reading it
    into buffers; the copy is only ever replaced by a rename, never rewritten in place)."""
    if isinstance(fs, pafs.LocalFileSystem):
        return pa.memory_map(path)
    return fs.open_input_file(path)


def _served(pfs: dict[str, pq.ParquetFile], base: str, stamps: dict[str, Stamps],
            names: dict[str, str]) -> list[TrialData]:  # fmt: skip
    metas = {name: _meta(pf, name) for name, pf in pfs.items()}
    job = base.rstrip("/").rsplit("/", 1)[-1]
    if metas["index"].get("job") != job:
        raise _Ignored(f"index.parquet is job {metas['index'].get('job')!r}'s copy, not {job!r}'s")
    if len({m.get("build") for m in metas.values()}) != 1:
        raise _Ignored("its three files are of different builds (one was replaced alone)")
    for name, pf in pfs.items():
        want = _SCHEMAS[name]
        for c in _DICTIONARY.get(name, []):
            i = want.get_field_index(c)
            want = want.set(i, pa.field(c, pa.dictionary(pa.int32(), want.field(c).type)))
        if not pf.schema_arrow.remove_metadata().equals(want):
            raise _Ignored(f"{name}.parquet has other columns than a compacted copy")
    index = pfs["index"].read(use_threads=False)
    rid = index.column("run_id").to_pylist()
    group = index.column("group").to_numpy()
    n = index.column("epochs").to_numpy().astype(np.int64)
    stamp = {c: index.column(c).to_numpy() for c in INDEX_SCHEMA.names[7:]}
    texts = {c: index.column(c).to_pylist() for c in ("ops", "edges", "config")}
    whole = index.column("config_whole").to_numpy(zero_copy_only=False)
    base = json.loads(metas["index"].get("base_config") or "{}")
    if not isinstance(base, dict):
        raise _Ignored("index.parquet: its base_config is not a config")

    def config(i: int) -> dict:  # the trial's config, its nested parts shared with the base's
        if whole[i]:
            return json.loads(texts["config"][i])
        d = base.copy()
        d.update(json.loads(texts["config"][i]))
        return d

    parsed: dict[str, tuple] = {}

    def tup(text: str) -> tuple:
        if text not in parsed:
            parsed[text] = tuple(json.loads(text))
        return parsed[text]

    ops = [tup(x) for x in texts["ops"]]
    edges = [tup(x) for x in texts["edges"]]
    rows = n * np.array([len(a) * len(b) for a, b in zip(ops, edges)], dtype=np.int64)
    groups = pfs["epochs"].num_row_groups
    if pfs["alphas"].num_row_groups != groups or (len(group) and (
            group.min() < 0 or group.max() >= groups or (np.diff(group) < 0).any())):  # fmt: skip
        raise _Ignored("its index does not match its row groups")
    for name, per in (("epochs", n), ("alphas", rows)):
        md = pfs[name].metadata
        want = np.bincount(group, weights=per, minlength=groups).astype(np.int64)
        have = np.array([md.row_group(g).num_rows for g in range(groups)], dtype=np.int64)
        if not np.array_equal(want, have):
            raise _Ignored(f"{name}.parquet's rows do not match its index")
    ep_st, al_st = stamps.get("epochs", {}), stamps.get("alphas", {})
    unset = (-2, -2)
    match = np.array(
        [ep_st.get(r, unset) == (s0, m0) and al_st.get(r, unset) == (s1, m1)
         for r, s0, m0, s1, m1 in zip(rid, *(stamp[c].tolist() for c in INDEX_SCHEMA.names[7:]))],
        dtype=bool,
    )  # fmt: skip
    out: list[TrialData] = []
    starts = np.searchsorted(group, np.arange(groups + 1))
    for g in range(groups):
        a, b = int(starts[g]), int(starts[g + 1])
        if not match[a:b].any():
            continue
        ep = pfs["epochs"].read_row_group(g, use_threads=False)
        al = pfs["alphas"].read_row_group(g, use_threads=False)
        shapes = [(i - a, rid[i], ops[i], edges[i], config(i), int(n[i]),
                   len(edges[i]), len(ops[i])) for i in range(a, b) if match[i]]  # fmt: skip
        got, _ = _cut_trials(ep.replace_schema_metadata(None), n[a:b],
                             al.replace_schema_metadata(None), rows[a:b], shapes, names)  # fmt: skip
        out += got  # a trial failing the cut's checks is read from its own files
    return out


def write_compact(state: JobRead, settle: float = SETTLE_S) -> int:
    """Write the compacted copy of `state`'s trials (those `_eligible`: no connection rows,
    files untouched for `settle` seconds before the listing; 0 at a sweep's end, every trial
    finished), replacing the job's copy; returns the trials written. Nothing is written, and an
    existing copy is kept, when no trial is eligible."""
    trials = _eligible(state.trials, state.stamps, state.listed_at, settle)
    if not trials:
        return 0
    paths = compact_paths(state.job_dir)
    job = state.job_dir.rstrip("/").rsplit("/", 1)[-1]
    base = trials[0].config
    meta = {COMPACT_KEY: json.dumps({"version": COMPACT_VERSION, "build": uuid.uuid4().hex,
                                     "job": job, "base_config": json.dumps(base)}).encode()}  # fmt: skip
    chunks, rows = [[]], 0
    for t in trials:
        r = int(np.prod(t.stored_shape))
        if chunks[-1] and (len(chunks[-1]) >= SCAN_CHUNK or rows + r > SCAN_ROWS):
            chunks.append([])
            rows = 0
        chunks[-1].append(t)
        rows += r
    ep_st, al_st = state.stamps["epochs"], state.stamps["alphas"]
    index = {name: [] for name in INDEX_SCHEMA.names}
    for g, chunk in enumerate(chunks):
        for t in chunk:
            index["run_id"].append(t.run_id)
            index["group"].append(g)
            index["epochs"].append(t.stored_shape[0])
            index["ops"].append(json.dumps(list(t.ops)))
            index["edges"].append(json.dumps(list(t.edges)))
            delta = _delta(t.config, base)
            index["config"].append(json.dumps(t.config if delta is None else delta))
            index["config_whole"].append(delta is None)
            for kind, st in (("epochs", ep_st), ("alphas", al_st)):
                index[f"{kind}_size"].append(st[t.run_id][0])
                index[f"{kind}_mtime_ns"].append(st[t.run_id][1])
    fs, _ = _fs_path(paths["index"])
    done: list[tuple[str, str]] = []
    try:
        for name, tables in (("alphas", map(_alphas_table, chunks)),
                             ("epochs", map(_epochs_table, chunks)),
                             ("index", [pa.table(index, schema=INDEX_SCHEMA)])):  # fmt: skip
            done.append(_write(fs, paths[name], _SCHEMAS[name].with_metadata(meta), tables))
        for tmp, final in done:
            if tmp != final:
                fs.move(tmp, final)  # the index last: until it names the new build, none is used
    finally:
        for tmp, final in done:
            if tmp != final:
                with contextlib.suppress(OSError):
                    if fs.get_file_info(tmp).type == pafs.FileType.File:
                        fs.delete_file(tmp)
    return len(trials)


def _delta(config: dict, base: dict) -> dict | None:
    """config's top-level items that differ from base's (1 and 1.0 differ, as in JSON), or None
    when its keys are not base's in base's order."""
    if len(config) != len(base) or list(config) != list(base):
        return None
    return {k: v for k, v in config.items() if not _same(v, base[k])}


def _write(fs, path: str, schema: pa.Schema, tables) -> tuple[str, str]:
    """Write `tables` (one row group each) to `path`'s temp name (local) or `path` (object
    stores: the upload appears whole when closed); returns (written, final)."""
    _, p = _fs_path(path)
    parent, name = p.rsplit("/", 1)
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp" if isinstance(fs, pafs.LocalFileSystem) else p
    with _removed_on_error(fs, tmp if tmp != p else None):
        with fs.open_output_stream(tmp) as f, pq.ParquetWriter(f, schema) as w:
            for table in tables:
                w.write_table(table.replace_schema_metadata(schema.metadata),
                              row_group_size=max(1, table.num_rows))  # fmt: skip
    return tmp, p


def _epochs_table(chunk: list[TrialData]) -> pa.Table:
    cols = {}
    for f in EPOCHS_SCHEMA:
        values = np.concatenate([t.epochs[f.name] for t in chunk])
        cols[f.name] = pa.array(values, f.type, from_pandas=f.name == "arch")
    return pa.table(cols, schema=EPOCHS_SCHEMA)


def _alphas_table(chunk: list[TrialData]) -> pa.Table:
    cells: dict[str, int] = {}
    epoch, cell, extra = [], [], {c: ([], []) for c in EXTRA_ALPHA_COLUMNS}
    for t in chunk:
        n, e, k = t.stored_shape
        epoch.append(np.repeat(np.arange(n, dtype=np.int32), e * k))
        codes = np.array([cells.setdefault(c, len(cells)) for c in t.cells], dtype=np.int32)
        cell.append(np.tile(np.repeat(codes, k), n))
        for c, (values, nulls) in extra.items():
            v = t.extras.get(c)
            values.append(np.zeros(n * e * k) if v is None else v.reshape(-1))
            nulls.append(np.full(n * e * k, v is None))
    cols = {
        "epoch": pa.array(np.concatenate(epoch)),
        "cell": pa.array(list(cells), pa.string()).take(pa.array(np.concatenate(cell))),
        **{
            col: pa.array(
                np.concatenate([t.stored(name).reshape(-1) for t in chunk]).astype(np.float32)
            )  # fmt: skip
            for col, name in (("alpha", "alpha"), ("weight", "weights"))
        },
    }
    for c, (values, nulls) in extra.items():
        cols[c] = pa.array(np.concatenate(values).astype(np.float32), mask=np.concatenate(nulls))
    return pa.table(cols, schema=COMPACT_ALPHAS_SCHEMA)
