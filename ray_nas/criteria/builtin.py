"""The built-in stop criteria: operation magnitude (Eq.11), the selective stops (Eq.12/13), and the
baselines (final, best_valid, oracle, DARTS+, DARTS-ES). Pure functions over a Trajectory.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ray_nas import spaces
from ray_nas.criteria.trajectory import (
    _NOTHING_TO_CHOOSE,
    StopResult,
    Trajectory,
    _best_epoch,
    no_stop,
    stop_at,
)
from ray_nas.errors import did_you_mean

if TYPE_CHECKING:
    from ray_nas.spaces.base import Space

_MIN_INT = {"k": 1, "window": 1, "delta": 1, "patience": 0, "start_epoch": 0, "ev_freq": 1,
            "tune_epochs": 0, "valid_batches": 0}  # fmt: skip
#: darts_pt's parameters that take one of a few words
_CHOICES = {"edge_decision": ("random", "fixed"), "crit": ("acc", "loss")}


@functools.cache
def _known_ops() -> tuple[str, ...]:
    """Every op name of every registered space, resolved once (the registry is fixed)."""
    return spaces.all_ops()


@functools.cache
def _known_cells() -> tuple[str, ...]:
    """Every cell type of every registered space, resolved once."""
    return spaces.cell_types()


@functools.cache
def _space(name: str) -> Space:
    """The registered space `name` (spaces.get_space), looked up once per name."""
    return spaces.get_space(name)


@functools.lru_cache(maxsize=1 << 14)
def _skip_count(space: str, arch: str, cell: str) -> int:
    """skip_connect edges of genotype text `arch` in `cell`: parsed once per distinct arch."""
    return _space(space).skip_count(arch, cell)


def _check_param(key: str, value: Any) -> None:
    """Range/name checks on one parameter value, shared by the criteria and parse_criterion."""
    ops, cells = _known_ops(), _known_cells()
    if key == "op" and value not in ops:
        raise ValueError(
            f"op: unknown op {value!r}{did_you_mean(str(value), ops, n=3, list_valid=True)}"
        )
    if key == "exclude":
        for o in value:
            if o not in ops:
                raise ValueError(
                    f"exclude: unknown op {o!r}{did_you_mean(str(o), ops, n=3, list_valid=True)}"
                )
    if key == "cell" and value and value not in cells:
        raise ValueError(
            f"cell: unknown cell type {value!r}"
            f"{did_you_mean(str(value), cells, n=3, list_valid=True)}"
        )
    if key in _MIN_INT and value < _MIN_INT[key]:
        raise ValueError(f"{key}: must be >= {_MIN_INT[key]}, got {value!r}")
    if key == "factor" and not value > 0:
        raise ValueError(f"factor: must be > 0, got {value!r}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ValueError(f"{key}: must be one of {', '.join(_CHOICES[key])}, got {value!r}")


def _check_params(**params: Any) -> None:
    for key, value in params.items():
        _check_param(key, value)
    if params.get("op") in params.get("exclude", ()):
        raise ValueError(f"exclude: cannot exclude the selected op {params['op']!r}")


def _too_recent(traj: Trajectory, t: int, patience: int) -> StopResult | None:
    """Not-fired result when the peak at `t` is younger than `patience` epochs, else None."""
    T = traj.last_epoch
    if T - t >= patience:
        return None
    return no_stop(
        traj, f"peak at epoch {t} is {T - t} epoch(s) before the last ({T}); patience {patience}"
    )


# ---------------------------------------------------------------- Eq.11-13


def magnitude_cell(traj: Trajectory, cell: str = "") -> str:
    """The cell type whose rows `magnitude` averages: `cell`, or the space's default (DARTS:
    normal, as the paper's code) when the trajectory has it, else the first row's."""
    return cell or magnitude_cells(traj.space, traj.cells)[0]


def magnitude_cells(space: str, cells: Sequence[str]) -> tuple[str, ...]:
    """The cell types of the op rows `cells` [E], each once: the one the criteria read unless
    told otherwise (the space's `magnitude_cell`; the first row's when absent) first, then the
    others in row order. NAS-Bench-201 and -1Shot1: ("shared",); DARTS: ("normal", "reduce")."""
    present = tuple(dict.fromkeys(cells))
    default = spaces.get_space(space).magnitude_cell
    return tuple(sorted(present, key=lambda c: c != default))


def magnitudes(weights: np.ndarray, cells: Sequence[str], cell: str) -> np.ndarray:
    """Eq.11 on one cell type: m[t, k] = mean over the rows r with cells[r] == cell of
    weights[t, r, k], the op distribution the supernet mixes with.

    weights: [T+1, E, K] (epochs, op rows, ops; connection rows are not op rows); cells: [E];
    returns [T+1, K], column k the op of weights' column k. ValueError when no row is `cell`."""
    rows = np.asarray(cells, dtype=object) == cell
    if not rows.any():
        raise ValueError(f"cell: no {cell!r} rows in this search (cells: {sorted(set(cells))})")
    return np.asarray(weights, dtype=np.float64)[:, rows].mean(axis=1)


