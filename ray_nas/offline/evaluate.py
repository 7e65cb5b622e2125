"""`ray-nas evaluate`, the offline stage (Algorithm 2): a job's stored trajectories x its
criteria -> the selected epochs and archs, their benchmark scores (or retrained accuracy),
`selections.parquet` and the summary over seeds it prints. MLflow logging is the caller's
(`tracking.log_job`, from what this returns).

It reads only what the store holds (through `offline.results.JobResults`), so it can be rerun
with new criteria at any time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ray_nas import store
from ray_nas.config import JobSpec
from ray_nas.offline import pt
from ray_nas.offline.results import JobResults
from ray_nas.offline.retrain import retrain_selected
from ray_nas.offline.select import (  # noqa: F401 - the names callers knew from here
    SELECTION_COLUMNS,
    benchmark_scores,
    grid_group_keys,
    group_label,
    in_progress,
    job_criteria,
    load_benchmark,
    main_metric,
    select,
    select_and_score,
    trial_metric,
    with_oracle_metric,
)
from ray_nas.offline.select import load_benchmark as _load_benchmark  # noqa: F401
from ray_nas.offline.summary import diverged_lines, format_summary, summarize  # noqa: F401
from ray_nas.search.integrity import redo_command
from ray_nas.spaces import get_space


@dataclass
class EvaluateResult:
    """What `run_evaluate` computed (what `tracking.log_job` logs)."""

    selections: pd.DataFrame
    """the rows written to selections.parquet: one per (trial, criterion), with the scores"""
    summary: pd.DataFrame
    """rows (group, criterion label): n, mean, std, stop_epoch, fired (summary.summarize)"""
    trials: list[store.TrialData]
    problems: dict[str, str]
    metric: str
    """the column that scores the selections ("" when none does)"""
    summary_text: str
    """the summary as printed"""
    results: JobResults


def run_evaluate(
    spec: JobSpec,
    log: Callable[[str], None] = print,
    retrain_map: Callable | None = None,
    results: JobResults | None = None,
) -> EvaluateResult:
    """The whole offline stage for a job; prints the summary table. Idempotent."""
    t0 = time.perf_counter()
    res = results or JobResults(spec)
    _ = res.criteria, res.benchmark  # their one-line errors come before reading trajectories
    job_dir = spec.job_dir
    if not res.trials:
        if res.problems:  # every trial skipped: say why, not "run it first"
            rid, why = sorted(res.problems.items())[0]
            n = len(res.problems)
            raise FileNotFoundError(
                f"{job_dir}: no readable trajectory ({n} trial{'s' * (n > 1)} skipped; trial "
                f"{rid}: {why}; `{redo_command(spec, rid)}` runs it again)"
            )
        raise FileNotFoundError(
            f"{job_dir}: no readable trajectory (run `ray-nas sweep` or `ray-nas search` first)"
        )
    log(f"evaluate {spec.name}: {len(res.trials)} trials, {len(res.criteria)} criteria, "
        f"{time.perf_counter() - t0:.1f}s to read")  # fmt: skip
    for rid, why in sorted(res.problems.items()):
        log(f"  skipped trial {rid}: {why} (`{redo_command(spec, rid)}` runs it again)")
    compact_trials(res.read_state, log)
    cache = None
    if pt.stage_specs(res.criteria):  # darts_pt: its projections first (pt.parquet only then)
        cache = pt.run_pt(spec, res.trials, res.criteria, res.status, res.pt_cache,
                          pt_map=retrain_map, log=log)  # fmt: skip
    if cache is not None:  # derived again with the new rows
        for key in ("_scores", "fresh", "_selected"):
            res.__dict__.pop(key, None)
        res.__dict__["pt_cache"] = cache
    sel = res.fresh
    uncovered = res.benchmark is None or res.metric is None or res.metric not in sel
    if uncovered and spec.evaluate.retrain is not None:
        configs = {t.run_id: t.config for t in res.trials}
        sel = retrain_selected(spec, sel, configs, retrain_map=retrain_map, log=log)
    if store.exists(f"{job_dir}/status"):
        store.write_frame(res.status, f"{job_dir}/trials.parquet")  # one row per trial
    kept = merge_selections(res.stored, sel)
    store.write_frame(kept, f"{job_dir}/selections.parquet")  # atomic: whole or not at all
    res.use_selections(sel, stored=kept)
    log(res.summary_text)
    for line in diverged_lines(res.status):
        log(line)
    others = sorted(set(kept["label"].unique()) - set(sel["label"].unique())) if len(kept) else []
    log(f"selections: {job_dir}/selections.parquet ({len(sel)} rows of these criteria"
        + (f"; {len(kept) - len(sel)} rows of {len(others)} other criteria kept" if others else "")
        + f"); {len(res.problems)} trials skipped; {time.perf_counter() - t0:.1f}s")  # fmt: skip
    return EvaluateResult(sel, res.summary, res.trials, res.problems, res.score or "",
                          res.summary_text, res)  # fmt: skip


def compact_trials(state: store.JobRead, log: Callable[[str], None]) -> None:
    """Bring the job's compacted copy of its trajectories (`{job}/compact/`, docs/store.md) up to
    date when `state` (the read that just happened) found it stale or ignored it, from the trials
    read; a copy that cannot be written is said in one line (the per-trial files stay the
    source of truth, so nothing else depends on it)."""
    if state.note:
        log(f"  note: {state.note}")
    if not state.stale:
        return
    t0 = time.perf_counter()
    try:
        n = store.write_compact(state)
    except OSError as e:
        log(f"  note: {state.job_dir}/{store.COMPACT_DIR}: not written ({e}); the trials are "
            "read from their own files")  # fmt: skip
        return
    if n:
        log(f"  compacted {n} trials into {state.job_dir}/{store.COMPACT_DIR}/ "
            f"({time.perf_counter() - t0:.1f}s)")  # fmt: skip


def merge_selections(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """What selections.parquet holds after an evaluation of `new`'s criteria: every row of `old`
    whose criterion (its label) `new` did not evaluate, then `new`'s rows. So evaluating other
    criteria (`--set 'criteria=[...]'`) replaces only their own rows; the job's criteria and
    their retrained scores stay."""
    if old is None or not len(old) or "label" not in old:
        return new
    rest = old[~old["label"].isin(set(new["label"]))]
    if not len(rest):
        return new
    return pd.concat([rest, new], ignore_index=True, sort=False)


def export_genotypes(spec: JobSpec, output: str | None = None) -> tuple[str, int]:
    """Write the job's selected genotypes in their space's own format (`Space.export_format`;
    the DARTS space: DARTS's genotypes.py, `NAME = Genotype(...)` per distinct (run, criterion)
    selection, NAME = criterion label and run_id as an identifier). Returns (path, count).

    FileNotFoundError / ValueError (one line) when the job has no selections or none of an
    exportable space."""
    path = f"{spec.job_dir}/selections.parquet"
    if not store.exists(path):
        raise FileNotFoundError(f"{path}: no selections yet (run `ray-nas evaluate` first)")
    sel = store.read_frame(path)
    res = JobResults.read(spec)
    trials = res.trials
    sel = sel[sel["label"].isin({c.label for c in res.criteria})]  # the criteria asked for
    exportable = {t.run_id: get_space(t.space) for t in trials if get_space(t.space).export_format}
    sel = sel[sel["run_id"].isin(exportable)]
    if not len(sel):
        raise ValueError(
            f"export: job {spec.name!r} has no selections of an exportable space (DARTS-space "
            "genotypes: search.space: darts)"
        )
    formats = {s.export_format: s for s in exportable.values()}
    if len(formats) > 1:
        raise ValueError(f"export: job {spec.name!r} mixes export formats {sorted(formats)}")
    entries = [
        (re.sub(r"\W+", "_", f"{r.label}_{r.run_id}").strip("_"), r.arch,
         f"stop epoch {r.stop_epoch}, fired {bool(r.fired)}")
        for r in sel.sort_values(["label", "run_id"]).itertuples()
    ]  # fmt: skip
    text = next(iter(formats.values())).export_text(spec.name, entries)
    out = output or f"{spec.job_dir}/genotypes.py"
    store.write_bytes(out, text.encode())  # local path or s3://
    return out, len(sel)
