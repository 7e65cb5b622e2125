"""A small Python API for notebooks: a job's store as pandas frames and trajectories, any criteria.

Stable and cheap to import: it needs numpy, pandas and pyarrow, never Ray, MLflow or torch.
`ray-nas evaluate` and `ray-nas compare` go through the same functions, so

    from ray_nas import api
    job = api.open_job("jobs/quickstart.yaml")
    job.selections()                      # == selections.parquet of `ray-nas evaluate` (retrained
                                          #    accuracy: evaluate's, read from there)
    job.selections(["final", {"name": "my_lab.stops:entropy_drop", "threshold": 0.8}])
    job.epochs()                          # one row per (run_id, epoch): losses, accuracies, arch
    job.trajectories()["<run_id>"]        # criteria.Trajectory: weights, alphas, valid_acc, ...
    api.apply(job.trajectories()["<run_id>"], "ss_eq12")   # one criterion on one trajectory

Nothing here writes to the store or to MLflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ray_nas import criteria as crit
from ray_nas import store
from ray_nas.config import JobSpec, flatten, load_spec
from ray_nas.criteria import CriterionSpec, StopResult, Trajectory
from ray_nas.offline.results import JobResults

CriterionItem = str | Mapping[str, Any] | CriterionSpec
"""a criterion as a job names it: "final", {"name": "ss_eq13", "exclude": ["none"]},
{"name": "package.module:function", **params}, or a parsed CriterionSpec"""

__all__ = ["Job", "open_job", "criterion", "apply", "Trajectory", "StopResult", "CriterionItem"]


def criterion(item: CriterionItem) -> CriterionSpec:
    """A criterion with its parameters checked (ValueError, one line, when they are wrong)."""
    return item if isinstance(item, CriterionSpec) else crit.parse_criterion(item)


def apply(traj: Trajectory, item: CriterionItem) -> StopResult:
    """One criterion on one trajectory, the shared rules enforced (CriterionError when broken)."""
    return criterion(item).apply(traj)


def open_job(job: str | Path | JobSpec, overrides: Iterable[str] = ()) -> Job:
    """A job's store, from its YAML (with `--set`-style overrides, e.g. "store=runs") or a spec."""
    spec = job if isinstance(job, JobSpec) else load_spec(job, list(overrides))
    return Job(spec)


