"""The trajectory store: Parquet schemas, the trial writer, status files and the readers.

Layout under `{store}/{job}/` (docs/store.md, which lists every file and column): `epochs/run_id=<id>/`, `alphas/run_id=<id>/`,
`status/`, `trials.parquet`, `selections.parquet`. Files go through `store.fs` (atomic, local or
S3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from ray_nas.errors import first_line
from ray_nas.spaces import name_of
from ray_nas.store.fs import (
    _fs_path,
    exists,
    read_parquet_file,
    write_frame,
    write_table,
)

# ------------------------------------------------------------------------------------------
# the trajectory schema (the contract: docs/store.md, its `epochs` and `alphas` columns)

SCHEMA_VERSION = "2"  # 2: the nullable `concentration` column in alphas (1 lacks it; still read)
#: the version of a store with connection rows (NAS-Bench-1Shot1's; the others stay at 2)
CONNECTIONS_SCHEMA_VERSION = "3"
PART = "part-0.parquet"

EPOCHS_SCHEMA = pa.schema(
    [
        ("epoch", pa.int32()),  # 0 = before any update
        ("train_loss", pa.float64()),  # mean CE over the epoch's weight steps (NaN at epoch 0)
        ("train_acc", pa.float64()),  # percent
        ("valid_loss", pa.float64()),  # supernet on search-valid after the epoch
        ("valid_acc", pa.float64()),  # percent
        ("lr_weights", pa.float64()),  # lr of the epoch's last weight step
        ("lr_alpha", pa.float64()),  # 0 while alpha is frozen (warmup)
        (
            "hessian_eig",
            pa.float64(),
        ),  # dominant eigenvalue of the alpha Hessian; null if not computed
        ("seconds", pa.float64()),  # wall seconds of the epoch
        ("arch", pa.string()),  # NB201 arch string of the epoch's genotype
    ]
)

ALPHAS_SCHEMA = pa.schema(
    [
        ("epoch", pa.int32()),
        (
            "cell",
            pa.string(),
        ),  # "shared" (NAS-Bench-201: one alpha for all cells) | normal | reduce (DARTS)
        ("edge", pa.string()),  # "1<-0", ...: the space's edge order, per cell
        ("op", pa.string()),  # op name
        ("alpha", pa.float32()),  # the algorithm's raw parameter
        (
            "weight",
            pa.float32(),
        ),  # the op distribution it mixes with: rows of (epoch, cell, edge) sum to 1
        ("concentration", pa.float32()),  # DrNAS's Dirichlet concentration; null for the others
    ]
)
#: `cell` of the connection-weight rows (NAS-Bench-1Shot1): after each epoch's op rows, one row
#: per Space.connection_rows() entry, (cell, edge, op) = ("output", "out", source vertex "v<p>")
#: or ("inputs", target vertex "v<v>", source vertex "v<p>"); alpha = the raw parameter, weight =
#: its softmax over the sources of that (cell, edge); listed in the "ray_nas.connections" metadata
CONNECTION_CELLS = ("output", "inputs")
#: alphas columns an algorithm may leave null (algorithms.EXTRA_COLUMNS)
EXTRA_ALPHA_COLUMNS = ("concentration",)


def _with_extras(al: pa.Table) -> pa.Table:
    """Add the extra columns a schema-1 store lacks, as nulls."""
    for name in EXTRA_ALPHA_COLUMNS:
        if name not in al.column_names:
            al = al.append_column(name, pa.nulls(al.num_rows, pa.float32()))
    return al


def _extra_array(extras: dict[str, np.ndarray] | None, name: str, n: int) -> pa.Array:
    if extras and name in extras:
        return pa.array(np.asarray(extras[name], dtype=np.float32).reshape(-1))
    return pa.nulls(n, pa.float32())


STATUS_COLUMNS = (
    "run_id",
    "status",
    "epochs_done",
    "stop_epoch",
    "stop_reason",
    "error",
    "updated",
)


def trial_paths(job_dir: str, run_id: str) -> dict[str, str]:
    base = job_dir.rstrip("/")
    return {
        "epochs": f"{base}/epochs/run_id={run_id}/{PART}",
        "alphas": f"{base}/alphas/run_id={run_id}/{PART}",
        "status": f"{base}/status/run_id={run_id}/{PART}",
        "checkpoint": f"{base}/checkpoints/{run_id}.pt",
    }


class TrialWriter:
    """Accumulates a trial's epoch records and rewrites its two Parquet files after every epoch.

    One file per table per trial (`part-0.parquet`), replaced atomically, so a reader never sees a
    torn file and each epoch appears once. Resuming: `truncate(k)` keeps epochs <= k.
    """

    def __init__(
        self,
        job_dir: str,
        run_id: str,
        ops: tuple[str, ...],
        edges: tuple[str, ...],
        config_json: str,
        cells: tuple[str, ...] | None = None,
        connections: tuple[tuple[str, str, str], ...] = (),
    ):
        """edges: [E] the edge of each parameter row; cells: [E] its cell type (default shared);
        connections: [C] (cell, edge, op) of each connection-weight row (CONNECTION_CELLS)."""
        self.paths = trial_paths(job_dir, run_id)
        self.ops, self.edges = tuple(ops), tuple(edges)
        self.cells = tuple(cells) if cells is not None else ("shared",) * len(self.edges)
        self.connections = tuple(tuple(c) for c in connections)
        self.metadata = {
            "ray_nas.schema_version": SCHEMA_VERSION,
            "ray_nas.ops": json.dumps(list(self.ops)),
            "ray_nas.edges": json.dumps(list(self.edges)),
            "ray_nas.config": config_json,
            "ray_nas.run_id": run_id,
        }
        if self.connections:  # absent otherwise: the files of the other spaces are unchanged
            self.metadata["ray_nas.connections"] = json.dumps([list(c) for c in self.connections])
            self.metadata["ray_nas.schema_version"] = CONNECTIONS_SCHEMA_VERSION
        self.epochs: list[dict] = []
        self.alphas: list[pa.Table] = []

    def truncate(self, upto_epoch: int) -> None:
        """Load what is on disk and keep epochs <= upto_epoch (-1: start empty)."""
        self.epochs, self.alphas = [], []
        if upto_epoch < 0 or not exists(self.paths["epochs"]) or not exists(self.paths["alphas"]):
            return
        (fs, ep_path), (_, al_path) = _fs_path(self.paths["epochs"]), _fs_path(self.paths["alphas"])
        ep, al = read_parquet_file(ep_path, fs), read_parquet_file(al_path, fs)
        ep = ep.filter(pc.less_equal(ep["epoch"], upto_epoch)).select(EPOCHS_SCHEMA.names)
        al = _with_extras(al.filter(pc.less_equal(al["epoch"], upto_epoch)))
        al = al.select(ALPHAS_SCHEMA.names)
        self.epochs = ep.to_pylist()
        self.alphas = [al.cast(ALPHAS_SCHEMA)] if al.num_rows else []

    @property
    def last_epoch(self) -> int:
        return self.epochs[-1]["epoch"] if self.epochs else -1

    def append(self, rec) -> None:
        """Add one EpochRecord (see search.EpochRecord) and rewrite both files."""
        row = {name: getattr(rec, name) for name in EPOCHS_SCHEMA.names}
        self.epochs = [r for r in self.epochs if r["epoch"] < rec.epoch] + [row]
        e, k = len(self.edges), len(self.ops)
        self.alphas.append(
            pa.table(
                {
                    "epoch": pa.array(np.full(e * k, rec.epoch, dtype=np.int32)),
                    "cell": pa.array(np.repeat(np.array(self.cells, dtype=object), k).tolist()),
                    "edge": pa.array(np.repeat(np.array(self.edges, dtype=object), k).tolist()),
                    "op": pa.array(list(self.ops) * e),
                    "alpha": pa.array(np.asarray(rec.alpha, dtype=np.float32).reshape(-1)),
                    "weight": pa.array(np.asarray(rec.weights, dtype=np.float32).reshape(-1)),
                    **{
                        c: _extra_array(getattr(rec, "extras", None), c, e * k)
                        for c in EXTRA_ALPHA_COLUMNS
                    },
                },
                schema=ALPHAS_SCHEMA,
            )
        )
        if self.connections:
            conn = (rec.connection_alpha, rec.connection_weights)
            self.alphas.append(self._connection_table(np.full(1, rec.epoch), *conn))
        self.flush()

    def _connection_table(self, epochs: np.ndarray, alpha, weights) -> pa.Table:
        """The connection rows of `epochs` [N]: alpha, weights [N, C] (or [C] for one epoch)."""
        n, c = len(epochs), len(self.connections)
        alpha, weights = (np.asarray(a, dtype=np.float32).reshape(n, c) for a in (alpha, weights))
        cells, edges, ops = (list(col) * n for col in zip(*self.connections))
        return pa.table(
            {
                "epoch": pa.array(np.repeat(np.asarray(epochs, dtype=np.int32), c)),
                "cell": pa.array(cells, pa.string()),
                "edge": pa.array(edges, pa.string()),
                "op": pa.array(ops, pa.string()),
                "alpha": pa.array(alpha.reshape(-1)),
                "weight": pa.array(weights.reshape(-1)),
                **{name: pa.nulls(n * c, pa.float32()) for name in EXTRA_ALPHA_COLUMNS},
            },
            schema=ALPHAS_SCHEMA,
        )

    def trial_data(self) -> TrialData:
        """What is held in memory, as read_job would return it (the online stop's view)."""
        ep = pa.Table.from_pylist(self.epochs, schema=EPOCHS_SCHEMA)
        al = pa.concat_tables(self.alphas) if self.alphas else ALPHAS_SCHEMA.empty_table()
        meta = self.metadata
        return _trial_data(ep, al, self.ops, self.edges, meta["ray_nas.run_id"],
                           meta["ray_nas.config"], self.connections)  # fmt: skip

    def write_all(
        self,
        epoch_rows: list[dict],
        alpha: np.ndarray,
        weights: np.ndarray,
        connections: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Write a whole trajectory at once (synthetic stores, imports): alpha/weights [T+1, E, K];
        connections: (alpha, weights) [T+1, C] of the connection rows, when the writer has them."""
        n, e, k = alpha.shape
        if bool(self.connections) != (connections is not None):
            raise ValueError("write_all: connection weights go with connection rows, and only them")
        self.epochs = list(epoch_rows)
        self.alphas = [
            pa.table(
                {
                    "epoch": pa.array(np.repeat(np.arange(n, dtype=np.int32), e * k)),
                    "cell": pa.array(
                        np.tile(np.repeat(np.array(self.cells, dtype=object), k), n).tolist()
                    ),
                    "edge": pa.array(
                        np.tile(np.repeat(np.array(self.edges, dtype=object), k), n).tolist()
                    ),
                    "op": pa.array(np.tile(np.array(self.ops, dtype=object), n * e).tolist()),
                    "alpha": pa.array(alpha.astype(np.float32).reshape(-1)),
                    "weight": pa.array(weights.astype(np.float32).reshape(-1)),
                    **{c: pa.nulls(n * e * k, pa.float32()) for c in EXTRA_ALPHA_COLUMNS},
                },
                schema=ALPHAS_SCHEMA,
            )
        ]
        if connections is not None:  # per epoch: its op rows, then its connection rows
            conn = self._connection_table(np.arange(n), *connections)
            self.alphas = [_interleave(self.alphas[0], conn, n)]
        self.flush()

    def flush(self) -> None:
        ep = pa.Table.from_pylist(self.epochs, schema=EPOCHS_SCHEMA)
        al = pa.concat_tables(self.alphas) if self.alphas else ALPHAS_SCHEMA.empty_table()
        write_table(al, self.paths["alphas"], self.metadata)
        write_table(ep, self.paths["epochs"], self.metadata)


def _interleave(ops: pa.Table, conn: pa.Table, n: int) -> pa.Table:
    """Rows of epochs 0..n-1 in the stored order: each epoch's op rows, then its connection rows."""
    a, b = ops.num_rows // n, conn.num_rows // n
    parts = [t.slice(i * m, m) for i in range(n) for t, m in ((ops, a), (conn, b))]
    return pa.concat_tables(parts)


def write_status(job_dir: str, run_id: str, row: dict) -> None:
    """The trial's one-row status file (run_id, status, ..., resolved config as dotted columns)."""
    write_table(pa.Table.from_pylist([row]), trial_paths(job_dir, run_id)["status"])


def update_status(job_dir: str, run_id: str, **changes) -> dict | None:
    """The trial's status row with `changes` applied, rewritten (the row's values as written,
    not through pandas); None, and nothing written, when the trial has no readable status."""
    path = trial_paths(job_dir, run_id)["status"]
    try:
        fs, p = _fs_path(path)
        row = read_parquet_file(p, fs).to_pylist()[0]
    except Exception:  # noqa: BLE001 - missing or unreadable: nothing to update
        return None
    row.update(changes)
    write_status(job_dir, run_id, row)
    return row


def read_status(job_dir: str):
    """All trials' status rows as a DataFrame (empty if none)."""
    import pandas as pd

    path = f"{job_dir.rstrip('/')}/status"
    if not exists(path):
        return pd.DataFrame(columns=list(STATUS_COLUMNS))
    fs, p = _fs_path(path)
    frames = []
    for info in fs.get_file_info(pafs.FileSelector(p, recursive=True)):
        if info.type == pafs.FileType.File and info.base_name == PART:
            try:
                frames.append(
                    read_parquet_file(info.path, fs).to_pandas()
                )  # torn-free, as read_frame
            except (OSError, ValueError):  # a damaged status file: as if the trial had none
                continue  # (it resumes from its checkpoint, or restarts, and writes a new one)
    if not frames:
        return pd.DataFrame(columns=list(STATUS_COLUMNS))
    return pd.concat(frames, ignore_index=True).sort_values("run_id", ignore_index=True)


def consolidate_trials(job_dir: str, status=None):
    """Rewrite `{job}/trials.parquet` from the per-trial status files (or `status`, their rows
    as the caller already read them); returns the frame."""
    df = read_status(job_dir) if status is None else status
    write_frame(df, f"{job_dir.rstrip('/')}/trials.parquet")
    return df


# ------------------------------------------------------------------------------------------
# reading a whole job back


@dataclass
class TrialData:
    """One trial's stored trajectory, as arrays. T = last epoch; E edges; K ops."""

    run_id: str
    config: dict
    """the trial's resolved search config (from the file metadata)"""
    ops: tuple[str, ...]
    edges: tuple[str, ...]
    """[E] the edge of each parameter row"""
    epochs: dict[str, np.ndarray]
    """column -> [T+1] (epoch, train_loss, ..., hessian_eig NaN where null, arch as object)"""
    alpha: np.ndarray
    """float64 [T+1, E, K] raw logits (the store's readers hold the stored float32 values and
    widen them on each access: `stored_shape` is the shape without that copy)"""
    weights: np.ndarray
    """float64 [T+1, E, K] the op distribution (softmax(alpha) for DARTS; held as alpha)"""
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    """float64 [T+1, E, K] per extra alphas column the algorithm filled (e.g. concentration)"""
    cells: tuple[str, ...] = ()
    """[E] the cell type of each row (alphas.cell: shared | normal | reduce)"""
    connections: tuple[tuple[str, str, str], ...] = ()
    """[C] (cell, edge, op) of each connection-weight row (NAS-Bench-1Shot1; see CONNECTION_CELLS)"""
    connection_alpha: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """float64 [T+1, C] the raw connection parameters (empty without connection rows)"""
    connection_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """float64 [T+1, C] their softmax per (cell, edge), the weights the supernet used"""

    @property
    def space(self) -> str:
        """The trial's search space (ray_nas.spaces): its config's, nb201 in older stores."""
        return name_of(self.config)

    @property
    def stored_shape(self) -> tuple[int, int, int]:
        """(T+1, E, K): alpha's shape, without widening it."""
        return self.__dict__["_alpha"].shape

    def stored(self, name: str) -> np.ndarray:
        """`alpha` or `weights` as held (float32 where read from the store: the stored values)."""
        return self.__dict__[f"_{name}"]


def _widened(name: str) -> property:
    """A TrialData array held as given (float32 from the store: half the memory of float64) and
    returned as float64: the same values the float64 copy made at reading time held."""
    key = f"_{name}"

    def get(self) -> np.ndarray:
        a = self.__dict__[key]
        return a if a.dtype == np.float64 else a.astype(np.float64)

    def put(self, value) -> None:
        self.__dict__[key] = value

    return property(get, put, doc=f"float64 [T+1, E, K] {name} (TrialData's field)")


TrialData.alpha = _widened("alpha")  # type: ignore[assignment]
TrialData.weights = _widened("weights")  # type: ignore[assignment]


class MisplacedFileError(ValueError):
    """A trial's two trajectory files name different trials (ray_nas.run_id metadata)."""


def _read_trial(epochs_path: str, alphas_path: str, fs) -> TrialData:
    ep = read_parquet_file(epochs_path, fs)
    al = read_parquet_file(alphas_path, fs)
    meta = {k.decode(): v.decode() for k, v in (ep.schema.metadata or {}).items()}
    other = (al.schema.metadata or {}).get(b"ray_nas.run_id", b"").decode()
    if other and meta.get("ray_nas.run_id") and other != meta["ray_nas.run_id"]:
        raise MisplacedFileError(
            f"its epochs file is trial {meta['ray_nas.run_id']}'s but its alphas file is trial "
            f"{other}'s (ray_nas.run_id in the files' metadata)"
        )
    ops = tuple(json.loads(meta["ray_nas.ops"]))
    edges = tuple(json.loads(meta["ray_nas.edges"]))
    conn = tuple(tuple(c) for c in json.loads(meta.get("ray_nas.connections", "[]")))
    return _trial_data(ep, al, ops, edges, meta.get("ray_nas.run_id", ""),
                       meta.get("ray_nas.config", "{}"), conn)  # fmt: skip


def read_trial(job_dir: str, run_id: str) -> TrialData:
    """One trial's trajectory; raises (FileNotFoundError, OSError, ValueError, pyarrow errors) when
    a file is missing, truncated or the two files disagree."""
    paths = trial_paths(job_dir, run_id)
    fs, ep = _fs_path(paths["epochs"])
    return _read_trial(ep, _fs_path(paths["alphas"])[1], fs)


def _trial_data(
    ep: pa.Table, al: pa.Table, ops, edges, run_id: str, config_json: str, connections=()
) -> TrialData:
    """Check that the two tables hold epochs 0..T once each, in order, and turn them into arrays
    (per epoch the E*K op rows, then the C connection rows)."""
    e, k, c = len(edges), len(ops), len(connections)
    epochs = ep.column("epoch").to_numpy()
    n = len(epochs)
    if n == 0 or not np.array_equal(epochs, np.arange(n)):
        raise ValueError(f"epochs are not 0..T in order ({n} rows)")
    if al.num_rows != n * (e * k + c):
        plus = f" + {c} connection rows" if c else ""
        raise ValueError(
            f"alphas has {al.num_rows} rows, expected {n}x({e}x{k}{plus}) for epochs 0..{n - 1}"
        )
    a_ep = al.column("epoch").to_numpy()
    if not np.array_equal(a_ep, np.repeat(np.arange(n, dtype=a_ep.dtype), e * k + c)):
        raise ValueError("alphas epochs are not 0..T in order")
    conn_alpha, conn_weights = np.zeros((n, 0)), np.zeros((n, 0))
    if c:
        is_op = np.tile(np.arange(e * k + c) < e * k, n)
        conn = al.filter(pa.array(~is_op))
        if conn.column("cell").slice(0, c).to_pylist() != [x[0] for x in connections]:
            raise ValueError("alphas connection rows do not match the file's ray_nas.connections")
        conn_alpha, conn_weights = (
            conn.column(name).to_numpy().astype(np.float64).reshape(n, c)
            for name in ("alpha", "weight")
        )
        al = al.filter(pa.array(is_op))
    cols = {name: ep.column(name).to_numpy(zero_copy_only=False) for name in EPOCHS_SCHEMA.names}
    cols["hessian_eig"] = np.asarray(ep.column("hessian_eig").to_pandas(), dtype=np.float64)
    shape = (n, e, k)
    extras = {
        c: al.column(c).to_numpy(zero_copy_only=False).astype(np.float64).reshape(shape)
        for c in EXTRA_ALPHA_COLUMNS
        if c in al.column_names and al.column(c).null_count == 0 and al.num_rows
    }
    return TrialData(
        run_id=run_id,
        config=json.loads(config_json),
        ops=tuple(ops),
        edges=tuple(edges),
        epochs=cols,
        alpha=al.column("alpha").to_numpy().astype(np.float64).reshape(shape),
        weights=al.column("weight").to_numpy().astype(np.float64).reshape(shape),
        extras=extras,
        cells=tuple(al.column("cell").slice(0, e * k).to_pylist()[::k]),
        connections=tuple(tuple(x) for x in connections),
        connection_alpha=conn_alpha,
        connection_weights=conn_weights,
    )


def file_run_id(path: str) -> str | None:
    """The run_id a trajectory file was written for (its `ray_nas.run_id` metadata, read from the
    footer only), or None when the file does not name one (files written before it did)."""
    import pyarrow.parquet as pq

    fs, p = _fs_path(path)
    with fs.open_input_file(p) as f:
        meta = pq.ParquetFile(f).schema_arrow.metadata or {}
    rid = meta.get(b"ray_nas.run_id")
    return rid.decode() if rid else None


def list_run_ids(job_dir: str) -> list[str]:
    """run_ids that have an `epochs/` or `alphas/` partition under the job."""
    fs, p = _fs_path(job_dir.rstrip("/"))
    ids: set[str] = set()
    for table in ("epochs", "alphas"):
        info = fs.get_file_info(f"{p}/{table}")
        if info.type != pafs.FileType.Directory:
            continue
        for child in fs.get_file_info(pafs.FileSelector(f"{p}/{table}")):
            if child.type == pafs.FileType.Directory and child.base_name.startswith("run_id="):
                ids.add(child.base_name[len("run_id=") :])
    return sorted(ids)


def read_job_files(
    job_dir: str, threads: int = 4, run_ids: list[str] | None = None
) -> tuple[list[TrialData], dict[str, str]]:
    """`read_job` one trial at a time: each trial's two files read and checked on their own, in
    parallel (`run_ids`: those trials only; default every trial of the job)."""
    from concurrent.futures import ThreadPoolExecutor

    fs, _ = _fs_path(job_dir)

    def one(rid: str):
        paths = trial_paths(job_dir, rid)
        try:
            trial = _read_trial(_fs_path(paths["epochs"])[1], _fs_path(paths["alphas"])[1], fs)
        except MisplacedFileError as e:
            return rid, None, f"misplaced: {e}"
        except FileNotFoundError:
            missing = [t for t in ("epochs", "alphas") if not exists(paths[t])]
            return rid, None, f"missing {' and '.join(missing) or 'a'} file under {job_dir}"
        except Exception as e:  # unreadable or inconsistent: report, never crash the job
            return rid, None, f"unreadable: {type(e).__name__}: {first_line(e, 200)}"
        if trial.run_id and trial.run_id != rid:
            return rid, None, (f"its files belong to trial {trial.run_id} (ray_nas.run_id in "
                               "their metadata): misplaced")  # fmt: skip
        trial.run_id = trial.run_id or rid
        return rid, trial, None

    trials, problems = [], {}
    ids = list_run_ids(job_dir) if run_ids is None else run_ids
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for rid, trial, problem in pool.map(one, ids):
            if problem:
                problems[rid] = problem
            else:
                trials.append(trial)
    return trials, problems


#: trials read at most per chunk, and alphas rows (about): bound the memory of a chunk's tables
SCAN_CHUNK = 1024
SCAN_ROWS = 2_000_000


def scan_trials(
    job_dir: str,
    run_ids: list[str],
    present: dict[str, set[str] | dict] | None = None,
    threads: int = 4,
) -> tuple[list[TrialData], list[str]]:
    """The trials `run_ids` read as whole columns: their epochs and alphas files read `threads`
    at a time (columns projected; local or S3), concatenated, then checked and cut into trials
    with array operations, making the checks the per-file reader makes: both files name the
    trial (ray_nas.run_id), epochs 0..T once each in order, E x K alphas rows per epoch, the
    schema's columns and types. Returns (trials in run_id order, run_ids left to the per-file
    reader: a file missing, failing a check or unreadable, connection rows).
    present: {"epochs": run_ids with that file, "alphas": ...} when listed already.

    (One pyarrow.dataset scan of the same files took twice the CPU time of these reads: the
    dataset machinery costs more per small file than reading it.)"""
    fs, p = _fs_path(job_dir.rstrip("/"))
    if present is None:
        present = {kind: _listing(fs, f"{p}/{kind}")[1] for kind in ("epochs", "alphas")}
    ready = [r for r in run_ids if r in present["epochs"] and r in present["alphas"]]
    left = [r for r in run_ids if r not in present["epochs"] or r not in present["alphas"]]
    trials: list[TrialData] = []
    names: dict[str, str] = {}  # interned arch and cell texts across chunks
    c0, size = 0, min(SCAN_CHUNK, 64)  # the first chunk sizes the others (rows per trial)
    while c0 < len(ready):
        part = ready[c0 : c0 + size]
        try:
            got, bad = _scan_chunk(fs, p, part, names, threads)
        except Exception:  # noqa: BLE001 - a file the scan cannot read: the per-file reader says which
            got, bad = [], part
        trials += got
        left += bad
        c0 += len(part)
        rows = max([int(np.prod(t.stored_shape)) for t in got] or [1])
        size = min(SCAN_CHUNK, max(16, SCAN_ROWS // rows))
    return trials, sorted(left)


def _listing(fs, folder: str) -> tuple[set[str], dict[str, tuple[int, int]]]:
    """(run_ids with a `run_id=<id>` folder under `folder`, {run_id: (size, mtime in ns) of its
    part-0.parquet file} for those with one): one recursive listing (the stamps come with it;
    mtime -1 where the filesystem gives none)."""
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return set(), {}
    folders, files = set(), {}
    for info in fs.get_file_info(pafs.FileSelector(folder, recursive=True)):
        *_, parent, name = f"/{info.path}".rsplit("/", 2)
        if (
            info.type == pafs.FileType.Directory
            and name.startswith("run_id=")
            and (parent == folder.rstrip("/").rsplit("/", 1)[-1])
        ):
            folders.add(name[len("run_id=") :])
        elif info.type == pafs.FileType.File and name == PART and parent.startswith("run_id="):
            mtime = info.mtime_ns
            files[parent[len("run_id=") :]] = (int(info.size), -1 if mtime is None else int(mtime))
    return folders | set(files), files


def _read_files(fs, paths: list[str], want: pa.Schema, threads: int):
    """(table of `want`'s columns over the files in `paths` order, rows per file, schema per
    file): each file read through one open handle (footer and pages of one version of it, as
    read_parquet_file), `threads` at a time. A file that cannot be read, or whose columns are
    not `want`'s (EXTRA_ALPHA_COLUMNS may be absent: nulls), counts 0 rows and has schema None."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    names = want.names

    def one(path: str):
        try:
            with fs.open_input_file(path) as f:
                pf = pq.ParquetFile(f)
                schema = pf.schema_arrow
                table = pf.read(columns=[c for c in names if c in schema.names], use_threads=False)
        except Exception:  # noqa: BLE001 - the per-file reader says why
            return None, None
        for c in EXTRA_ALPHA_COLUMNS:
            if c in names and c not in table.column_names:
                table = table.append_column(
                    want.field(c), pa.nulls(table.num_rows, want.field(c).type)
                )
        table = table.replace_schema_metadata(None)
        if table.column_names != names or not table.schema.equals(want):
            return None, None
        return table, schema

    with ThreadPoolExecutor(max_workers=threads) as pool:
        got = list(pool.map(one, paths))
    tables = [t for t, _ in got if t is not None]
    rows = np.array([0 if t is None else t.num_rows for t, _ in got], dtype=np.int64)
    table = pa.concat_tables(tables) if tables else want.empty_table()
    return table, rows, [schema for _, schema in got]


def _strings(column, names: dict[str, str]) -> np.ndarray:
    """A string column (or dictionary-encoded) as an object array whose equal texts are one
    interned str each."""
    if isinstance(column, pa.ChunkedArray):
        if pa.types.is_dictionary(column.type):
            column = column.unify_dictionaries()
        column = column.combine_chunks()
    col = column
    if col.null_count:
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        return col.to_numpy(zero_copy_only=False)
    enc = col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col)
    uniq = np.array([names.setdefault(a, a) for a in enc.dictionary.to_pylist()], dtype=object)
    return uniq[enc.indices.to_numpy()] if len(uniq) else np.empty(0, dtype=object)


#: the alphas columns the offline stage reads (edge and op: their order is in the metadata)
_ALPHA_COLUMNS = ("epoch", "cell", "alpha", "weight", *EXTRA_ALPHA_COLUMNS)


def _scan_chunk(fs, base: str, run_ids: list[str], names: dict[str, str], threads: int):
    """scan_trials on one chunk of run_ids (each with both files)."""
    ep_paths = [f"{base}/epochs/run_id={r}/{PART}" for r in run_ids]
    al_paths = [f"{base}/alphas/run_id={r}/{PART}" for r in run_ids]
    ep, ep_rows, ep_schemas = _read_files(fs, ep_paths, EPOCHS_SCHEMA, threads)
    al_want = pa.schema([ALPHAS_SCHEMA.field(c) for c in _ALPHA_COLUMNS])
    al, al_rows, al_schemas = _read_files(fs, al_paths, al_want, threads)
    bad: list[str] = []
    json_cache: dict[bytes, tuple] = {}
    passed: list[tuple[pa.Schema, pa.Schema]] = []  # (epochs, alphas) schemas checked already

    def schemas_ok(es: pa.Schema, as_: pa.Schema) -> bool:
        for e, a in passed:
            if es.equals(e) and as_.equals(a):  # metadata aside
                return True
        if _schema_ok(es, EPOCHS_SCHEMA, ()) and _schema_ok(
            as_, ALPHAS_SCHEMA, EXTRA_ALPHA_COLUMNS
        ):
            passed.append((es, as_))
            return True
        return False

    def parsed(text: bytes) -> tuple:
        if text not in json_cache:
            json_cache[text] = tuple(
                tuple(x) if isinstance(x, list) else x for x in json.loads(text)
            )
        return json_cache[text]

    # per trial: its files' metadata, the shapes they promise, the schema checks
    shapes = []  # (i, rid, ops, edges, config, n, e, k) of the trials that pass
    for i, rid in enumerate(run_ids):
        es, as_ = ep_schemas[i], al_schemas[i]
        if es is None or as_ is None or not schemas_ok(es, as_):
            bad.append(rid)
            continue
        meta, other = es.metadata or {}, (as_.metadata or {}).get(b"ray_nas.run_id", b"")
        mine = meta.get(b"ray_nas.run_id", b"")
        if (other and mine and other != mine) or (mine and mine.decode() != rid):
            bad.append(rid)  # misplaced: the per-file reader says how
            continue
        if meta.get(b"ray_nas.connections", b"[]") != b"[]":
            bad.append(rid)  # connection rows: the per-file reader splits them
            continue
        try:
            ops, edges = parsed(meta[b"ray_nas.ops"]), parsed(meta[b"ray_nas.edges"])
        except (KeyError, ValueError, TypeError):
            bad.append(rid)
            continue
        n, e, k = int(ep_rows[i]), len(edges), len(ops)
        if n == 0 or e * k == 0 or al_rows[i] != n * e * k:
            bad.append(rid)
            continue
        shapes.append((i, rid, ops, edges, meta.get(b"ray_nas.config", b"{}"), n, e, k))
    trials, more = _cut_trials(ep, ep_rows, al, al_rows, shapes, names)
    return trials, bad + more


def _cut_trials(
    ep: pa.Table,
    ep_rows: np.ndarray,
    al: pa.Table,
    al_rows: np.ndarray,
    shapes: list[tuple],
    names: dict[str, str],
) -> tuple[list[TrialData], list[str]]:
    """The trials of `shapes` cut from the tables of a chunk: ep (EPOCHS_SCHEMA) and al
    (_ALPHA_COLUMNS) hold the chunk's files one after the other, ep_rows / al_rows [files] rows
    each; shapes: (file index, run_id, ops, edges, config: JSON or dict, n, e, k) of the files
    to cut (the others hold no rows or are skipped). Checks epochs 0..T in order in both tables
    (trials failing it are returned as the second element, by run_id)."""
    bad: list[str] = []
    if not shapes:
        return [], bad
    ep_start = np.concatenate([[0], np.cumsum(ep_rows)])
    al_start = np.concatenate([[0], np.cumsum(al_rows)])
    nfiles = len(ep_rows)
    # epochs 0..T in order in both files, checked for every trial at once
    ep_epoch = ep.column("epoch").to_numpy()
    al_epoch = al.column("epoch").to_numpy()
    idx = np.array([s[0] for s in shapes])
    per = np.ones(nfiles, dtype=np.int64)
    per[idx] = [s[6] * s[7] for s in shapes]
    ok = _epochs_in_order(ep_epoch, ep_rows, np.ones(nfiles, dtype=np.int64))[idx]
    ok &= _epochs_in_order(al_epoch, al_rows, per)[idx]
    cols = {}
    for name in EPOCHS_SCHEMA.names:
        if name == "arch":
            cols[name] = _strings(ep.column(name), names)
        elif name == "hessian_eig":
            cols[name] = np.asarray(ep.column(name).to_pandas(), dtype=np.float64)
        else:
            cols[name] = ep.column(name).to_numpy()
    alpha = al.column("alpha").to_numpy()  # float32 as stored: TrialData widens on access
    weight = al.column("weight").to_numpy()
    extras = {}
    for c in EXTRA_ALPHA_COLUMNS:
        if c in al.column_names and al.column(c).null_count < al.num_rows:
            col = al.column(c)
            extras[c] = (col.to_numpy(zero_copy_only=False).astype(np.float64),
                         col.is_null().to_numpy(zero_copy_only=False))  # fmt: skip
    # each trial's cells: the `cell` of its first epoch's rows, one per edge (every k-th row)
    firsts = [np.arange(al_start[s[0]], al_start[s[0]] + s[6] * s[7], s[7]) for s in shapes]
    texts = al.column("cell").take(pa.array(np.concatenate(firsts))).to_pylist()
    bounds = np.cumsum([0, *(s[6] for s in shapes)]).tolist()
    cells_of = [
        tuple(names.setdefault(x, x) for x in texts[a:b]) for a, b in zip(bounds, bounds[1:])
    ]
    trials = []
    for j, ((i, rid, ops, edges, config, n, e, k), good) in enumerate(zip(shapes, ok.tolist())):
        if not good:
            bad.append(rid)
            continue
        a0, a1, e0 = int(al_start[i]), int(al_start[i + 1]), int(ep_start[i])
        shape = (n, e, k)
        trial_extras = {
            c: values[a0:a1].reshape(shape)
            for c, (values, nulls) in extras.items()
            if a1 > a0 and not nulls[a0:a1].any()
        }
        cells = cells_of[j]
        trials.append(
            TrialData(
                run_id=rid,
                config=config if isinstance(config, dict) else _shared(json.loads(config), names),
                ops=tuple(ops),
                edges=tuple(edges),
                epochs={name: v[e0 : e0 + n] for name, v in cols.items()},
                alpha=alpha[a0:a1].reshape(shape),
                weights=weight[a0:a1].reshape(shape),
                extras=trial_extras,
                cells=cells,
                connections=(),
                connection_alpha=np.zeros((n, 0)),
                connection_weights=np.zeros((n, 0)),
            )
        )
    return trials, bad


def _shared(config: dict, names: dict) -> dict:
    """`config` whose top-level values equal to those of the first config read (kept in `names`)
    are that config's objects: a resolved config is ~9 KB of Python objects, most of it the same
    in every trial of a grid."""
    base = names.setdefault(("config",), config)
    if base is config:
        return config
    return {k: base[k] if k in base and _same(v, base[k]) else v for k, v in config.items()}


def _same(a, b) -> bool:
    """a and b are the same JSON value (types compared, not only values; dict order too)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _schema_ok(schema: pa.Schema, want: pa.Schema, optional: tuple[str, ...]) -> bool:
    """The file's columns have the types of `want` (those in `optional` may be absent)."""
    for f in want:
        i = schema.get_field_index(f.name)
        if i < 0:
            if f.name in optional:
                continue
            return False
        if schema.field(i).type != f.type:
            return False
    return True


def _epochs_in_order(epoch: np.ndarray, rows: np.ndarray, per: np.ndarray) -> np.ndarray:
    """[files] bool: file f's rows[f] rows of `epoch` (the files' rows one after the other) are
    per[f] rows of epoch 0, then per[f] of epoch 1, ... (False for a file without rows)."""
    if len(rows) and (rows == rows[0]).all() and (per == per[0]).all() and rows[0] % per[0] == 0:
        n, p = int(rows[0] // per[0]), int(per[0])  # every file alike: one comparison
        grid = epoch.reshape(len(rows), n, p)
        return (grid == np.arange(n, dtype=epoch.dtype)[None, :, None]).all(axis=(1, 2)) & (n > 0)
    f = np.repeat(np.arange(len(rows)), rows)
    start = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
    expected = (np.arange(len(epoch), dtype=np.int64) - start[f]) // per[f]
    wrong = np.bincount(f, weights=epoch != expected, minlength=len(rows))
    return (wrong == 0) & (rows > 0)
