"""What the report shows, from the job's `offline.results.JobResults`: trials, criteria,
selections and scores (the same selections `ray-nas evaluate` and `ray_nas.api` give)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from ray_nas import store
from ray_nas.config import JobSpec
from ray_nas.offline import select as sl
from ray_nas.offline.results import JobResults
from ray_nas.tables import METRICS

# ------------------------------------------------------------------------------------------
# the data behind the page


@dataclass
class ReportData:
    spec: JobSpec
    trials: list[store.TrialData]
    """readable trials, in grid order"""
    problems: dict[str, str]
    """run_id -> why its trajectory could not be read"""
    criteria: list
    """the job's CriterionSpecs, in job order"""
    selections: pd.DataFrame
    """one row per (run_id, criterion label), plus score columns and `group`"""
    score_cols: list[str]
    metric: str | None
    """the main score column (Table 3, chart of benchmark accuracy per epoch)"""
    groups: dict[str, list[store.TrialData]]
    status: pd.DataFrame
    bench_per_epoch: Callable | None = None
    notes: list[str] = field(default_factory=list)


def load_report_data(spec: JobSpec, results: JobResults | None = None) -> ReportData:
    """The report's data from `results` (default: the job's store, read now)."""
    res = results or JobResults(spec)
    if not res.trials and res.status.empty:
        raise FileNotFoundError(
            f"{spec.job_dir}: no trajectory or trial status (run `ray-nas sweep` first)"
        )
    groups: dict[str, list[store.TrialData]] = {}
    for t in res.trials:
        groups.setdefault(res.groups[t.run_id], []).append(t)
    sel = res.selections.assign(group=res.selections["run_id"].map(res.groups))
    score_cols = [m for m in (*METRICS, "retrain_acc") if m in sel and sel[m].notna().any()]
    notes = list(res.notes)
    if not score_cols:
        notes.append("no accuracy of the selected archs: set evaluate.benchmark, or run "
                     "`ray-nas evaluate` to retrain them")  # fmt: skip
    return ReportData(spec, res.trials, res.problems, res.criteria, sel, score_cols, res.score,
                      groups, res.status, res.per_epoch, notes)  # fmt: skip


def _grid_rank(spec: JobSpec, config: dict) -> tuple:
    """A trial's position in the job's grid (select.grid_rank)."""
    return sl.grid_rank(spec, config)


def _stored_scores(spec: JobSpec, sel: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """`sel` with the score columns of the job's `selections.parquet` (e.g. retrain_acc) it
    lacks, on rows whose (run_id, label, arch) still match (select.stored_scores)."""
    return sl.stored_scores(sel, JobResults(spec).stored, notes)
