"""Stop criteria: which epoch of a search's trajectory to keep (the paper's Eq.11-13 and baselines).

Every criterion is a pure function `fn(traj, **params) -> StopResult` over a `Trajectory` of
epochs 0..T, catalogued in `CRITERIA`; job specs name them through `parse_criterion`. A job may
also name its own function by import path, `package.module:function` (see `resolve_criterion`):
its parameters are checked against the function's signature, and one wrapper, `apply_checked`,
enforces the shared rules below around every criterion, built-in or not.

Rules shared by all criteria (MISSION.md, "Operation magnitude and the stop criteria"):
- They choose among epochs 1..T only. Epoch 0 (before any update) is never chosen and never
  compared with: a "previous epoch" exists from epoch 2 on.
- Ties go to the earliest epoch (scores equal up to float rounding, relative 1e-12, are ties).
- A criterion that does not fire gives epoch T with `fired=False` and a note saying why; a
  trajectory with T = 0 gives epoch 0, not fired.
- A criterion reads nothing past the last epoch it is given, so online early stop (Algorithm 1)
  calls it on `traj.prefix(t)` and gets exactly what the offline stage (Algorithm 2) gets on that
  prefix. The argmax criteria take `patience` to be useful online: they fire only once the peak
  is at least `patience` epochs old.

Operation magnitude (Eq.11): m(t, o) = mean over the edges of w[t, edge, o], w the op distribution
the supernet mixes with (softmax(alpha) for DARTS).
Eq.12: t* = argmax_t m(t, o_i).
Eq.13: t* = argmax_t sum_{j in S, j != i} (m(t, o_i) - m(t, o_j)) = argmax_t |S| m(t, o_i) - sum_S m(t, .).
Over the full op set sum_o m(t, o) = 1 (every edge's w sums to 1), so Eq.13 is argmax_t
(K m(t, o_i) - 1): the SAME epoch as Eq.12. The two differ only when S is a subset of the op set,
which `exclude` gives (e.g. exclude=["none"]); tests check both facts.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import json
import math
import numbers
import os
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ray_nas import spaces

_TIE_RTOL = 1e-12  # scores this close (relative) to the best count as ties -> earliest epoch


def _frozen(x: Any) -> np.ndarray:
    """A read-only float64 copy of `x` (criteria must not be able to alter a trajectory)."""
    a = np.array(x, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Trajectory:
    """One search's record over epochs 0..T (epoch 0 = before any update). Arrays are read-only."""

    ops: tuple[str, ...]
    """the K op names, in the space's op order (a subset of it for op-set variants)"""
    edges: tuple[str, ...]
    """the E row edge names (NAS-Bench-201: its 6 edges; DARTS: 14 normal, then 14 reduce)"""
    alpha: np.ndarray
    """[T+1, E, K] raw architecture logits, axes (epoch, edges, ops)"""
    weights: np.ndarray
    """[T+1, E, K] op distribution the supernet mixes with (softmax(alpha) for DARTS)"""
    archs: tuple[str, ...]
    """T+1 NAS-Bench-201 arch strings: the genotype recorded at each epoch"""
    valid_acc: np.ndarray
    """[T+1] supernet search-valid accuracy (NaN where not measured)"""
    hessian_eig: np.ndarray
    """[T+1] dominant eigenvalue of the search-valid loss Hessian w.r.t. alpha (NaN where not computed)"""
    metrics: Mapping[str, np.ndarray] = field(default_factory=dict)
    """benchmark score of archs[t] per epoch, keyed like "cifar10_test": each [T+1], NaN where unknown"""
    cells: tuple[str, ...] = ()
    """[E] the cell type of each row (alphas.cell); empty: the space's rows when E matches them,
    else `shared` for all"""
    space: str = spaces.DEFAULT
    """the search space (spaces.get_space): op order, genotype text, default magnitude cell"""

    def __post_init__(self) -> None:
        ops, edges = tuple(self.ops), tuple(self.edges)
        unit = spaces.get_space(self.space)
        if unit.validate_ops(ops) != ops:
            raise ValueError(f"ops must follow the {unit.name} op order {unit.ops}, got {ops}")
        cells = tuple(self.cells)
        if not cells:
            rows = unit.rows()
            cells = (
                tuple(c for c, _ in rows) if len(rows) == len(edges) else ("shared",) * len(edges)
            )
        if len(cells) != len(edges):
            raise ValueError(f"cells: expected one per edge row ({len(edges)}), got {len(cells)}")
        alpha, weights = _frozen(self.alpha), _frozen(self.weights)
        if alpha.ndim != 3 or alpha.shape[0] < 1 or alpha.shape[1:] != (len(edges), len(ops)):
            raise ValueError(f"alpha: expected [T+1, {len(edges)}, {len(ops)}], got {alpha.shape}")
        if weights.shape != alpha.shape:
            raise ValueError(f"weights: expected {alpha.shape} like alpha, got {weights.shape}")
        n = alpha.shape[0]
        series = {"valid_acc": self.valid_acc, "hessian_eig": self.hessian_eig}
        series |= {f"metrics[{k!r}]": v for k, v in self.metrics.items()}
        for what, values in series.items():
            if np.shape(values) != (n,):
                raise ValueError(f"{what}: expected [{n}] (one per epoch), got {np.shape(values)}")
        if len(self.archs) != n:
            raise ValueError(f"archs: expected {n} (one per epoch), got {len(self.archs)}")
        object.__setattr__(self, "ops", ops)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "cells", cells)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "archs", tuple(self.archs))
        object.__setattr__(self, "valid_acc", _frozen(self.valid_acc))
        object.__setattr__(self, "hessian_eig", _frozen(self.hessian_eig))
        object.__setattr__(self, "metrics", {str(k): _frozen(v) for k, v in self.metrics.items()})

    @property
    def last_epoch(self) -> int:
        """T: the last recorded epoch."""
        return self.alpha.shape[0] - 1

    def prefix(self, t: int) -> Trajectory:
        """Epochs 0..t: what an online criterion sees at the end of epoch t."""
        if not 0 <= t <= self.last_epoch:
            raise ValueError(f"prefix({t}): epoch out of range 0..{self.last_epoch}")
        s = slice(0, t + 1)
        return Trajectory(
            ops=self.ops,
            edges=self.edges,
            alpha=self.alpha[s],
            weights=self.weights[s],
            archs=self.archs[s],
            valid_acc=self.valid_acc[s],
            hessian_eig=self.hessian_eig[s],
            metrics={k: v[s] for k, v in self.metrics.items()},
            cells=self.cells,
            space=self.space,
        )

    def finite_prefix(self) -> Trajectory:
        """Epochs 0..t-1 before the first epoch t whose alpha or weights hold NaN or inf (a search
        that diverged); the whole trajectory when all is finite. Every criterion sees only this."""
        bad = ~(
            np.isfinite(self.alpha).all(axis=(1, 2)) & np.isfinite(self.weights).all(axis=(1, 2))
        )
        if not bad.any():
            return self
        return self.prefix(max(int(np.argmax(bad)) - 1, 0))

    @classmethod
    def from_alpha(
        cls,
        alpha: np.ndarray,
        ops: Sequence[str] | None = None,
        valid_acc: np.ndarray | None = None,
        hessian_eig: np.ndarray | None = None,
        metrics: Mapping[str, np.ndarray] | None = None,
        space: str = spaces.DEFAULT,
    ) -> Trajectory:
        """A DARTS trajectory on a space's rows from logits alone.

        alpha: [T+1, R, K] logits, order (epoch, the space's rows, ops; ops default: all of the
        space's). weights = softmax(alpha); archs = the space's genotype of each epoch's weights
        (NAS-Bench-201: per-edge argmax, first op on ties); missing series are all NaN.
        """
        unit = spaces.get_space(space)
        alpha = np.asarray(alpha, dtype=np.float64)
        ops = tuple(unit.ops if ops is None else ops)
        z = np.exp(alpha - alpha.max(axis=2, keepdims=True))
        weights = z / z.sum(axis=2, keepdims=True)
        nan = np.full(alpha.shape[0], np.nan)
        return cls(
            ops=ops,
            edges=tuple(e for _, e in unit.rows()),
            alpha=alpha,
            weights=weights,
            archs=tuple(unit.genotype_text(w, ops) for w in weights),
            valid_acc=nan if valid_acc is None else valid_acc,
            hessian_eig=nan if hessian_eig is None else hessian_eig,
            metrics=metrics or {},
            space=space,
        )


