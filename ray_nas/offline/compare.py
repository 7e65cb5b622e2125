"""`ray-nas compare`: the criteria over several jobs in one table, and a rank of them per job.

Each job is a `JobResults` (the one reader of a job, as `ray-nas evaluate`, `ray-nas report` and
`ray_nas.api` use): its criteria applied afresh to its stored trajectories, scored by its
benchmark table; retrained accuracies come from its `selections.parquet` rows whose selected arch
still matches (run `ray-nas evaluate` first). Each cell is scored by the job's own score column
(the benchmark metric, else `retrain_acc`), as `ray-nas evaluate`'s summary. Pure pandas: the
page is drawn by `report.compare_page`, MLflow is written by `tracking`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ray_nas.offline import select as sl
from ray_nas.offline.results import JobResults
from ray_nas.offline.summary import diverged_lines

CELL_COLUMNS = ["job", "group", "label", "metric", "n", "mean", "std", "stop_epoch", "fired"]


@dataclass
class Comparison:
    """What `ray-nas compare` shows."""

    jobs: list[str]
    """job names, in the order given"""
    labels: list[str]
    """criterion labels, first-seen order over the jobs"""
    cells: pd.DataFrame
    """one row per (job, group, label): CELL_COLUMNS; mean/std (%) over seeds, mean stop epoch,
    fired count out of n trials"""
    ranks: pd.DataFrame
    """one row per label: `<job>` rank columns (1 = best mean accuracy over the job's trials,
    ties share the best rank; NaN without a score), `<job> mean` columns, and `mean_rank`"""
    notes: list[str]


def compare_jobs(jobs: Sequence[JobResults], items: Sequence | None = None) -> Comparison:
    """The comparison of `jobs` (each with its own criteria, or `items` for all of them)."""
    names = [j.spec.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"compare: job names must differ, got {names}")
    cells, labels, means, notes = [], {}, {}, []
    for job in jobs:
        name = job.spec.name
        if not job.trials:
            raise FileNotFoundError(
                f"{job.spec.job_dir}: no readable trajectory (run the job first)"
            )
        job_notes: list[str] = []
        specs = job.criteria_of(items)
        sel = job.select(None if items is None else specs, job_notes)  # None: the job's own
        notes += [f"{name}: {n}" for n in job_notes]
        notes += trial_notes(job)
        metric = sl.score_column(sel, job.metric)
        if metric is None:
            notes.append(f"{name}: no benchmark or retrained accuracy; ranks left empty")
        cells.append(job.summarize(sel, specs).assign(job=name, metric=metric or ""))
        labels.update(dict.fromkeys(c.label for c in specs))
        order = {c.label: i for i, c in enumerate(specs)}
        value = sl.row_scores(sel, metric, job.own_metric)
        means[name] = value.groupby(sel["label"]).mean().sort_index(key=lambda s: s.map(order))
    table = pd.concat(cells, ignore_index=True)[CELL_COLUMNS]
    return Comparison(names, list(labels), table, _ranks(names, list(labels), means), notes)


def trial_notes(job: JobResults) -> list[str]:
    """What `ray-nas evaluate` says about a job's trials besides the table: the trials skipped
    (unreadable, missing or misplaced files; not counted in n) and the trials that diverged
    (scored at their last finite epoch)."""
    name, out = job.spec.name, []
    for rid, why in sorted(job.problems.items()):
        out.append(f"{name}: skipped trial {rid}: {why} (not counted in its cells)")
    out += [f"{name}: {line.strip()}" for line in diverged_lines(job.status)]
    return out


def _ranks(names: list[str], labels: list[str], means: dict[str, pd.Series]) -> pd.DataFrame:
    out = pd.DataFrame(index=pd.Index(labels, name="label"))
    for name in names:
        m = means[name].reindex(labels)
        out[name] = m.rank(ascending=False, method="min")
        out[f"{name} mean"] = m
    out["mean_rank"] = out[names].mean(axis=1)
    return out.sort_values("mean_rank", kind="stable", na_position="last").reset_index()


def _cell(r) -> str:
    score = "n/a" if math.isnan(r["mean"]) else f"{r['mean']:.2f}±{r['std']:.2f}"
    return f"{score} @{r['stop_epoch']:.1f} {int(r['fired'])}/{int(r['n'])}"


def columns(c: Comparison) -> list[tuple[str, str]]:
    """(job, group) pairs in table order."""
    return list(dict.fromkeys(zip(c.cells["job"], c.cells["group"])))


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(*rows)]
    return ["  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in rows]


def format_comparison(c: Comparison) -> str:
    """The table and the rank as text (what the command prints)."""
    cols = columns(c)
    cell = {(r["job"], r["group"], r["label"]): _cell(r) for _, r in c.cells.iterrows()}
    metric = dict(zip(c.cells["job"], c.cells["metric"]))
    head = ["criterion", *(f"{j} | {g}" for j, g in cols)]
    rows = [head, ["-" * len(h) for h in head]]
    rows += [[lab, *(cell.get((j, g, lab), "") for j, g in cols)] for lab in c.labels]
    lines = ["compare: mean±std over seeds @mean stop epoch, fired/trials; score per job: "
             + ", ".join(f"{j}={metric[j] or 'none'}" for j in c.jobs), *_align(rows), ""]  # fmt: skip
    rank_rows = [
        ["rank", "criterion", *c.jobs],
        ["-" * 4, "-" * 9, *("-" * len(j) for j in c.jobs)],
    ]
    for _, r in c.ranks.iterrows():
        mean_rank = "–" if math.isnan(r["mean_rank"]) else f"{r['mean_rank']:.1f}"
        rank_rows.append([mean_rank, r["label"], *(_rank_cell(r, j) for j in c.jobs)])
    lines += ["criteria by mean accuracy per job: #rank (mean %); first column: mean rank",
              *_align(rank_rows)]  # fmt: skip
    return "\n".join(lines + [f"note: {n}" for n in c.notes])


def _rank_cell(r, job: str) -> str:
    if math.isnan(r[job]):
        return "–"
    return f"#{int(r[job])} ({r[f'{job} mean']:.2f})"
