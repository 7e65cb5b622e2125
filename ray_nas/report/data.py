"""What the report shows, read from the store: trials, criteria, selections and scores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from ray_nas import store
from ray_nas.config import JobSpec
from ray_nas.offline import evaluate as ev

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


def load_report_data(spec: JobSpec) -> ReportData:
    """Read the store and apply the criteria; see the module docstring for where scores come from."""
    trials, problems = store.read_job(spec.job_dir)
    status = store.read_status(spec.job_dir)
    if not trials and status.empty:
        raise FileNotFoundError(
            f"{spec.job_dir}: no trajectory or trial status (run `ray-nas sweep` first)"
        )
    trials.sort(key=lambda t: (_grid_rank(spec, t.config), t.run_id))
    metric = ev.main_metric(spec)
    specs = ev.job_criteria(spec, metric)
    keys = ev.grid_group_keys(spec)
    groups: dict[str, list] = {}
    for t in trials:
        groups.setdefault(ev.group_label(t.config, keys, spec), []).append(t)
    table = ev._load_benchmark(spec)
    if trials:
        sel, per_epoch = ev.select_and_score(
            trials, specs, table, metric_of=lambda t: ev.trial_metric(spec, t.config)
        )
    else:
        sel, per_epoch = pd.DataFrame(columns=ev.SELECTION_COLUMNS), None
    notes: list[str] = []
    sel = _stored_scores(spec, sel, notes)
    group_of = {t.run_id: g for g, ts in groups.items() for t in ts}
    sel["group"] = sel["run_id"].map(group_of)
    from ray_nas.tables import METRICS

    score_cols = [m for m in (*METRICS, "retrain_acc") if m in sel and sel[m].notna().any()]
    if metric not in score_cols:
        metric = "retrain_acc" if "retrain_acc" in score_cols else None
    if not score_cols:
        notes.append("no accuracy of the selected archs: set evaluate.benchmark, or run "
                     "`ray-nas evaluate` to retrain them")  # fmt: skip
    return ReportData(
        spec, trials, problems, specs, sel, score_cols, metric, groups, status, per_epoch, notes
    )


def _grid_rank(spec: JobSpec, config: dict) -> tuple:
    """A trial's position in the job's grid (keys and values in the order written)."""
    from ray_nas.config import grid_value

    return tuple(grid_value(spec, key, config)[0] for key in spec.grid)


def _stored_scores(spec: JobSpec, sel: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Add the score columns of `selections.parquet` (e.g. retrain_acc) that `sel` lacks, on
    rows whose (run_id, label, arch) still match: a stale row never lends its score."""
    path = f"{spec.job_dir}/selections.parquet"
    if not len(sel) or not store.exists(path):
        return sel
    old = store.read_frame(path)
    skip = {*ev.SELECTION_COLUMNS, "bench_index", *sel.columns}
    cols = [c for c in old.columns if c not in skip and pd.api.types.is_numeric_dtype(old[c])]
    if not cols or not {"run_id", "label", "arch"} <= set(old.columns):
        return sel
    old = old.drop_duplicates(["run_id", "label"], keep="last")[["run_id", "label", "arch", *cols]]
    out = sel.merge(old, on=["run_id", "label", "arch"], how="left")
    missing = int(out[cols[0]].isna().sum())
    if missing:
        notes.append(f"{missing} of {len(out)} selections have no {cols[0]} in selections.parquet "
                     "(newer trajectories or criteria): run `ray-nas evaluate` to complete them")  # fmt: skip
    return out