@dataclass(frozen=True)
class StopResult:
    """What a criterion chose."""

    epoch: int
    """the chosen epoch, 1..T (T when not fired; 0 only for a trajectory with T = 0)"""
    fired: bool
    """False when the criterion never fired and `epoch` fell back to T"""
    arch: str
    """the arch string recorded at `epoch`"""
    note: str = ""
    """why it did not fire, or a detail worth a human's eye"""


# ---------------------------------------------------------------- helpers


def stop_at(traj: Trajectory, epoch: int, note: str = "") -> StopResult:
    """A fired result at `epoch` (1..T), with the arch recorded there."""
    return StopResult(epoch=epoch, fired=True, arch=traj.archs[epoch], note=note)


def no_stop(traj: Trajectory, note: str) -> StopResult:
    """Fall back to the last epoch T, not fired; `note` says why."""
    T = traj.last_epoch
    return StopResult(epoch=T, fired=False, arch=traj.archs[T], note=note)


_stop, _no_stop = stop_at, no_stop


_NOTHING_TO_CHOOSE = "the trajectory has no epoch after 0 to choose from"


def _best_epoch(scores: np.ndarray, eligible: np.ndarray | None = None) -> int | None:
    """Earliest epoch in 1..T maximising `scores` [T+1] over finite, eligible entries; None if none."""
    ok = np.isfinite(scores)
    ok[0] = False
    if eligible is not None:
        ok &= eligible
    if not ok.any():
        return None
    best = scores[ok].max()
    near = ok & (scores >= best - _TIE_RTOL * max(1.0, abs(best)))
    return int(np.flatnonzero(near)[0])