def cell_magnitudes(weights: np.ndarray, cells: Sequence[str], space: str) -> dict[str, np.ndarray]:
    """Eq.11 per cell type: {cell: m [T+1, K]} for every cell type of the rows, in
    `magnitude_cells` order (the criteria's default cell first). What the report, MLflow and the
    live metrics show; weights [T+1, E, K] and cells [E] as `magnitudes`."""
    return {c: magnitudes(weights, cells, c) for c in magnitude_cells(space, cells)}


def magnitude(traj: Trajectory, exclude: Sequence[str] = (), cell: str = "") -> np.ndarray:
    """Eq.11 operation magnitude m[t, k] = mean over one cell type's edges of traj.weights[t, :, k]:
    [T+1, K] (cell: see magnitude_cell; NAS-Bench-201 has one, `shared`).

    Column k is always op traj.ops[k]; the columns of ops in `exclude` (op names) are NaN.
    """
    _check_params(exclude=exclude, cell=cell)
    m = magnitudes(traj.weights, traj.cells, magnitude_cell(traj, cell))
    for k, o in enumerate(traj.ops):
        if o in exclude:
            m[:, k] = np.nan
    return m


def _selective_stop(
    traj: Trajectory,
    op: str,
    exclude: Sequence[str],
    gate: bool,
    patience: int,
    eq13: bool,
    gate_all_ops: bool = True,
    cell: str = "",
) -> StopResult:
    """Eq.12 (eq13=False) or Eq.13 over the ops not in `exclude`, with the paper code's gate, on
    the magnitudes of `cell` (default: the space's, see magnitude_cell).

    The gate compares m(t, op) with every op's magnitude (the paper's code) unless gate_all_ops
    is False, which leaves the excluded ops out of it too."""
    _check_params(op=op, exclude=exclude, patience=patience, cell=cell)
    if op not in traj.ops:
        return no_stop(traj, f"op {op!r} is not in this search's op set {list(traj.ops)}")
    if cell and cell not in traj.cells:
        return no_stop(
            traj, f"cell {cell!r} is not in this search (cells: {sorted(set(traj.cells))})"
        )
    if traj.last_epoch == 0:
        return no_stop(traj, _NOTHING_TO_CHOOSE)
    m = magnitude(traj, exclude, cell)
    mi = m[:, traj.ops.index(op)]
    n_ops = np.isfinite(m[0]).sum()
    score = n_ops * mi - np.nansum(m, axis=1) if eq13 else mi
    eligible, note = None, ""
    # gate: before op first leads m(t, .) every epoch is eligible; from then on only where it leads
    if gate:
        leads = mi >= np.nanmax(m if not gate_all_ops else magnitude(traj, cell=cell), axis=1)
        leads[0] = False
        if leads.any():
            first = int(np.flatnonzero(leads)[0])
            eligible = leads.copy()
            eligible[:first] = True
            note = f"gate: {op} leads from epoch {first}"
    t = _best_epoch(score, eligible)
    if t is None:
        return no_stop(traj, "no finite operation magnitude")
    return _too_recent(traj, t, patience) or stop_at(traj, t, note)


