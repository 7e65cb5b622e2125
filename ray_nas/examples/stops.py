"""An example of your own stop criterion, named in a job by its import path:

    criteria: [final, {name: "ray_nas.examples.stops:entropy_drop", threshold: 0.9}]
    stop: {name: "ray_nas.examples.stops:entropy_drop", threshold: 0.9}

A criterion is a function `fn(traj, **params) -> StopResult` over a read-only
`ray_nas.criteria.Trajectory` of epochs 0..T. Its keyword parameters (with their defaults and type
annotations) are what a job may set; ray_nas checks a job's values against them before any work.
Build the result with `criteria.stop_at(traj, epoch, note)` (fired) or `criteria.no_stop(traj,
note)` (not fired: the last epoch T). Read nothing past the last epoch given, and the same
function stops a search online (`stop:`) exactly where it selects offline on that prefix.
"""

from __future__ import annotations

import numpy as np

from ray_nas.criteria import StopResult, Trajectory, no_stop, stop_at


def mean_edge_entropy(traj: Trajectory) -> np.ndarray:
    """[T+1] mean over edges of the entropy of each edge's op distribution w[t, edge, :],
    divided by log K: 1 = uniform over the K ops, 0 = all weight on one op. NaN when K < 2."""
    k = len(traj.ops)
    if k < 2:
        return np.full(traj.last_epoch + 1, np.nan)
    w = traj.weights
    h = -(w * np.log(np.clip(w, 1e-300, None))).sum(axis=2) / np.log(k)
    return h.mean(axis=1)


def entropy_drop(traj: Trajectory, threshold: float = 0.9) -> StopResult:
    """The first epoch whose mean normalised edge entropy of the op distribution is < threshold."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    h = mean_edge_entropy(traj)
    below = np.flatnonzero(h[1:] < threshold) + 1  # epochs 1..T only
    if below.size:
        t = int(below[0])
        return stop_at(traj, t, f"mean edge entropy {h[t]:.4f} < {threshold}")
    if traj.last_epoch == 0:
        return no_stop(traj, "the trajectory has no epoch after 0 to choose from")
    lowest = np.nanmin(h[1:]) if np.isfinite(h[1:]).any() else float("nan")
    return no_stop(traj, f"mean edge entropy never below {threshold} (lowest {lowest:.4f})")