def best_epoch(scores: np.ndarray, eligible: np.ndarray | None = None) -> int | None:
    """For your own criteria: the earliest epoch in 1..T maximising `scores` [T+1] (finite and
    `eligible` entries only; scores within relative 1e-12 of the best are ties); None if none."""
    return _best_epoch(np.array(scores, dtype=np.float64), eligible)


def _suggest(word: str, options: Sequence[str]) -> str:
    """'; did you mean X?' for a close match, else the list of valid options."""
    close = difflib.get_close_matches(word, list(options), n=3)
    if close:
        return f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return f"; valid: {', '.join(options)}"


_MIN_INT = {"k": 1, "window": 1, "delta": 1, "patience": 0, "start_epoch": 0}


def _check_param(key: str, value: Any) -> None:
    """Range/name checks on one parameter value, shared by the criteria and parse_criterion."""
    ops = spaces.all_ops()
    if key == "op" and value not in ops:
        raise ValueError(f"op: unknown op {value!r}{_suggest(str(value), ops)}")
    if key == "exclude":
        for o in value:
            if o not in ops:
                raise ValueError(f"exclude: unknown op {o!r}{_suggest(str(o), ops)}")
    if key == "cell" and value and value not in spaces.cell_types():
        raise ValueError(
            f"cell: unknown cell type {value!r}{_suggest(str(value), spaces.cell_types())}"
        )
    if key in _MIN_INT and value < _MIN_INT[key]:
        raise ValueError(f"{key}: must be >= {_MIN_INT[key]}, got {value!r}")
    if key == "factor" and not value > 0:
        raise ValueError(f"factor: must be > 0, got {value!r}")


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
    return _no_stop(
        traj, f"peak at epoch {t} is {T - t} epoch(s) before the last ({T}); patience {patience}"
    )


# ---------------------------------------------------------------- Eq.11-13


def magnitude_cell(traj: Trajectory, cell: str = "") -> str:
    """The cell type whose rows `magnitude` averages: `cell`, or the space's default (DARTS:
    normal, as the paper's code) when the trajectory has it, else the first row's."""
    if cell:
        return cell
    default = spaces.get_space(traj.space).magnitude_cell
    return default if default in traj.cells else traj.cells[0]


def magnitude(traj: Trajectory, exclude: Sequence[str] = (), cell: str = "") -> np.ndarray:
    """Eq.11 operation magnitude m[t, k] = mean over one cell type's edges of traj.weights[t, :, k]:
    [T+1, K] (cell: see magnitude_cell; NAS-Bench-201 has one, `shared`).

    Column k is always op traj.ops[k]; the columns of ops in `exclude` (op names) are NaN.
    """
    _check_params(exclude=exclude, cell=cell)
    rows = np.asarray(traj.cells) == magnitude_cell(traj, cell)
    if not rows.any():
        raise ValueError(
            f"cell: no {cell!r} rows in this search (cells: {sorted(set(traj.cells))})"
        )
    m = traj.weights[:, rows].mean(axis=1)
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
        return _no_stop(traj, f"op {op!r} is not in this search's op set {list(traj.ops)}")
    if cell and cell not in traj.cells:
        return _no_stop(
            traj, f"cell {cell!r} is not in this search (cells: {sorted(set(traj.cells))})"
        )
    if traj.last_epoch == 0:
        return _no_stop(traj, _NOTHING_TO_CHOOSE)
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
        return _no_stop(traj, "no finite operation magnitude")
    return _too_recent(traj, t, patience) or _stop(traj, t, note)


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
        return _no_stop(traj, _NOTHING_TO_CHOOSE)
    return _stop(traj, traj.last_epoch)


