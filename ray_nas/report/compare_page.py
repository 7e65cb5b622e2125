"""The page of `ray-nas compare`: the criteria over several jobs and their ranks."""

from __future__ import annotations

import math
import time

from ray_nas.offline.compare import columns
from ray_nas.report.html import page, render


def compare_page(c) -> str:
    """The page of a `compare.Comparison`: the criteria x (job, group) table and the rank, in the
    report's style (one self-contained file, no script)."""
    cols = columns(c)
    metric = dict(zip(c.cells["job"], c.cells["metric"]))
    facts = [
        ("jobs", ", ".join(c.jobs)),
        ("criteria", str(len(c.labels))),
        ("written", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
    ]
    heads = [(job, sum(j == job for j, _ in cols), metric[job]) for job in c.jobs]
    body = render(
        "compare.html",
        jobs=c.jobs,
        facts=facts,
        notes=c.notes,
        job_heads=heads,
        groups=[g for _, g in cols],
        rows=_compare_rows(c, cols),
        ranks=_rank_rows(c),
    )
    return page(f"ray_nas compare: {', '.join(c.jobs)}", [body], script=False)


def _compare_rows(c, cols: list[tuple[str, str]]) -> list[dict]:
    """Per criterion label, per (job, group) column: its score (mean ± std), mean stop epoch and
    fired/trials, flagged best in its column; None where the job did not compute it."""
    cells = {(r["job"], r["group"], r["label"]): r for _, r in c.cells.iterrows()}
    best = {}
    for col in cols:
        in_col = (c.cells["job"] == col[0]) & (c.cells["group"] == col[1])
        best[col] = c.cells.loc[in_col, "mean"].max()
    rows = []
    for label in c.labels:
        row = []
        for col in cols:
            r = cells.get((*col, label))
            if r is None:
                row.append(None)
                continue
            ok = math.isfinite(r["mean"])
            row.append(
                {
                    "best": ok and abs(r["mean"] - best[col]) < 1e-9,
                    "score": f"{r['mean']:.2f} ± {r['std']:.2f}" if ok else "–",
                    "stop": f"{r['stop_epoch']:.1f}",
                    "fired": f"{int(r['fired'])}/{int(r['n'])}",
                }
            )
        rows.append({"label": label, "cells": row})
    return rows


def _rank_rows(c) -> list[dict]:
    """Per criterion (sorted by mean rank): the mean rank and per job (rank, mean) or None."""
    rows = []
    for _, r in c.ranks.iterrows():
        cells = [None if math.isnan(r[j]) else (int(r[j]), f"{r[f'{j} mean']:.2f}") for j in c.jobs]
        mean_rank = "–" if math.isnan(r["mean_rank"]) else f"{r['mean_rank']:.1f}"
        rows.append({"label": r["label"], "mean_rank": mean_rank, "cells": cells})
    return rows
