"""The paper's Section 2.2 numerical study: how long momentum SGD takes to undo a softmax flip.

Zhang & Ding explain why a larger architecture learning rate eases DARTS' degradation with a toy
model: a two-entry softmax y = softmax(x) whose upstream gradient dl/dy is [1, -1] for the first
t1 steps and [-1, 1] afterwards. The outputs separate in phase 1; phase 2 must first cancel the
momentum and then climb back from the saturated side of the softmax, where dy/dx is small
(their Eq.10). They report 34 restoring steps at lr 0.001 versus 44 at lr 0.01 (x0 = [0.001,
0.001], t1 = 25, momentum 0.9). `restore_steps` reproduces both numbers exactly.

Pure Python + numpy: no torch, so this runs anywhere in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

#: the longest phase 1 `restore_steps` runs (about a second); the paper's is 25 steps
MAX_T1 = 100_000


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def restore_steps(
    lr: float,
    t1: int = 25,
    momentum: float = 0.9,
    x0: Sequence[float] = (0.001, 0.001),
    max_steps: int = 10000,
) -> int:
    """Steps after `t1` until the softmax outputs' order is restored (the paper's t2 at `lr`).

    The convention, which reproduces the paper's 34 (lr 0.001) and 44 (lr 0.01) exactly:

    - Step k = 0, 1, 2, ... evaluates y = softmax(x) at the current x and the upstream gradient
      g_y = [1, -1] for k < t1, [-1, 1] for k >= t1 (so phase 1 is exactly t1 updates).
    - Gradient w.r.t. x through the softmax Jacobian: g_x = (diag(y) - y y^T) g_y.
    - torch.optim.SGD with momentum, no dampening, no Nesterov, no weight decay:
      buf = g_x on the first step, then buf = momentum * buf + g_x; x -= lr * buf.
      (Gradient descent; ascent gives the same count, since the two-entry problem is symmetric.)
    - Restored: after update k >= t1, the sign of y[0] - y[1] is no longer the sign it had after
      the last phase-1 update (t1 - 1), i.e. the outputs have crossed back (a tie counts).
    - Returned count: the number of phase-2 updates up to and including the crossing one,
      k - t1 + 1.

    Other conventions miss at least one of the two numbers: Nesterov momentum gives 33 / 42,
    switching the sign one step early (phase 1 of t1 - 1 updates) 33 / 42, one step late 35 / 46.
    Without momentum phase 2 retraces phase 1 back to the tie, and one more step crosses it
    (26 for t1 = 25). Momentum adds the steps spent cancelling the buffer (34 at momentum 0.9
    in the small-lr limit), and a larger lr saturates the softmax in phase 1, so phase 2
    restarts where dy/dx is small: the count grows with lr (44 at 0.01, 152 at 0.05, 417 at
    0.1) and with momentum.

    Args:
        lr: learning rate (> 0).
        t1: number of phase-1 updates (>= 1).
        momentum: SGD momentum in [0, 1).
        x0: the initial softmax input, two entries.
        max_steps: give up (RuntimeError) after this many phase-2 updates.

    Returns:
        The number of phase-2 updates until y[0] - y[1] changes sign.
    """
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not 1 <= t1 <= MAX_T1:
        raise ValueError(f"t1 must be in 1..{MAX_T1} (the paper uses 25), got {t1}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    x = np.asarray(x0, dtype=np.float64).copy()
    if x.shape != (2,):
        raise ValueError(f"x0 must have two entries, got {x0!r}")

    buf: np.ndarray | None = None

    def update(g_y: np.ndarray) -> float:
        nonlocal x, buf
        y = _softmax(x)
        g_x = (np.diag(y) - np.outer(y, y)) @ g_y
        buf = g_x.copy() if buf is None else momentum * buf + g_x
        x = x - lr * buf
        y = _softmax(x)
        return float(y[0] - y[1])

    for _ in range(t1):
        gap = update(np.array([1.0, -1.0]))
    side = np.sign(gap)
    if side == 0:
        raise ValueError("the outputs are tied after phase 1: there is no order to restore")
    for step in range(1, max_steps + 1):
        if np.sign(update(np.array([-1.0, 1.0]))) != side:
            return step
    raise RuntimeError(f"order not restored within {max_steps} phase-2 steps at lr {lr}")


def _restore_cell(lr: float, kwargs: dict) -> str:
    """restore_steps as a table cell; an order never restored within max_steps says so."""
    try:
        return str(restore_steps(lr, **kwargs))
    except RuntimeError:
        return f"not restored within {kwargs.get('max_steps', 10000)} steps"


def format_restore_table(lrs: Iterable[float], **kwargs) -> str:
    """A plain-text table `lr | t2 (steps to restore)`, one row per lr; kwargs go to restore_steps."""
    rows = [(f"{lr:g}", _restore_cell(lr, kwargs)) for lr in lrs]
    header = ("lr", "t2 (steps to restore)")
    w0 = max(len(header[0]), *(len(r[0]) for r in rows)) if rows else len(header[0])
    lines = [f"{header[0]:>{w0}} | {header[1]}", f"{'-' * w0}-+-{'-' * len(header[1])}"]
    lines += [f"{a:>{w0}} | {b}" for a, b in rows]
    return "\n".join(lines)
