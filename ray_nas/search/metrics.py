"""Live metrics of a sweep for Prometheus / Grafana (dashboards/grafana/ray_nas_sweep.json).

Ray exports a `ray.util.metrics` metric named `x` as `ray_x`, a Counter as `ray_x_total`; values
reach Prometheus through each node's metrics agent (every `metrics_report_interval_ms`, 10 s). A
gauge of a process that ended ages out of the export, so per-trial series vanish with the trial.
This module imports no Ray: the sweep (search/sweep.py, Ray's one home) hands `TrialMetrics` the
maker of Ray's metrics and owns the driver's Tune callback.
"""

from __future__ import annotations

import numpy as np

from ray_nas.criteria import cell_magnitudes
from ray_nas.spaces import DEFAULT, get_space

#: name -> (kind, tag keys, what it is); the Prometheus name is `prometheus_name(name)`.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "nas_trial_epoch": (
        "gauge",
        ("nas_job", "run_id"),
        "last epoch the trial wrote (= epochs completed)",
    ),
    "nas_epoch_seconds": ("gauge", ("nas_job", "run_id"), "wall seconds of the trial's last epoch"),
    "nas_epochs": (
        "counter",
        ("nas_job", "run_id"),
        "epochs completed (rate() = epochs per second)",
    ),
    "nas_valid_acc": (
        "gauge",
        ("nas_job", "run_id"),
        "supernet search-valid accuracy (%) at the last epoch",
    ),
    "nas_op_magnitude": (
        "gauge",
        ("nas_job", "run_id", "cell", "op"),
        "m(t, o): mean softmax weight of op over the edges of one cell type (as the criteria read it)",
    ),
    "nas_trial_running": ("gauge", ("nas_job", "run_id"), "1 while the trial's search runs"),
    "nas_sweep_trials": (
        "gauge",
        ("nas_job", "state"),
        "the sweep's trials per Tune state (driver)",
    ),
}


def prometheus_name(name: str) -> str:
    """The name Prometheus stores a METRICS entry under (Ray's `ray_` prefix, `_total` on counters)."""
    return f"ray_{name}_total" if METRICS[name][0] == "counter" else f"ray_{name}"


def epoch_magnitudes(weights, space: str) -> dict[str, np.ndarray]:
    """{cell: m [K]} of one epoch's op distribution `weights` [R, K] (the space's op rows, in its
    row order): criteria.cell_magnitudes, the criteria's default cell first."""
    cells = [c for c, _ in get_space(space).rows()]
    w = np.asarray(weights, dtype=np.float64)[None]  # [1, R, K]
    return {c: m[0] for c, m in cell_magnitudes(w, cells, space).items()}


class TrialMetrics:
    """One trial's live metrics, updated after every epoch; a metrics failure never stops a search."""

    def __init__(self, make, job: str, run_id: str, ops: tuple[str, ...], space: str = DEFAULT):
        """make(name, **default_tags): a metric of METRICS with `set`/`inc` (the sweep's
        `ray_metric`)."""
        self.ops, self.space, self.live = tuple(ops), space, True
        try:
            self.m = {
                n: make(n, nas_job=job, run_id=run_id) for n in METRICS if "run_id" in METRICS[n][1]
            }
            self.m["nas_trial_running"].set(1)
        except Exception as e:  # noqa: BLE001
            self._off(e)

    def record(self, rec) -> None:
        """rec: search.EpochRecord (epoch, seconds, valid_acc, weights [R, K]: the space's op
        rows x `ops`). nas_op_magnitude gets one series per (cell type, op)."""
        if not self.live:
            return
        try:
            self.m["nas_trial_epoch"].set(rec.epoch)
            self.m["nas_epoch_seconds"].set(rec.seconds)
            self.m["nas_valid_acc"].set(rec.valid_acc)
            if rec.epoch > 0:
                self.m["nas_epochs"].inc(1)
            for cell, mag in epoch_magnitudes(rec.weights, self.space).items():
                for op, m in zip(self.ops, mag):
                    self.m["nas_op_magnitude"].set(float(m), tags={"cell": cell, "op": op})
        except Exception as e:  # noqa: BLE001
            self._off(e)

    def close(self) -> None:
        if self.live:
            self.m["nas_trial_running"].set(0)

    def _off(self, e: Exception) -> None:
        self.live = False
        print(f"live metrics off for this trial ({type(e).__name__}: {e})")