class Job:
    """Read-only view of one job's store (an `offline.results.JobResults`, the reader `ray-nas
    evaluate`, `ray-nas report` and `ray-nas compare` use). Reads lazily, once; `refresh()`
    rereads the store."""

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.results = JobResults(spec)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def job_dir(self) -> str:
        """`{store}/{name}`: where the trajectories are."""
        return self.spec.job_dir

    def refresh(self) -> None:
        """Forget what was read (trials, status, benchmark table, selections)."""
        self.results = JobResults(self.spec)

    @property
    def trials(self) -> list[store.TrialData]:
        """Every readable trial (grid order, then run_id): arrays of its epochs, alphas and
        weights."""
        return self.results.trials

    @property
    def problems(self) -> dict[str, str]:
        """run_id -> why its trajectory could not be read (skipped everywhere)."""
        return self.results.problems

    @property
    def status(self) -> pd.DataFrame:
        """One row per trial: status, epochs_done, stop_epoch, stop_reason, error, config columns."""
        return self.results.status

    @property
    def benchmark(self) -> pd.DataFrame | None:
        """The job's benchmark table (`evaluate.benchmark`), or None."""
        return self.results.benchmark

    @property
    def metric(self) -> str | None:
        """The benchmark metric of the job (evaluate.metric or the data set's test one); the
        summary reports it, or `retrain_acc` where the selections were retrained."""
        return self.results.metric

    def groups(self) -> dict[str, str]:
        """run_id -> grid group label (every grid key but seed, e.g. "lr_scheme=nb201")."""
        return dict(self.results.groups)

    def configs(self) -> pd.DataFrame:
        """One row per trial: run_id, group, and its resolved search config as dotted columns."""
        groups = self.results.groups
        rows = [
            {"run_id": t.run_id, "group": groups[t.run_id], **flatten(t.config)}
            for t in self.trials
        ]
        return pd.DataFrame(rows)

    def epochs(self) -> pd.DataFrame:
        """One row per (run_id, epoch): train/valid loss and accuracy (%), lrs, hessian_eig,
        seconds, arch; epoch 0 is before any update."""
        frames = [pd.DataFrame(t.epochs).assign(run_id=t.run_id) for t in self.trials]
        if not frames:
            return pd.DataFrame(columns=["run_id", *store.EPOCHS_SCHEMA.names])
        df = pd.concat(frames, ignore_index=True)
        return df[["run_id", *store.EPOCHS_SCHEMA.names]]

    def alphas(self) -> pd.DataFrame:
        """Long form, one row per (run_id, epoch, cell, edge, op) (a unique key: the DARTS
        space's normal and reduce cells share edge names): the raw `alpha` and its softmax
        `weight` (each (run_id, epoch, cell, edge) sums to 1 over ops), and `concentration`
        (DrNAS's Dirichlet concentration) where the job's algorithm stored it, NaN elsewhere."""
        frames = [_alpha_frame(t) for t in self.trials]
        if not frames:
            return pd.DataFrame(columns=ALPHA_COLUMNS)
        df = pd.concat(frames, ignore_index=True)
        if df["concentration"].isna().all():
            df = df.drop(columns="concentration")
        return df

    def trajectories(self) -> dict[str, Trajectory]:
        """run_id -> the read-only Trajectory every criterion receives, with the benchmark's
        per-epoch scores in `metrics` when the job has a benchmark table."""
        per_epoch = self.results.per_epoch
        return {
            t.run_id: crit.from_trial(t, per_epoch(t) if per_epoch else None) for t in self.trials
        }

    def criteria(self, items: Sequence[CriterionItem] | None = None) -> list[CriterionSpec]:
        """`items` parsed, or the job's own criteria (the paper's set when it lists none)."""
        return self.results.criteria_of(None if items is None else [criterion(i) for i in items])

    def selections(self, items: Sequence[CriterionItem] | None = None) -> pd.DataFrame:
        """One row per (trial, criterion): the frame `ray-nas evaluate` writes to
        selections.parquet (columns select.SELECTION_COLUMNS, then the benchmark's scores of the
        selected arch, and the retrained accuracy `retrain_acc` that `ray-nas evaluate` kept
        there for the rows whose arch still matches). `items` replaces the job's criteria. No
        retraining here."""
        return self.results.select(None if items is None else self.criteria(items)).copy()

    def summary(self, items: Sequence[CriterionItem] | None = None) -> pd.DataFrame:
        """Rows (group, criterion label): n, mean/std of the job's score over seeds (the
        benchmark metric, else the retrained accuracy), mean stop epoch, fire count: `ray-nas
        evaluate`'s printed table as a frame."""
        if items is None:
            return self.results.summary.copy()
        specs = self.criteria(items)
        return self.results.summarize(self.results.select(specs), specs)


#: the columns of Job.alphas() (concentration left out where no trial stored it)
ALPHA_COLUMNS = ["run_id", "epoch", "cell", "edge", "op", "alpha", "weight", "concentration"]


def _alpha_frame(t: store.TrialData) -> pd.DataFrame:
    """One trial's alphas in long form (Job.alphas)."""
    n, e, k = t.alpha.shape
    cells = t.cells or ("shared",) * e
    conc = t.extras.get("concentration")
    return pd.DataFrame({
        "run_id": t.run_id, "epoch": np.repeat(np.arange(n), e * k),
        "cell": np.tile(np.repeat(np.array(cells, dtype=object), k), n),
        "edge": np.tile(np.repeat(np.array(t.edges, dtype=object), k), n),
        "op": np.tile(np.array(t.ops, dtype=object), n * e),
        "alpha": t.alpha.reshape(-1), "weight": t.weights.reshape(-1),
        "concentration": np.full(n * e * k, np.nan) if conc is None else conc.reshape(-1),
    })  # fmt: skip
