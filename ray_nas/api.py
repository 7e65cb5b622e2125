"""A small Python API for notebooks: a job's store as pandas frames and trajectories, any criteria.

Stable and cheap to import: it needs numpy, pandas and pyarrow, never Ray, MLflow or torch.
`ray-nas evaluate` and `ray-nas compare` go through the same functions, so

    from ray_nas import api
    job = api.open_job("jobs/quickstart.yaml")
    job.selections()                      # == selections.parquet of `ray-nas evaluate` (benchmark
                                          #    jobs; retrained accuracy comes from evaluate only)
    job.selections(["final", {"name": "my_lab.stops:entropy_drop", "threshold": 0.8}])
    job.epochs()                          # one row per (run_id, epoch): losses, accuracies, arch
    job.trajectories()["<run_id>"]        # criteria.Trajectory: weights, alphas, valid_acc, ...
    api.apply(job.trajectories()["<run_id>"], "ss_eq12")   # one criterion on one trajectory

Nothing here writes to the store or to MLflow.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ray_nas import criteria as crit
from ray_nas import store
from ray_nas.config import JobSpec, flatten, load_spec
from ray_nas.criteria import CriterionSpec, StopResult, Trajectory
from ray_nas.offline import evaluate as ev

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
    """Read-only view of one job's store. Reads lazily, once; `refresh()` rereads the store."""

    def __init__(self, spec: JobSpec):
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def job_dir(self) -> str:
        """`{store}/{name}`: where the trajectories are."""
        return self.spec.job_dir

    def refresh(self) -> None:
        """Forget what was read (trials, status, benchmark table)."""
        for key in ("_read", "status", "benchmark"):
            self.__dict__.pop(key, None)

    @functools.cached_property
    def _read(self) -> tuple[list[store.TrialData], dict[str, str]]:
        return store.read_job(self.job_dir)

    @property
    def trials(self) -> list[store.TrialData]:
        """Every readable trial (run_id order): arrays of its epochs, alphas and weights."""
        return self._read[0]

    @property
    def problems(self) -> dict[str, str]:
        """run_id -> why its trajectory could not be read (skipped everywhere)."""
        return self._read[1]

    @functools.cached_property
    def status(self) -> pd.DataFrame:
        """One row per trial: status, epochs_done, stop_epoch, stop_reason, error, config columns."""
        return store.read_status(self.job_dir)

    @functools.cached_property
    def benchmark(self) -> pd.DataFrame | None:
        """The job's benchmark table (`evaluate.benchmark`), or None."""
        return ev._load_benchmark(self.spec)

    @property
    def metric(self) -> str | None:
        """The benchmark metric the summary reports (evaluate.metric or the data set's test one)."""
        return ev.main_metric(self.spec)

    def groups(self) -> dict[str, str]:
        """run_id -> grid group label (every grid key but seed, e.g. "lr_scheme=nb201")."""
        keys = ev.grid_group_keys(self.spec)
        return {t.run_id: ev.group_label(t.config, keys, self.spec) for t in self.trials}

    def configs(self) -> pd.DataFrame:
        """One row per trial: run_id, group, and its resolved search config as dotted columns."""
        groups = self.groups()
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
        """Long form, one row per (run_id, epoch, edge, op): the raw `alpha` and its softmax
        `weight` (each (run_id, epoch, edge) sums to 1 over ops)."""
        frames = []
        for t in self.trials:
            n, e, k = t.alpha.shape
            frames.append(pd.DataFrame({
                "run_id": t.run_id, "epoch": np.repeat(np.arange(n), e * k),
                "edge": np.tile(np.repeat(np.array(t.edges, dtype=object), k), n),
                "op": np.tile(np.array(t.ops, dtype=object), n * e),
                "alpha": t.alpha.reshape(-1), "weight": t.weights.reshape(-1),
            }))  # fmt: skip
        cols = ["run_id", "epoch", "edge", "op", "alpha", "weight"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)

    def trajectories(self) -> dict[str, Trajectory]:
        """run_id -> the read-only Trajectory every criterion receives, with the benchmark's
        per-epoch scores in `metrics` when the job has a benchmark table."""
        per_epoch = None
        if self.benchmark is not None and self.trials:
            per_epoch = ev.benchmark_scores(self.trials, self.benchmark)[1]
        return {
            t.run_id: crit.from_trial(t, per_epoch(t) if per_epoch else None) for t in self.trials
        }

    def criteria(self, items: Sequence[CriterionItem] | None = None) -> list[CriterionSpec]:
        """`items` parsed, or the job's own criteria (the paper's set when it lists none)."""
        if items is None:
            return ev.job_criteria(self.spec, self.metric)
        return ev.with_oracle_metric([criterion(i) for i in items], self.metric)

    def selections(self, items: Sequence[CriterionItem] | None = None) -> pd.DataFrame:
        """One row per (trial, criterion): the frame `ray-nas evaluate` writes to
        selections.parquet (columns evaluate.SELECTION_COLUMNS, then the benchmark's scores of the
        selected arch). `items` replaces the job's criteria. No retraining here."""
        running = ev.in_progress(self.status)

        def own(t: store.TrialData) -> str | None:  # a plain oracle: the trial's data set
            return ev.trial_metric(self.spec, t.config)

        return ev.selections(self.trials, self.criteria(items), self.benchmark, running, own)

    def summary(self, items: Sequence[CriterionItem] | None = None) -> pd.DataFrame:
        """Rows (group, criterion label): n, mean/std of the job's metric over seeds, mean stop
        epoch, fire count: `ray-nas evaluate`'s printed table as a frame."""
        specs = self.criteria(items)
        sel = self.selections(specs)
        metric = self.metric if self.metric in sel else None
        return ev.summarize(self.spec, self.trials, sel, specs, metric)
