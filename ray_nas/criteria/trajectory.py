"""What every criterion reads and returns: `Trajectory` (a search's epochs 0..T) and `StopResult`,
with the helpers criteria share (stop_at, no_stop, best_epoch).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
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
        that diverged); the whole trajectory when all is finite. Every criterion sees only this
        (computed once per trajectory: every criterion of a job asks)."""
        return self._finite_prefix

    @functools.cached_property
    def _finite_prefix(self) -> Trajectory:
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


def from_trial(trial, metrics: dict[str, np.ndarray] | None = None) -> Trajectory:
    """The Trajectory of a stored trial (`store.TrialData`: epochs, alpha, weights, cells), with
    per-epoch benchmark `metrics` ({name: [T+1] score of each epoch's arch}) when given."""
    return Trajectory(
        ops=trial.ops,
        edges=trial.edges,
        alpha=trial.alpha,
        weights=trial.weights,
        archs=tuple(trial.epochs["arch"]),
        valid_acc=np.asarray(trial.epochs["valid_acc"], dtype=np.float64),
        hessian_eig=np.asarray(trial.epochs["hessian_eig"], dtype=np.float64),
        metrics=metrics or {},
        cells=trial.cells,
        space=trial.space,
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