def best_valid(traj: Trajectory) -> StopResult:
    """The epoch of the best supernet search-valid accuracy (NaN epochs ignored)."""
    t = _best_epoch(traj.valid_acc)
    if t is None:
        return _no_stop(
            traj, _NOTHING_TO_CHOOSE if traj.last_epoch == 0 else "no valid_acc recorded"
        )
    return _stop(traj, t)


def oracle(traj: Trajectory, metric: str = "cifar10_test") -> StopResult:
    """The epoch whose genotype scores best on the benchmark (upper bound; NaN epochs ignored)."""
    if metric not in traj.metrics:
        return _no_stop(
            traj, f"metric {metric!r} not recorded{_suggest(metric, sorted(traj.metrics))}"
        )
    t = _best_epoch(traj.metrics[metric])
    if t is None:
        return _no_stop(
            traj, _NOTHING_TO_CHOOSE if traj.last_epoch == 0 else f"{metric} unknown at every epoch"
        )
    return _stop(traj, t)


def dartsplus_sc(traj: Trajectory, k: int = 2) -> StopResult:
    """DARTS+ sc_k: the first epoch whose genotype has >= k skip_connect edges (in the space's
    magnitude cell: DARTS's normal cell, as DARTS+)."""
    _check_params(k=k)
    unit = spaces.get_space(traj.space)
    for t in range(1, traj.last_epoch + 1):
        if unit.skip_count(traj.archs[t], unit.magnitude_cell) >= k:
            return _stop(traj, t)
    if traj.last_epoch == 0:
        return _no_stop(traj, _NOTHING_TO_CHOOSE)
    if "skip_connect" not in traj.ops:
        return _no_stop(traj, "skip_connect is not in this search's op set")
    return _no_stop(traj, f"no genotype with >= {k} skip_connect edges")


def dartsplus_rt(traj: Trajectory, k: int = 10, learnable_only: bool = False) -> StopResult:
    """DARTS+ rt_k: the first epoch where every edge's ranking of ops by alpha has held k epochs."""
    _check_params(k=k)
    learnable = spaces.get_space(traj.space).learnable_ops
    cols = [i for i, o in enumerate(traj.ops) if not learnable_only or o in learnable]
    if not cols:
        return _no_stop(traj, f"no learnable op ({', '.join(sorted(learnable))}) in the op set")
    # [T+1, E, K'] ops per edge, largest alpha first; stable sort: ties keep op order
    ranking = np.argsort(-traj.alpha[:, :, cols], axis=2, kind="stable")
    # same[t]: epoch t ranks every edge as epoch t-1 did (compared from epoch 2 on)
    same = np.zeros(traj.last_epoch + 1, dtype=bool)
    same[2:] = (ranking[2:] == ranking[1:-1]).all(axis=(1, 2))
    same = same.tolist()
    count = longest = 0
    for t in range(1, traj.last_epoch + 1):
        count = count + 1 if same[t] else 1
        longest = max(longest, count)
        if count >= k:
            return _stop(traj, t)
    if traj.last_epoch == 0:
        return _no_stop(traj, _NOTHING_TO_CHOOSE)
    return _no_stop(traj, f"ranking never held {k} epochs (longest {longest})")


def _local_averages(ev: np.ndarray, window: int) -> list[float | None]:
    """R-DARTS's EVLocalAvg local average at each evaluation k (0-based): the mean of evaluations
    max(0, k - window + 1)..k, from k = ceil(window / 2) - 1 on (partial windows until the first
    full one, as EVLocalAvg), None before."""
    first = math.ceil(window / 2) - 1
    return [
        float(np.mean(ev[max(0, k - window + 1) : k + 1])) if k >= first else None
        for k in range(len(ev))
    ]


