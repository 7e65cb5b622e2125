"""The criteria over many trials at once: `apply_many` stacks the trials of one space, op set,
rows and length into arrays [trials, epochs, rows, ops] and runs each built-in criterion on the
whole stack with numpy, with results identical to the per-trial functions of builtin.py (the
reference: `tests/test_criteria_batch.py` compares both on the golden store and on thousands of
random trajectories). A criterion named by import path, and any case the stacked code does not
cover (an op or cell the search lacks, a trajectory of epoch 0 only, no benchmark scores), runs
per trial through `CriterionSpec.apply`, as before.

Each stacked function takes a `Batch` and the criterion's parameters and returns, per trial of
the batch, (epoch, fired, note), the same values the per-trial function's StopResult holds; the
arch is the one recorded at that epoch. Every trial is cut to its finite prefix first (the epochs
before its alpha or weights held NaN or inf), as `apply_checked` does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ray_nas import spaces
from ray_nas.criteria.builtin import _PAPER_ES, _skip_count, _space, magnitude_cells
from ray_nas.criteria.trajectory import _TIE_RTOL, from_trial
from ray_nas.errors import CriterionError

#: metrics_of(space, archs) -> {metric: [len(archs)] benchmark score of each arch text, NaN where
#: unknown}: the per-epoch scores the oracle reads (`Trajectory.metrics`)
MetricsOf = Callable[[str, Sequence[str]], dict[str, np.ndarray]]

#: trials stacked at most per batch, and values of alpha (about): bound the stacked arrays' memory
CHUNK = 1024
CHUNK_VALUES = 2_000_000


@dataclass
class Batch:
    """Trials of one space, op set, rows and last epoch T (after their finite prefix), stacked.
    N trials; arrays are float64 like a Trajectory's."""

    space: str
    ops: tuple[str, ...]
    cells: tuple[str, ...]
    """[E] the cell type of each row, resolved as Trajectory resolves it"""
    alpha: np.ndarray
    """[N, T+1, E, K]"""
    weights: np.ndarray
    """[N, T+1, E, K]"""
    archs: np.ndarray
    """[N, T+1] object: the arch text of each epoch"""
    valid_acc: np.ndarray
    """[N, T+1]"""
    hessian_eig: np.ndarray
    """[N, T+1]"""
    metrics: dict[str, np.ndarray]
    """{metric: [N, T+1]}"""

    @property
    def n(self) -> int:
        return self.alpha.shape[0]

    @property
    def last_epoch(self) -> int:
        return self.alpha.shape[1] - 1

    @functools.cached_property
    def arch_codes(self) -> tuple[np.ndarray, list[str]]:
        """(codes [N, T+1] into uniques, the distinct arch texts)."""
        return _factorize(self.archs)


