"""Both DARTS-ES criteria against a transcription of the upstream logic they follow (issue 17).

`Tracker` restates EVLocalAvg (automl/RobustDARTS src/utils.py; the copy the paper's code
imports as utils_ES): one local average per evaluation from the ceil(window/2)-th on, its
`la_epochs` arithmetic and `early_stop`. The drivers feed it as R-DARTS's train_search.py and the
paper's DARTS-V1-ES.py do. Series are steps and geometric growths, with gaps for hessian_every > 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ray_nas import criteria as C


class Tracker:
    """EVLocalAvg(window, ev_freq, total_epochs), restated; only what early_stop reads."""

    def __init__(self, window: int, ev_freq: int, total_epochs: int):
        self.window, self.ev_freq, self.epochs = window, ev_freq, total_epochs
        self.ev: list[float] = []
        self.avg: list[float] = []
        self.la_epochs: dict[int, int] = {}
        self.lo, self.hi = 0, window  # the sliding window over self.ev
        self.stop_epoch: int | None = None

    def update(self, epoch: int, ev: float) -> None:
        self.ev.append(ev)
        half = math.ceil(self.window / 2)
        if len(self.ev) >= half and epoch < self.epochs - 1:
            if len(self.ev) < self.window:
                self.avg.append(np.mean(self.ev))
            else:
                self.avg.append(np.mean(self.ev[self.lo : self.hi]))
                self.lo, self.hi = self.lo + 1, self.hi + 1
            self.la_epochs[epoch] = epoch - self.ev_freq * (self.window // 2)
        elif len(self.ev) < half:
            self.la_epochs[epoch] = -1
        # (at epoch total_epochs - 1 it appends the tail averages; early_stop never reads them)

    def early_stop(self, epoch: int, factor: float, es_start_epoch: int, delta: int) -> bool:
        """True when it stops; a KeyError / IndexError where the upstream code raises."""
        la = self.la_epochs[epoch]
        if la - self.ev_freq * delta >= es_start_epoch:
            if np.float64(self.avg[-1]) / np.float64(self.avg[-1 - delta]) > factor:
                self.stop_epoch = la - self.ev_freq * delta
                return True
        return False


def rdarts(eig, every, window, delta, factor, start_epoch, rollback):
    """R-DARTS: update + early_stop at every evaluation, epochs numbered as the trajectory's."""
    tracker = Tracker(window, every, total_epochs=10**6)  # its last-epoch skip is not modelled
    for t in range(1, len(eig)):
        if np.isfinite(eig[t]):
            tracker.update(t, eig[t])
            if tracker.early_stop(t, factor, start_epoch, delta):
                return (tracker.stop_epoch if rollback else t), True
    return len(eig) - 1, False


def paper(eig):
    """The paper's DARTS-V1-ES.py: EVLocalAvg() fed each epoch e (from 0), early_stop(e, 1.3, 0);
    the current genotype on a stop; its code raises at epoch 49 (our 50): then epoch T."""
    tracker = Tracker(5, 2, 50)
    for t in range(1, len(eig)):
        e = t - 1
        tracker.update(e, eig[t])
        try:
            if tracker.early_stop(e, 1.3, 0, 4):
                return t, True
        except KeyError:
            break
    return len(eig) - 1, False


def series(T: int, kind: str, at: int, size: float, every: int = 1) -> np.ndarray:
    """[T+1] eigenvalues (epoch 0 = NaN-free noise the criteria must ignore), NaN off the grid."""
    t = np.arange(T + 1, dtype=float)
    if kind == "step":
        eig = np.where(t >= at, size, 1.0) + 0.01 * np.sin(t)
    else:  # geometric growth from epoch `at` on, ratio `size` per epoch
        eig = 0.5 * size ** np.maximum(t - at, 0)
    eig[0] = -7.0
    eig[(np.arange(T + 1) % every) != 0] = np.nan
    return eig


SERIES = [
    (T, kind, at, size, every)
    for T in (12, 25, 60)
    for kind, sizes in (("step", (1.2, 1.5, 3.0)), ("geom", (1.02, 1.06, 1.15)))
    for size in sizes
    for at in (3, 9, 20, 45)
    for every in (1, 2, 3)
    if at < T
]


def test_darts_es_equals_rdarts_transcription():
    outcomes = set()
    for T, kind, at, size, every in SERIES:
        eig = series(T, kind, at, size, every)
        for window, delta, factor, start_epoch in [
            (5, 4, 1.3, 10),
            (5, 4, 1.3, every),
            (3, 2, 1.2, 4),
            (4, 1, 1.1, 6),
            (1, 1, 1.3, 2 * every),
        ]:
            for rollback in (True, False):
                p = dict(window=window, delta=delta, factor=factor, start_epoch=start_epoch)
                r = C.darts_es(C.Trajectory.from_alpha(np.zeros((T + 1, 6, 5)), hessian_eig=eig),
                               rollback=rollback, ev_freq=1, **p)  # fmt: skip
                want = rdarts(eig, every, rollback=rollback, **p)
                assert (r.epoch, r.fired) == want, (T, kind, at, size, every, p, rollback)
                outcomes.add(r.fired)
    assert outcomes == {True, False}  # both ways exercised


def test_darts_es_paper_equals_the_papers_transcription():
    fired_at = set()
    for T, kind, at, size, every in SERIES:
        if every != 1:  # the paper's code computed one eigenvalue per epoch
            continue
        eig = series(T, kind, at, size)
        r = C.darts_es_paper(C.Trajectory.from_alpha(np.zeros((T + 1, 6, 5)), hessian_eig=eig))
        assert (r.epoch, r.fired) == paper(eig), (T, kind, at, size)
        fired_at.add(r.epoch if r.fired else None)
    assert None in fired_at and min(e for e in fired_at if e) == 13  # never before its epoch 12


@pytest.mark.parametrize(
    "jump, epoch, fired",
    [
        (3, 60, False),  # over by its epoch 12: both windows hold the step
        (10, 13, True),  # seen late: it cannot fire before its epoch 12 (our 13)
        (30, 30, True),  # the current genotype, no rollback
        (49, 49, True),
        (50, 60, False),  # its code raises at its epoch 49 (our 50): epoch T
    ],
)
def test_darts_es_paper_timing(jump, epoch, fired):
    eig = np.r_[np.nan, np.where(np.arange(1, 61) >= jump, 10.0, 1.0)]
    r = C.darts_es_paper(C.Trajectory.from_alpha(np.zeros((61, 6, 5)), hessian_eig=eig))
    assert (r.epoch, r.fired) == (epoch, fired) == paper(eig)