def _ratio(now: float, before: float) -> float:
    """now / before with numpy's float semantics (inf or nan on a zero), as EVLocalAvg divides."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(now) / np.float64(before))


def _evaluations(traj: Trajectory) -> tuple[list[int], np.ndarray]:
    """(epochs >= 1 with a finite hessian_eig, their eigenvalues): the DARTS-ES evaluations."""
    evals = (np.flatnonzero(np.isfinite(traj.hessian_eig[1:])) + 1).tolist()
    return evals, traj.hessian_eig[evals]


def darts_es(
    traj: Trajectory,
    window: int = 5,
    delta: int = 4,
    factor: float = 1.3,
    start_epoch: int = 10,
    rollback: bool = True,
) -> StopResult:
    """DARTS-ES as R-DARTS (Zela et al.; automl/RobustDARTS EVLocalAvg.early_stop).

    Evaluations: the epochs >= 1 with a finite hessian_eig (every `hessian_every` epochs).
    avg(k): local average of evaluations k-window+1..k (partial windows at the start, as
    EVLocalAvg). At evaluation k it stops when avg(k) / avg(k - delta) > factor, provided the
    rollback target, evaluation j = k - delta - window // 2 (the CENTRE of the earlier window:
    R-DARTS's stop epoch, la_epoch - ev_freq * delta), exists and is at an epoch >= start_epoch.
    rollback: the genotype at evaluation j's epoch (R-DARTS), else the current one at evaluation
    k's epoch. Epochs are this product's (epoch t = after t epochs; R-DARTS counts from 0, so its
    es_start_epoch=10 at one evaluation per epoch is start_epoch=11 here). R-DARTS also skips the
    check at its last epoch; here every epoch is checked (online and offline agree).
    """
    _check_params(window=window, delta=delta, factor=factor, start_epoch=start_epoch)
    evals, ev = _evaluations(traj)
    avg = _local_averages(ev, window)
    for k in range(delta + window // 2, len(evals)):
        j = k - delta - window // 2
        ratio = _ratio(avg[k], avg[k - delta])
        if evals[j] >= start_epoch and ratio > factor:
            note = f"local_avg ratio {ratio:.3g} at epoch {evals[k]}"
            return _stop(traj, evals[j] if rollback else evals[k], note)
    if traj.last_epoch == 0:
        return _no_stop(traj, _NOTHING_TO_CHOOSE)
    need = delta + window // 2 + 1
    if len(evals) < need:
        return _no_stop(traj, f"{len(evals)} Hessian evaluation(s) after epoch 0; needs >= {need}")
    return _no_stop(traj, f"local_avg never grew by > {factor}x (rollback epoch >= {start_epoch})")


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
    for k in range(first, len(evals)):
        e = evals[k] - 1
        if e >= p["total_epochs"] - 1:
            break
        la_epoch = e - p["ev_freq"] * (p["window"] // 2)
        if la_epoch - p["ev_freq"] * p["delta"] < p["start"] or k - p["delta"] < first:
            continue
        ratio = _ratio(avg[k], avg[k - p["delta"]])
        if ratio > p["factor"]:
            return _stop(traj, evals[k], f"local_avg ratio {ratio:.3g} at epoch {evals[k]}")
    if traj.last_epoch == 0:
        return _no_stop(traj, _NOTHING_TO_CHOOSE)
    return _no_stop(
        traj, "never fired (the paper's code fires from its epoch 12 to 48: ours 13-49)"
    )


# ---------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class CriterionInfo:
    """One catalogue entry: a criterion function and its metadata."""

    name: str
    fn: Callable[..., StopResult]
    doc: str
    """one line: what epoch it chooses"""
    params: dict[str, Any]
    """parameter name -> default (REQUIRED when the function gives none), read from fn's signature"""
    param_docs: dict[str, str]
    """parameter name -> one line"""
    kinds: dict[str, Any] = field(default_factory=dict)
    """parameter name -> the type a value must have (None: any); empty = the type of the default"""
    builtin: bool = True
    """False for a function named by import path in a job"""

    @property
    def where(self) -> str:
        """The function as `module:qualname` (for error messages)."""
        return f"{self.fn.__module__}:{getattr(self.fn, '__qualname__', self.name)}"

    def kind(self, key: str) -> Any:
        if key in self.kinds:
            return self.kinds[key]
        default = self.params[key]
        return None if default is REQUIRED or default is None else type(default)


#: The default of a user criterion's parameter that has none: the job must give it.
REQUIRED = inspect.Parameter.empty


from ray_nas.errors import CriterionError  # noqa: E402


def _info(fn: Callable[..., StopResult], doc: str, **param_docs: str) -> CriterionInfo:
    sig = list(inspect.signature(fn).parameters.values())[1:]  # after traj
    params = {p.name: p.default for p in sig}
    if set(params) != set(param_docs):
        raise TypeError(f"{fn.__name__}: document exactly its parameters {sorted(params)}")
    return CriterionInfo(fn.__name__, fn, doc, params, {p: param_docs[p] for p in params})


_OP = "the op o_i whose magnitude peak is sought (by name)"
_CELL = "the cell type whose magnitudes are read (normal | reduce on DARTS); empty = the space's (normal)"
_GATE = "after op first leads m(t, .), only epochs where it leads are eligible (the paper's code)"
_PATIENCE = (
    "fire only when the peak is >= this many epochs before the last (online use); 0 = always"
)