def ss_eq12(
    traj: Trajectory, op: str = "nor_conv_3x3", gate: bool = True, patience: int = 0, cell: str = ""
) -> StopResult:
    """Eq.12 selective stop: the epoch where m(t, op) peaks."""
    return _selective_stop(traj, op, (), gate, patience, eq13=False, cell=cell)


def ss_eq13(
    traj: Trajectory,
    op: str = "nor_conv_3x3",
    exclude: Sequence[str] = (),
    gate: bool = True,
    patience: int = 0,
    gate_all_ops: bool = True,
    cell: str = "",
) -> StopResult:
    """Eq.13 selective stop: the peak of sum_{j != op} (m(t, op) - m(t, j)) over ops not excluded."""
    return _selective_stop(traj, op, tuple(exclude), gate, patience, True, gate_all_ops, cell)


# ---------------------------------------------------------------- baselines


def final(traj: Trajectory) -> StopResult:
    """The last epoch T: no early stop."""
    if traj.last_epoch == 0:
        return no_stop(traj, _NOTHING_TO_CHOOSE)
    return stop_at(traj, traj.last_epoch)


def best_valid(traj: Trajectory) -> StopResult:
    """The epoch of the best supernet search-valid accuracy (NaN epochs ignored)."""
    t = _best_epoch(traj.valid_acc)
    if t is None:
        return no_stop(
            traj, _NOTHING_TO_CHOOSE if traj.last_epoch == 0 else "no valid_acc recorded"
        )
    return stop_at(traj, t)


def oracle(traj: Trajectory, metric: str = "cifar10_test") -> StopResult:
    """The epoch whose genotype scores best on the benchmark (upper bound; NaN epochs ignored)."""
    if metric not in traj.metrics:
        return no_stop(
            traj,
            f"metric {metric!r} not recorded"
            f"{did_you_mean(metric, sorted(traj.metrics), n=3, list_valid=True)}",
        )
    t = _best_epoch(traj.metrics[metric])
    if t is None:
        return no_stop(
            traj, _NOTHING_TO_CHOOSE if traj.last_epoch == 0 else f"{metric} unknown at every epoch"
        )
    return stop_at(traj, t)


#: the spaces darts_pt projects (upstream's: NAS-Bench-201 and the DARTS space)
PT_SPACES = ("nb201", "darts")
#: DARTS space: the intermediate nodes with more than 2 input edges, (node, its edge rows)
PT_DARTS_NODES = ((3, (2, 3, 4)), (4, (5, 6, 7, 8)), (5, (9, 10, 11, 12, 13)))


def pt_schedule(space: str, tune_epochs: int) -> tuple[int, list[int], int]:
    """darts_pt's schedule (ruocwang/darts-pt): (decisions, the tuning epochs at whose start a
    decision falls, tuning epochs run). NAS-Bench-201: 6 edge decisions over tune_epochs * 5
    epochs, one at e % tune_epochs == 0 or e == the last; DARTS: 14 op decisions (an edge of each
    cell type) then 3 topology decisions (a node of each cell type) over tune_epochs * 16 + 1
    epochs, one at e % tune_epochs == 0. Decisions the schedule has no epoch for (tune_epochs 0 or
    1 on NAS-Bench-201) follow the last one without tuning; the epoch after the last decision is not
    run (it cannot change the genotype)."""
    rounds = 14 + len(PT_DARTS_NODES) if space == "darts" else 6
    if space == "darts":
        total = tune_epochs * (rounds - 1) + 1
        due = [e for e in range(total) if tune_epochs and e % tune_epochs == 0]
    else:
        total = tune_epochs * (rounds - 1)
        due = [e for e in range(total) if e % tune_epochs == 0 or e == total - 1]
    due = (due or [0])[:rounds]
    tuned = due[-1] if len(due) == rounds else (max(total, 1) if tune_epochs else 0)
    return rounds, due, tuned