def _factorize(archs: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(codes [same shape] into uniques, uniques) of an object array of texts: by object
    identity first (the store's reader gives one str per distinct text), then by value."""
    flat = archs.ravel()
    ids = np.fromiter(map(id, flat), np.int64, len(flat))
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    seen: dict[str, int] = {}
    code_of = np.fromiter((seen.setdefault(a, len(seen)) for a in flat[first]), np.intp, len(first))
    return code_of[inverse].reshape(archs.shape), list(seen)


class Outcome:
    """What a stacked criterion returns for the N trials of a batch: epoch [N] int, fired [N]
    bool, note [N] object (str)."""

    def __init__(self, n: int, last: int):
        self.last = last
        self.epoch = np.full(n, last, dtype=np.int64)
        self.fired = np.zeros(n, dtype=bool)
        self.note = np.full(n, "", dtype=object)

    def stop(self, rows: np.ndarray, epochs: np.ndarray, note: Any = "") -> None:
        """Fired at `epochs` on `rows` (bool mask [N]), with `note`."""
        self.epoch[rows] = epochs[rows]
        self.fired[rows] = True
        self.note[rows] = note[rows] if isinstance(note, np.ndarray) else note

    def no_stop(self, rows: np.ndarray, note: Any) -> None:
        """Not fired on `rows`: epoch T, `note` (a str, or an object array [N])."""
        self.fired[rows] = False
        self.epoch[rows] = self.last
        self.note[rows] = note[rows] if isinstance(note, np.ndarray) else note


def _best_epochs(
    scores: np.ndarray, eligible: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """trajectory._best_epoch per row of `scores` [N, T+1]: (epoch [N], found [N] bool); the
    epoch is meaningless where not found."""
    ok = np.isfinite(scores)
    ok[:, 0] = False
    if eligible is not None:
        ok &= eligible
    found = ok.any(axis=1)
    best = np.where(ok, scores, -np.inf).max(axis=1)
    best = np.where(found, best, 0.0)
    near = ok & (scores >= (best - _TIE_RTOL * np.maximum(1.0, np.abs(best)))[:, None])
    return near.argmax(axis=1), found


# ---------------------------------------------------------------- the built-ins, stacked


def _final(b: Batch) -> Outcome:
    out = Outcome(b.n, b.last_epoch)
    out.fired[:] = True
    return out


def _best_valid(b: Batch) -> Outcome:
    out = Outcome(b.n, b.last_epoch)
    t, found = _best_epochs(b.valid_acc)
    out.stop(found, t)
    out.no_stop(~found, "no valid_acc recorded")
    return out


def _oracle(b: Batch, metric: str = "cifar10_test") -> Outcome | None:
    if metric not in b.metrics:
        return None  # the per-trial note names the metrics there are
    out = Outcome(b.n, b.last_epoch)
    t, found = _best_epochs(b.metrics[metric])
    out.stop(found, t)
    out.no_stop(~found, f"{metric} unknown at every epoch")
    return out


def _magnitude(b: Batch, cell: str, exclude: Sequence[str] = ()) -> np.ndarray:
    """builtin.magnitude per trial: [N, T+1, K], excluded ops' columns NaN (each cell's
    magnitudes computed once per batch; a fresh copy returned)."""
    cell = cell or _magnitude_cells(b.space, b.cells)[0]
    cache = b.__dict__.setdefault("_cache", {})
    if ("m", cell) not in cache:
        rows = np.asarray(b.cells, dtype=object) == cell
        cache["m", cell] = b.weights[:, :, rows].mean(axis=2)
    m = cache["m", cell].copy()
    for k, o in enumerate(b.ops):
        if o in exclude:
            m[:, :, k] = np.nan
    return m


@functools.cache
def _magnitude_cells(space: str, cells: tuple[str, ...]) -> tuple[str, ...]:
    return magnitude_cells(space, cells)


def _selective(
    b: Batch,
    op: str,
    exclude: Sequence[str],
    gate: bool,
    patience: int,
    eq13: bool,
    gate_all_ops: bool = True,
    cell: str = "",
) -> Outcome | None:
    if op not in b.ops or (cell and cell not in b.cells):
        return None  # the per-trial note says which
    T = b.last_epoch
    m = _magnitude(b, cell, exclude)
    mi = m[:, :, b.ops.index(op)]
    if eq13:
        n_ops = np.isfinite(m[:, 0]).sum(axis=1)
        score = n_ops[:, None] * mi - np.nansum(m, axis=2)
    else:
        score = mi
    out = Outcome(b.n, T)
    eligible, note = None, np.full(b.n, "", dtype=object)
    if gate:
        full = m if not gate_all_ops else _magnitude(b, cell)
        leads = mi >= np.nanmax(full, axis=2)
        leads[:, 0] = False
        has = leads.any(axis=1)
        first = leads.argmax(axis=1)
        before = np.arange(T + 1)[None, :] < first[:, None]
        eligible = np.where(has[:, None], leads | before, True)
        for i in np.flatnonzero(has):
            note[i] = f"gate: {op} leads from epoch {int(first[i])}"
    t, found = _best_epochs(score, eligible)
    out.no_stop(~found, "no finite operation magnitude")
    young = found & (T - t < patience)
    for i in np.flatnonzero(young):
        out.note[i] = (f"peak at epoch {int(t[i])} is {T - int(t[i])} epoch(s) before the last "
                       f"({T}); patience {patience}")  # fmt: skip
    out.stop(found & ~young, t, note)
    return out


def _ss_eq12(b, op="nor_conv_3x3", gate=True, patience=0, cell=""):
    return _selective(b, op, (), gate, patience, eq13=False, cell=cell)


def _ss_eq13(b, op="nor_conv_3x3", exclude=(), gate=True, patience=0, gate_all_ops=True, cell=""):
    return _selective(b, op, tuple(exclude), gate, patience, True, gate_all_ops, cell)


def _dartsplus_sc(b: Batch, k: int = 2) -> Outcome:
    cache = b.__dict__.setdefault("_cache", {})
    if "skips" not in cache:  # once per batch for every k
        cell = _space(b.space).magnitude_cell
        codes, uniques = b.arch_codes
        counts = np.array([_skip_count(b.space, a, cell) for a in uniques], dtype=np.int64)
        cache["skips"] = counts[codes] if len(uniques) else np.zeros(codes.shape, np.int64)
    hit = cache["skips"] >= k
    hit[:, 0] = False
    found = hit.any(axis=1)
    out = Outcome(b.n, b.last_epoch)
    out.stop(found, hit.argmax(axis=1))
    if "skip_connect" not in b.ops:
        out.no_stop(~found, "skip_connect is not in this search's op set")
    else:
        out.no_stop(~found, f"no genotype with >= {k} skip_connect edges")
    return out


def _held(b: Batch, cols: tuple[int, ...]) -> np.ndarray:
    """builtin._ranking_held per trial: [N, T+1]."""
    key = ("held", cols)
    cache = b.__dict__.setdefault("_cache", {})
    if key in cache:
        return cache[key]
    T = b.last_epoch
    ranking = np.argsort(-b.alpha[:, :, :, list(cols)], axis=3, kind="stable")
    same = np.zeros((b.n, T + 1), dtype=bool)
    same[:, 2:] = (ranking[:, 2:] == ranking[:, 1:-1]).all(axis=(2, 3))
    # count since the last epoch >= 1 whose ranking changed (epoch 1 always starts one)
    idx = np.arange(T + 1)
    start = np.where(~same & (idx >= 1), idx, 0)
    start = np.maximum.accumulate(start, axis=1)
    held = idx[None, :] - start + 1
    held[:, 0] = 0
    cache[key] = held
    return held


def _dartsplus_rt(b: Batch, k: int = 10, learnable_only: bool = False) -> Outcome | None:
    learnable = _space(b.space).learnable_ops
    cols = tuple(i for i, o in enumerate(b.ops) if not learnable_only or o in learnable)
    if not cols:
        return None
    held = _held(b, cols)
    hit = held >= k
    found = hit.any(axis=1)
    out = Outcome(b.n, b.last_epoch)
    out.stop(found, hit.argmax(axis=1))
    longest = held.max(axis=1)
    for i in np.flatnonzero(~found):
        out.note[i] = f"ranking never held {k} epochs (longest {int(longest[i])})"
    return out


def _by_evaluations(b: Batch) -> list[tuple[np.ndarray, list[int]]]:
    """The batch's trials grouped by their DARTS-ES evaluations (epochs >= 1 with a finite
    hessian_eig): [(row indices, evaluation epochs)]."""
    ok = np.isfinite(b.hessian_eig[:, 1:])
    if ok.all():
        return [(np.arange(b.n), list(range(1, b.last_epoch + 1)))]
    keys: dict[bytes, list[int]] = {}
    for i, row in enumerate(np.packbits(ok, axis=1)):
        keys.setdefault(row.tobytes(), []).append(i)
    return [(np.array(rows), (np.flatnonzero(ok[rows[0]]) + 1).tolist()) for rows in keys.values()]


def _local_averages(ev: np.ndarray, window: int) -> np.ndarray:
    """builtin._local_averages per row of ev [N, n]: [N, n], NaN where that gives None."""
    n = ev.shape[1]
    first = math.ceil(window / 2) - 1
    avg = np.full(ev.shape, np.nan)
    for k in range(first, min(window - 1, n)):
        avg[:, k] = ev[:, : k + 1].sum(axis=1) / (k + 1)
    if n >= window:
        avg[:, window - 1 :] = (
            np.add.reduce(sliding_window_view(ev, window, axis=1), axis=2) / window
        )
    return avg


def _ratios(avg: np.ndarray, delta: int, start: int) -> np.ndarray:
    """builtin._ratios per row: [N, n - start]."""
    a = avg[:, start - delta :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return a[:, delta:] / a[:, :-delta]


def _darts_es(b, window=5, delta=4, factor=1.3, start_epoch=11, rollback=True, ev_freq=2):
    out = Outcome(b.n, b.last_epoch)
    for rows, evals in _by_evaluations(b):
        ev = b.hessian_eig[np.ix_(rows, evals)] if evals else np.zeros((len(rows), 0))
        if evals and ev_freq > 1:
            keep = [i for i, t in enumerate(evals) if (t - evals[0]) % ev_freq == 0]
            evals, ev = [evals[i] for i in keep], ev[:, keep]
        lo = delta + window // 2
        n = len(evals)
        mask = np.zeros(b.n, dtype=bool)
        mask[rows] = True
        if n > lo:
            ratios = _ratios(_local_averages(ev, window), delta, lo)  # [rows, n - lo]
            ok = np.array([evals[k - lo] >= start_epoch for k in range(lo, n)])
            hit = ok[None, :] & (ratios > factor)
            found = hit.any(axis=1)
            at = hit.argmax(axis=1)
            for i in np.flatnonzero(found):
                r, j = rows[i], int(at[i])
                k = j + lo
                out.epoch[r] = evals[j] if rollback else evals[k]
                out.fired[r] = True
                out.note[r] = f"local_avg ratio {float(ratios[i, j]):.3g} at epoch {evals[k]}"
            mask[rows[found]] = False
        need = delta + window // 2 + 1
        if n < need:
            every = f" (every {ev_freq} epochs)" if ev_freq > 1 else ""
            note = f"{n} Hessian evaluation(s){every} after epoch 0; needs >= {need}"
        else:
            note = f"local_avg never grew by > {factor}x (rollback epoch >= {start_epoch})"
        out.note[mask] = note
    return out


def _darts_es_paper(b: Batch) -> Outcome:
    p = _PAPER_ES
    out = Outcome(b.n, b.last_epoch)
    first = math.ceil(p["window"] / 2) - 1
    for rows, evals in _by_evaluations(b):
        ev = b.hessian_eig[np.ix_(rows, evals)] if evals else np.zeros((len(rows), 0))
        n = len(evals)
        mask = np.zeros(b.n, dtype=bool)
        mask[rows] = True
        ks = []  # the evaluations where the paper's code compares
        for k in range(first, n):
            e = evals[k] - 1
            if e >= p["total_epochs"] - 1:
                break
            la_epoch = e - p["ev_freq"] * (p["window"] // 2)
            if la_epoch - p["ev_freq"] * p["delta"] < p["start"] or k - p["delta"] < first:
                continue
            ks.append(k)
        if ks:
            avg = _local_averages(ev, p["window"])
            ratios = _ratios(avg, p["delta"], first + p["delta"])
            at = np.array(ks) - first - p["delta"]
            r_at = ratios[:, at]
            hit = r_at > p["factor"]
            found = hit.any(axis=1)
            j = hit.argmax(axis=1)
            for r, f, jj, row in zip(rows.tolist(), found.tolist(), j.tolist(), r_at):
                if f:
                    k = ks[jj]
                    out.epoch[r] = evals[k]
                    out.fired[r] = True
                    out.note[r] = f"local_avg ratio {float(row[jj]):.3g} at epoch {evals[k]}"
            mask[rows[found]] = False
        out.note[mask] = "never fired (the paper's code fires from its epoch 12 to 48: ours 13-49)"
    return out


#: built-in name -> its stacked function (None from one: run that criterion per trial)
STACKED: dict[str, Callable[..., Outcome | None]] = {
    "final": _final,
    "best_valid": _best_valid,
    "oracle": _oracle,
    "ss_eq12": _ss_eq12,
    "ss_eq13": _ss_eq13,
    "dartsplus_sc": _dartsplus_sc,
    "dartsplus_rt": _dartsplus_rt,
    "darts_es": _darts_es,
    "darts_es_paper": _darts_es_paper,
}


# ---------------------------------------------------------------- the driver


@dataclass
class Selected:
    """What `apply_many` chose: per trial (rows, in the order given) and criterion (columns)."""

    epoch: np.ndarray
    """[N, C] int"""
    fired: np.ndarray
    """[N, C] bool"""
    arch: np.ndarray
    """[N, C] object: the arch recorded at that epoch"""
    note: np.ndarray
    """[N, C] object (str)"""


def _resolved_cells(space: str, edges: tuple[str, ...], cells: tuple[str, ...]) -> tuple[str, ...]:
    """The cells a Trajectory of these rows has (see Trajectory.__post_init__)."""
    if cells:
        return tuple(cells)
    rows = spaces.get_space(space).rows()
    return tuple(c for c, _ in rows) if len(rows) == len(edges) else ("shared",) * len(edges)


def _stackable(space: str, ops: tuple[str, ...], edges, cells) -> bool:
    """Whether a Trajectory of this space, op set and rows builds (else: per trial, which raises
    what it raised before)."""
    try:
        unit = spaces.get_space(space)
        return unit.validate_ops(ops) == ops and len(cells) == len(edges)
    except ValueError:
        return False


def _batches(trials: Sequence, metrics_of: MetricsOf | None, chunk: int = CHUNK):
    """(rows into `trials`, Batch) for the trials that stack; the rest as (rows, None)."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(trials):
        space, ops, edges = t.space, tuple(t.ops), tuple(t.edges)
        cells = _resolved_cells(space, edges, tuple(t.cells))
        key = (space, ops, edges, cells, t.alpha.shape, len(t.epochs["arch"]))
        groups.setdefault(key, []).append(i)
    for (space, ops, edges, cells, shape, n_archs), rows in groups.items():
        if (len(shape) != 3 or n_archs != shape[0] or shape[1:] != (len(edges), len(ops))
                or not _stackable(space, ops, edges, cells)):  # fmt: skip
            yield np.array(rows), None
            continue
        step = max(1, min(chunk, CHUNK_VALUES // max(1, int(np.prod(shape)))))
        for c0 in range(0, len(rows), step):
            part = np.array(rows[c0 : c0 + step])
            sub = [trials[i] for i in part]
            alpha = np.stack([np.asarray(t.alpha, dtype=np.float64) for t in sub])
            weights = np.stack([np.asarray(t.weights, dtype=np.float64) for t in sub])
            bad = ~(np.isfinite(alpha).all(axis=(2, 3)) & np.isfinite(weights).all(axis=(2, 3)))
            last = np.where(bad.any(axis=1), np.maximum(bad.argmax(axis=1) - 1, 0), shape[0] - 1)
            archs = np.stack([np.asarray(t.epochs["arch"], dtype=object) for t in sub])
            valid = np.stack([np.asarray(t.epochs["valid_acc"], dtype=np.float64) for t in sub])
            eig = np.stack([np.asarray(t.epochs["hessian_eig"], dtype=np.float64) for t in sub])
            metrics: dict[str, np.ndarray] = {}
            codes, uniques = _factorize(archs)
            if metrics_of is not None:
                scores = metrics_of(space, uniques)
                metrics = {m: np.asarray(v, dtype=np.float64)[codes] for m, v in scores.items()}
            for T in np.unique(last).tolist():
                keep = last == T
                if T == 0:  # nothing to choose: the per-trial notes say so
                    yield part[keep], None
                    continue
                s = slice(0, T + 1)
                b = Batch(
                    space, ops, cells, alpha[keep, s], weights[keep, s], archs[keep, s],
                    valid[keep, s], eig[keep, s], {m: v[keep, s] for m, v in metrics.items()},
                )  # fmt: skip
                b.__dict__["arch_codes"] = (codes[keep, s], uniques)
                yield part[keep], b


def apply_many(specs: Sequence, trials: Sequence, metrics_of: MetricsOf | None = None) -> Selected:
    """Every criterion of `specs` (CriterionSpecs) on every trial (`store.TrialData`s, or
    anything with run_id, space, ops, edges, cells, alpha, weights and epochs' arch, valid_acc,
    hessian_eig): the built-ins stacked, the others (and the cases they leave) per trial through
    `CriterionSpec.apply`, with the per-epoch benchmark scores of `metrics_of` when given.

    Identical to `spec.apply(from_trial(trial, metrics))` per trial and criterion. A criterion
    that breaks the shared rules raises CriterionError naming the first such trial (in the order
    given) and criterion: `trial RUN_ID: ...`."""
    n, c = len(trials), len(specs)
    epoch = np.zeros((n, c), dtype=np.int64)
    fired = np.zeros((n, c), dtype=bool)
    arch = np.empty((n, c), dtype=object)
    note = np.empty((n, c), dtype=object)
    stacked = [j for j, s in enumerate(specs) if s.name in STACKED]
    todo: dict[int, list[int]] = {}  # trial -> criteria left to run per trial
    for rows, b in _batches(trials, metrics_of):
        if b is None:
            for i in rows.tolist():
                todo.setdefault(i, []).extend(stacked)
            continue
        pick = np.arange(b.n)
        for j in stacked:
            try:
                out = STACKED[specs[j].name](b, **specs[j].params)
            except Exception:  # noqa: BLE001 - the per-trial path raises it as the rules say
                out = None
            if out is None:
                for i in rows.tolist():
                    todo.setdefault(i, []).append(j)
                continue
            epoch[rows, j] = out.epoch
            fired[rows, j] = out.fired
            arch[rows, j] = b.archs[pick, out.epoch]
            note[rows, j] = out.note
    others = [j for j in range(c) if j not in set(stacked)]
    for i in range(n) if others else sorted(todo):
        cols = sorted({*todo.get(i, ()), *others})
        if not cols:
            continue
        t = trials[i]
        metrics = metrics_of(t.space, list(t.epochs["arch"])) if metrics_of else None
        traj = from_trial(t, metrics)
        for j in cols:
            try:
                r = specs[j].apply(traj)
            except CriterionError as e:
                raise CriterionError(f"trial {t.run_id}: {e}") from e
            epoch[i, j], fired[i, j], arch[i, j], note[i, j] = r.epoch, r.fired, r.arch, r.note
    return Selected(epoch, fired, arch, note)