#: Every criterion by name.
CRITERIA: dict[str, CriterionInfo] = {
    c.name: c
    for c in [
        _info(final, "the last epoch T: no early stop"),
        _info(best_valid, "the best supernet search-valid accuracy"),
        _info(
            ss_eq12,
            "Eq.12 selective stop: peak of m(t, op)",
            op=_OP,
            gate=_GATE,
            patience=_PATIENCE,
            cell=_CELL,
        ),
        _info(
            ss_eq13,
            "Eq.13 selective stop: peak of sum_j (m(t, op) - m(t, j)); = Eq.12 over the full op set",
            op=_OP,
            exclude="op names left out of the sum, e.g. [none]",
            gate=_GATE,
            patience=_PATIENCE,
            gate_all_ops="the gate compares with every op, excluded ones too (the paper's code); "
            "false = only with the ops not excluded",
            cell=_CELL,
        ),
        _info(
            dartsplus_sc,
            "DARTS+ sc_k: first genotype with >= k skip_connect edges",
            k="skip_connect edges",
        ),
        _info(
            dartsplus_rt,
            "DARTS+ rt_k: first epoch where every edge's alpha ranking has held k epochs",
            k="epochs the ranking must hold (counter is 1 at epoch 1)",
            learnable_only="rank only the ops with weights (NB201: nor_conv_1x1/3x3; DARTS+ paper)",
        ),
        _info(
            darts_es,
            "DARTS-ES as R-DARTS (automl/RobustDARTS EVLocalAvg): Hessian eigenvalue local "
            "average grows by > factor",
            window="evaluations per local average (partial windows at the start, as R-DARTS)",
            delta="evaluations between the two local averages compared",
            factor="growth ratio that stops the search",
            start_epoch="the rollback epoch (centre of the earlier window) must be >= this",
            rollback="return the genotype at the centre of the earlier window (R-DARTS) "
            "instead of the current one",
        ),
        _info(
            darts_es_paper,
            "DARTS-ES as the paper's code ran it (chaoji90/Selective-Stop DARTS-V1-ES.py): "
            "EVLocalAvg(5, ev_freq=2) on one eigenvalue per epoch, the current genotype, "
            "fires at epochs 13-49 only",
        ),
        _info(
            oracle,
            "the best benchmark score over all epochs (upper bound)",
            metric="benchmark metric, e.g. cifar10_test",
        ),
    ]
}


@dataclass(frozen=True)
class CriterionSpec:
    """A criterion with all its parameters fixed, as a job spec or the CLI names it."""

    name: str
    """a catalogue name, or `package.module:function`"""
    params: dict[str, Any]
    """every parameter, defaults filled in"""
    label: str
    """stable display/grouping key: `name`, or `name[k=v,...]` with the user's explicit params, sorted"""

    @property
    def params_json(self) -> str:
        """All params as canonical JSON (sorted keys, tuples as lists); parameters added later
        (_ADDED_PARAMS) only where they differ from their default, so older selections keep
        their text."""
        kept = {k: v for k, v in self.params.items() if _ADDED_PARAMS.get(k, object()) != v}
        return json.dumps({k: _jsonable(v) for k, v in kept.items()}, sort_keys=True)

    @property
    def info(self) -> CriterionInfo:
        return resolve_criterion(self.name)

    def apply(self, traj: Trajectory) -> StopResult:
        """The criterion on `traj`, the shared rules checked (CriterionError when broken)."""
        return apply_checked(self.info, self.label, traj, self.params)

    def __hash__(self) -> int:
        return hash((self.name, self.params_json, self.label))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def apply_checked(
    info: CriterionInfo, label: str, traj: Trajectory, params: Mapping[str, Any]
) -> StopResult:
    """Call a criterion and enforce the shared rules on what it returns.

    Raises CriterionError (one line naming the function) when it raises, returns something other
    than a StopResult, an epoch outside 1..T (0 only when T = 0), a not-fired epoch other than T,
    or an arch other than the one recorded at its epoch. Non-finite epochs are ignored: the
    criterion sees `traj.finite_prefix()` (a diverged search's epochs before the divergence).
    """
    who = f"criterion {label!r}" + ("" if info.where == info.name else f" ({info.where})")
    traj = traj.finite_prefix()
    try:
        r = info.fn(traj, **params)
    except Exception as e:
        raise CriterionError(f"{who} raised {type(e).__name__}: {_first_line(e)}") from e
    return _checked_result(r, who, traj)