def pt_measurements(space: str, n_ops: int) -> int:
    """Candidate measurements (forward passes over the measured search-valid batches) of one
    darts_pt projection: every op of every edge, then on DARTS each node's edges as it drops them."""
    if space == "darts":
        drops = sum(sum(range(3, len(edges) + 1)) for _node, edges in PT_DARTS_NODES)
        return 2 * (14 * n_ops + drops)
    return 6 * n_ops


def darts_pt(
    traj: Trajectory,
    tune_epochs: int = 5,
    edge_decision: str = "random",
    crit: str = "acc",
    valid_batches: int = 0,
) -> StopResult:
    """DARTS-PT (perturbation-based selection, ruocwang/darts-pt) is not a function of the
    trajectory: it projects the trial's final supernet, a stage of `ray-nas evaluate`
    (ray_nas.search.pt, ray_nas.offline.pt) whose results are read back as this criterion's
    selections. Calling it on a trajectory is an error."""
    _check_params(tune_epochs=tune_epochs, edge_decision=edge_decision, crit=crit,
                  valid_batches=valid_batches)  # fmt: skip
    raise ValueError(
        "darts_pt selects from the trial's final supernet, not from its trajectory: it runs as a "
        "stage of `ray-nas evaluate` (name it in the job's criteria)"
    )


def dartsplus_sc(traj: Trajectory, k: int = 2) -> StopResult:
    """DARTS+ sc_k: the first epoch whose genotype has >= k skip_connect edges (in the space's
    magnitude cell: DARTS's normal cell, as DARTS+)."""
    _check_params(k=k)
    cell = _space(traj.space).magnitude_cell
    for t in range(1, traj.last_epoch + 1):
        if _skip_count(traj.space, traj.archs[t], cell) >= k:
            return stop_at(traj, t)
    if traj.last_epoch == 0:
        return no_stop(traj, _NOTHING_TO_CHOOSE)
    if "skip_connect" not in traj.ops:
        return no_stop(traj, "skip_connect is not in this search's op set")
    return no_stop(traj, f"no genotype with >= {k} skip_connect edges")


def dartsplus_rt(traj: Trajectory, k: int = 10, learnable_only: bool = False) -> StopResult:
    """DARTS+ rt_k: the first epoch where every edge's ranking of ops by alpha has held k epochs."""
    _check_params(k=k)
    learnable = _space(traj.space).learnable_ops
    cols = tuple(i for i, o in enumerate(traj.ops) if not learnable_only or o in learnable)
    if not cols:
        return no_stop(traj, f"no learnable op ({', '.join(sorted(learnable))}) in the op set")
    held = _ranking_held(traj, cols)
    fired = np.flatnonzero(held >= k)
    if len(fired):
        return stop_at(traj, int(fired[0]))
    if traj.last_epoch == 0:
        return no_stop(traj, _NOTHING_TO_CHOOSE)
    return no_stop(traj, f"ranking never held {k} epochs (longest {int(held.max())})")


@functools.lru_cache(maxsize=8)
def _ranking_held(traj: Trajectory, cols: tuple[int, ...]) -> np.ndarray:
    """[T+1] int: at each epoch t >= 1, for how many epochs up to t every edge's ranking of the
    ops `cols` (indices into traj.ops) by alpha has been the same (1 at epoch 1, rankings compared
    from epoch 2 on; 0 at epoch 0). Computed once per trajectory for every rt_k (a trajectory is
    hashed by identity, and read-only)."""
    # [T+1, E, K'] ops per edge, largest alpha first; stable sort: ties keep op order
    ranking = np.argsort(-traj.alpha[:, :, list(cols)], axis=2, kind="stable")
    # same[t]: epoch t ranks every edge as epoch t-1 did (compared from epoch 2 on)
    same = np.zeros(traj.last_epoch + 1, dtype=bool)
    same[2:] = (ranking[2:] == ranking[1:-1]).all(axis=(1, 2))
    held = np.zeros(traj.last_epoch + 1, dtype=np.int64)
    count = 0
    for t, kept in enumerate(same.tolist()[1:], start=1):
        count = count + 1 if kept else 1
        held[t] = count
    return held