def _checked_result(r: Any, who: str, traj: Trajectory) -> StopResult:
    T = traj.last_epoch
    if not isinstance(r, StopResult):
        raise CriterionError(
            f"{who} returned {type(r).__name__} {repr(r)[:60]}, not a StopResult "
            "(build one with criteria.stop_at(traj, epoch) or criteria.no_stop(traj, note))"
        )
    epoch, fired = r.epoch, r.fired
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
        raise CriterionError(f"{who} returned epoch {epoch!r}; an epoch is an int in 1..{T}")
    if not isinstance(fired, (bool, np.bool_)):
        raise CriterionError(f"{who} returned fired={fired!r}; expected true or false")
    if T == 0 and (epoch != 0 or fired):
        raise CriterionError(
            f"{who} returned epoch {epoch} fired={bool(fired)} on a trajectory with only epoch 0; "
            "the rule: epoch 0, not fired"
        )
    if T > 0 and not 1 <= epoch <= T:
        raise CriterionError(
            f"{who} returned epoch {epoch}; a criterion chooses among epochs 1..{T} "
            "(epoch 0 is before any update)"
        )
    if not fired and epoch != T:
        raise CriterionError(
            f"{who} did not fire but returned epoch {epoch}; one that does not fire gives the "
            f"last epoch ({T}): return criteria.no_stop(traj, note)"
        )
    if r.arch != traj.archs[epoch]:
        raise CriterionError(
            f"{who} returned arch {r.arch!r} for epoch {epoch}, which recorded {traj.archs[epoch]!r}"
        )
    return StopResult(int(epoch), bool(fired), r.arch, str(r.note))


#: parameters added after stores existed -> their default (left out of params_json at it)
_ADDED_PARAMS: dict[str, Any] = {"cell": ""}


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _fmt(v: Any) -> str:
    """Label spelling of a value: [a,b] for lists, true/false for bools."""
    if isinstance(v, tuple):
        return "[" + ",".join(map(str, v)) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _coerce(name: str, key: str, value: Any, kind: Any) -> Any:
    """`value` as type `kind` (None: anything), or ValueError naming the criterion and parameter."""
    ok = True
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    elif kind in (tuple, list):  # a list of names (op names for the built-ins)
        value = (value,) if isinstance(value, str) else value
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    if not ok:
        want = {tuple: "a list of op names", list: "a list of strings", bool: "true/false"}
        raise ValueError(
            f"criterion {name!r}: parameter {key!r} expects "
            f"{want.get(kind, getattr(kind, '__name__', kind))}, got {value!r}"
        )
    return value


# ---------------------------------------------------------------- criteria named by import path


def resolve_criterion(name: str) -> CriterionInfo:
    """The catalogue entry of a built-in name, or of a function named `package.module:function`.

    The module is imported (from sys.path, plus the current directory, as `python -m` would):
    a job runs the code it names. Raises ValueError (one line) on an unknown name, a module that
    cannot be imported, a misspelt function or a signature that cannot take a trajectory.
    """
    if name in CRITERIA:
        return CRITERIA[name]
    if ":" not in name:
        raise ValueError(
            f"unknown criterion {name!r}{_suggest(name, list(CRITERIA))} "
            "(or name your own function as package.module:function)"
        )
    return _import_criterion(name)


@functools.cache
def _import_criterion(path: str) -> CriterionInfo:
    module_name, _, attr = path.partition(":")
    parts = [*module_name.split("."), *attr.split(".")]
    if not all(p.isidentifier() for p in parts):
        raise ValueError(f"criterion {path!r}: expected package.module:function")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ValueError(
            f"criterion {path!r}: cannot import module {module_name!r} ({_first_line(e)}); "
            "it must be importable here and on every worker (PYTHONPATH, an installed package)"
        ) from None
    except Exception as e:
        raise ValueError(
            f"criterion {path!r}: importing {module_name!r} raised {type(e).__name__}: "
            f"{_first_line(e)}"
        ) from None
    fn: Any = module
    for i, a in enumerate(attr.split(".")):
        if not hasattr(fn, a):
            here = [n for n in dir(fn) if not n.startswith("_") and callable(getattr(fn, n))]
            owner = module_name if i == 0 else f"{module_name}:{'.'.join(attr.split('.')[:i])}"
            raise ValueError(
                f"criterion {path!r}: {owner} has no function {a!r}{_suggest(a, here)}"
            )
        fn = getattr(fn, a)
    if not callable(fn):
        raise ValueError(f"criterion {path!r}: {attr} is a {type(fn).__name__}, not a function")
    return _user_info(path, fn)


def _user_info(path: str, fn: Callable[..., StopResult]) -> CriterionInfo:
    """Parameters, defaults and types of a user criterion `fn(traj, **params)`."""
    try:
        sig = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise ValueError(f"criterion {path!r}: its signature cannot be read") from None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not sig or sig[0].kind not in positional:
        raise ValueError(f"criterion {path!r}: must take the trajectory as its first argument")
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: fall back to the defaults' types
        hints = {}
    params, kinds = {}, {}
    for p in sig[1:]:
        if p.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            raise ValueError(
                f"criterion {path!r}: parameter {p.name!r} must be a named keyword "
                "(no *args, **kwargs or positional-only parameters)"
            )
        params[p.name] = p.default
        kinds[p.name] = _annotation_kind(hints.get(p.name), p.default)
    doc = (inspect.getdoc(fn) or "(no docstring)").splitlines()[0]
    param_docs = {k: f"{getattr(kinds[k], '__name__', 'any')} (from the signature)" for k in params}
    return CriterionInfo(path, fn, doc, params, param_docs, kinds, builtin=False)


def _annotation_kind(hint: Any, default: Any) -> Any:
    """bool/int/float/str/list from an annotation (X | None counts as X), else the default's type."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is not None and args and typing.get_origin(hint) in (typing.Union, _UnionType):
        hint = args[0] if len(args) == 1 else None
    origin = typing.get_origin(hint) or hint
    if origin in (bool, int, float, str):
        return origin
    if origin in (list, tuple) or origin is Sequence:
        return list
    if hint is None and default is not REQUIRED and default is not None:
        kind = type(default)
        return list if kind is tuple else kind if kind in (bool, int, float, str, list) else None
    return None


_UnionType = type(int | None)


def parse_criterion(item: str | Mapping[str, Any]) -> CriterionSpec:
    """A CriterionSpec from a name ("final"), a dict ({name: "ss_eq13", exclude: [none]}) or an
    import path ({name: "my_lab.stops:entropy_drop", threshold: 0.5}).

    Raises ValueError (one line, with close matches) on an unknown name or parameter, a missing
    one, a wrong type or an out-of-range value.
    """
    if isinstance(item, str):
        name, given = item, {}
    elif isinstance(item, Mapping):
        given = dict(item)
        name = given.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(
                f"a criterion given as a dict needs a 'name' (str), got {dict(item)!r}"
            )
    else:
        raise ValueError(f"a criterion is a name or {{name: ..., params}}, got {item!r}")
    info = resolve_criterion(name)
    params = dict(info.params)
    for key, value in given.items():
        if key not in info.params:
            valid = list(info.params) or ["(none)"]
            raise ValueError(
                f"criterion {name!r} has no parameter {key!r}{_suggest(str(key), valid)}"
            )
        params[key] = _coerce(name, key, value, info.kind(key))
    missing = [k for k, v in params.items() if v is REQUIRED]
    if missing:
        raise ValueError(
            f"criterion {name!r}: missing parameter {missing[0]!r} ({info.where} gives it no default)"
        )
    if info.builtin:
        try:
            _check_params(**params)
        except ValueError as e:
            raise ValueError(f"criterion {name!r}: {e}") from None
    label = name
    if given:
        label += "[" + ",".join(f"{k}={_fmt(params[k])}" for k in sorted(given)) + "]"
    return CriterionSpec(name=name, params=params, label=label)


_PAPER_SET: list[str | dict[str, Any]] = [
    "final",
    "best_valid",
    {"name": "ss_eq12", "op": "nor_conv_3x3"},
    {"name": "ss_eq13", "op": "nor_conv_3x3"},
    {"name": "ss_eq13", "op": "nor_conv_3x3", "exclude": ["none"]},
    *({"name": "dartsplus_sc", "k": k} for k in (2, 3, 4)),
    *({"name": "dartsplus_rt", "k": k} for k in (2, 3, 4, 10)),
    "darts_es",
    "darts_es_paper",
    "oracle",
]


def default_criteria() -> list[CriterionSpec]:
    """The paper's comparison set (Tables 2-3), used when a job spec lists no criteria."""
    return [parse_criterion(item) for item in _PAPER_SET]


def describe_criteria(extra: Sequence[CriterionInfo] = ()) -> str:
    """A text table of every criterion (the catalogue, then `extra`: a job's own functions), its
    parameters with defaults, and what they mean."""
    lines = []
    for info in [*CRITERIA.values(), *extra]:
        mine = "" if info.builtin else "  (your code)"
        lines.append(f"{info.name:<23} {info.doc}{mine}")
        for key, default in info.params.items():
            setting = f"{key}={'(required)' if default is REQUIRED else _fmt(default)}"
            lines.append(f"  {setting:<22}{info.param_docs[key]}")
    return "\n".join(lines)


def job_functions(items: Sequence[Any]) -> list[CriterionInfo]:
    """The user functions (named by import path) among criteria items, each once, in order."""
    names = [i if isinstance(i, str) else i.get("name") for i in items if i is not None]
    infos = {n: resolve_criterion(n) for n in names if isinstance(n, str)}
    return [i for i in infos.values() if not i.builtin]