def _local_averages(ev: np.ndarray, window: int) -> list[float | None]:
    """R-DARTS's EVLocalAvg local average at each evaluation k (0-based): the mean of evaluations
    max(0, k - window + 1)..k, from k = ceil(window / 2) - 1 on (partial windows until the first
    full one, as EVLocalAvg), None before."""
    first = math.ceil(window / 2) - 1
    ev = np.asarray(ev, dtype=np.float64)
    n = len(ev)
    out: list[float | None] = [None] * min(first, n)
    # each window's sum divided by its length: np.mean's arithmetic, bit for bit (a test checks),
    # the full windows in one reduction (a 500-epoch search has 500 per criterion)
    out += [float(ev[: k + 1].sum() / (k + 1)) for k in range(first, min(window - 1, n))]
    if n >= window:
        out += (np.add.reduce(sliding_window_view(ev, window), axis=1) / window).tolist()
    return out


def _ratio(now: float, before: float) -> float:
    """now / before with numpy's float semantics (inf or nan on a zero), as EVLocalAvg divides."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(now) / np.float64(before))


def _ratios(avg: list[float | None], delta: int, start: int) -> list[float]:
    """avg[k] / avg[k - delta] for k = start..len(avg)-1 (every one defined), as _ratio divides
    one pair (numpy's float semantics: inf or nan on a zero), in one array division."""
    if len(avg) <= start:
        return []
    a = np.array(avg[start - delta :], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a[delta:] / a[:-delta]).tolist()


def _evaluations(traj: Trajectory) -> tuple[list[int], np.ndarray]:
    """(epochs >= 1 with a finite hessian_eig, their eigenvalues): the DARTS-ES evaluations."""
    evals = (np.flatnonzero(np.isfinite(traj.hessian_eig[1:])) + 1).tolist()
    return evals, traj.hessian_eig[evals]


def darts_es(
    traj: Trajectory,
    window: int = 5,
    delta: int = 4,
    factor: float = 1.3,
    start_epoch: int = 11,
    rollback: bool = True,
    ev_freq: int = 2,
) -> StopResult:
    """DARTS-ES as R-DARTS ran it (Zela et al.; automl/RobustDARTS train_search.py with
    EVLocalAvg.early_stop, scripts/DARTS_search.sh's --report_freq_hessian 2).

    Evaluations: the epochs >= 1 with a finite hessian_eig (every `hessian_every` epochs), every
    `ev_freq`-th epoch of them from the first on (R-DARTS's cadence: its eigenvalue every 2
    epochs). avg(k): local average of evaluations k-window+1..k (partial windows at the start, as
    EVLocalAvg). At evaluation k it stops when avg(k) / avg(k - delta) > factor, provided the
    rollback target, evaluation j = k - delta - window // 2 (the CENTRE of the earlier window:
    R-DARTS's stop epoch, la_epoch - ev_freq * delta), exists and is at an epoch >= start_epoch.
    rollback: the genotype at evaluation j's epoch (R-DARTS), else the current one at evaluation
    k's epoch.
    Numbering: epoch t here = after t epochs; R-DARTS counts from 0, so its epoch e is our e + 1,
    its es_start_epoch=10 is start_epoch=11 here, and its evaluations at e = 0, 2, 4, ... are our
    epochs 1, 3, 5, ...: with hessian_every 1 the defaults (window 5, delta 4, factor 1.3,
    start_epoch 11, ev_freq 2) reproduce R-DARTS exactly (a 10-epoch window, averages 8 epochs
    apart). With hessian_every 2 the eigenvalues are at our epochs 2, 4, ... (one epoch after
    R-DARTS's); set ev_freq 1 there (ev_freq 2 would keep every fourth epoch) and start_epoch 12
    for R-DARTS's index arithmetic. R-DARTS also skips the check at its last epoch; with an odd
    number of epochs here the last one is checked (online and offline agree).
    """
    _check_params(window=window, delta=delta, factor=factor, start_epoch=start_epoch,
                  ev_freq=ev_freq)  # fmt: skip
    evals, ev = _evaluations(traj)
    if evals and ev_freq > 1:
        keep = [i for i, t in enumerate(evals) if (t - evals[0]) % ev_freq == 0]
        evals, ev = [evals[i] for i in keep], ev[keep]
    avg = _local_averages(ev, window)
    lo = delta + window // 2
    ratios = _ratios(avg, delta, lo)  # [k - lo]: avg(k) / avg(k - delta)
    for k in range(lo, len(evals)):
        j = k - lo
        ratio = ratios[k - lo]
        if evals[j] >= start_epoch and ratio > factor:
            note = f"local_avg ratio {ratio:.3g} at epoch {evals[k]}"
            return stop_at(traj, evals[j] if rollback else evals[k], note)
    if traj.last_epoch == 0:
        return no_stop(traj, _NOTHING_TO_CHOOSE)
    need = delta + window // 2 + 1
    if len(evals) < need:
        every = f" (every {ev_freq} epochs)" if ev_freq > 1 else ""
        return no_stop(
            traj, f"{len(evals)} Hessian evaluation(s){every} after epoch 0; needs >= {need}"
        )
    return no_stop(traj, f"local_avg never grew by > {factor}x (rollback epoch >= {start_epoch})")


#: what the paper's code ran for DARTS-ES (chaoji90/Selective-Stop, DARTS-V1-ES.py): utils_ES's
#: EVLocalAvg() with its defaults, early_stop(epoch, 1.3, 0) with delta's default 4
_PAPER_ES = {"window": 5, "ev_freq": 2, "total_epochs": 50, "factor": 1.3, "start": 0, "delta": 4}


def darts_es_paper(traj: Trajectory) -> StopResult:
    """DARTS-ES as the paper's code ran it for its DARTS-ES rows (chaoji90/Selective-Stop).

    One eigenvalue per epoch fed to EVLocalAvg(window=5, ev_freq=2, total_epochs=50), its epoch
    e = our epoch - 1 (counted from 0), early_stop(e, factor=1.3, es_start_epoch=0, delta=4): it
    stops at the first e with (e - ev_freq * 2) - ev_freq * 4 >= 0, i.e. e >= 12 (our epoch 13;
    ev_freq=2 with one eigenvalue per epoch is its timing quirk), where avg(k) / avg(k - 4) > 1.3,
    avg(k) the mean of the last 5 eigenvalues. It returns the CURRENT genotype (the code exits with
    genotypes[epoch]); it cannot fire from its epoch 49 on (its code raises a KeyError there), and a
    run where it never fires gives epoch T. Evaluations are the recorded eigenvalues (hessian_every
    should be 1).
    """
    p = _PAPER_ES
    evals, ev = _evaluations(traj)
    avg = _local_averages(ev, p["window"])
    first = math.ceil(p["window"] / 2) - 1  # before: its la_epoch is -1
    ratios = _ratios(avg, p["delta"], first + p["delta"])  # [k - first - delta]
    for k in range(first, len(evals)):
        e = evals[k] - 1
        if e >= p["total_epochs"] - 1:
            break
        la_epoch = e - p["ev_freq"] * (p["window"] // 2)
        if la_epoch - p["ev_freq"] * p["delta"] < p["start"] or k - p["delta"] < first:
            continue
        ratio = ratios[k - first - p["delta"]]
        if ratio > p["factor"]:
            return stop_at(traj, evals[k], f"local_avg ratio {ratio:.3g} at epoch {evals[k]}")
    if traj.last_epoch == 0:
        return no_stop(traj, _NOTHING_TO_CHOOSE)
    return no_stop(traj, "never fired (the paper's code fires from its epoch 12 to 48: ours 13-49)")
