"""The summary of a job's selections over seeds: per (grid group, criterion) the mean and spread
of the selected archs' scores, the mean stop epoch and how often the criterion fired; as a frame
(`summarize`) and as the text table `ray-nas evaluate` prints and MLflow keeps (`format_summary`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

SUMMARY_COLUMNS = ["group", "label", "n", "mean", "std", "stop_epoch", "fired"]


def summarize(
    sel: pd.DataFrame, groups: Mapping[str, str], labels: Sequence[str], scores: pd.Series
) -> pd.DataFrame:
    """Rows (group, criterion label): n, score mean and population std (ddof=0) over the group's
    trials, mean stop epoch, fire count.

    sel: selections (run_id, label, stop_epoch, fired); groups: run_id -> group label; labels:
    the criteria's labels in job order (the row order within a group); scores: [len(sel)] the
    score (%) of each row, NaN where none (select.row_scores)."""
    df = sel.assign(group=sel["run_id"].map(groups), value=scores.to_numpy())
    out = (
        df.groupby(["group", "label"], sort=False)
        .agg(
            n=("run_id", "size"),
            mean=("value", "mean"),
            std=("value", lambda s: s.std(ddof=0)),
            stop_epoch=("stop_epoch", "mean"),
            fired=("fired", "sum"),
        )  # fmt: skip
        .reset_index()
    )
    order = {label: i for i, label in enumerate(labels)}
    out["order"] = out["label"].map(order)
    out = out.sort_values(["group", "order"], kind="stable").drop(columns="order")
    return out.reset_index(drop=True)[SUMMARY_COLUMNS]


def shown_metric(column: str | None, own: Mapping[str, str | None]) -> str | None:
    """The summary's metric name: `column`, or the trials' own metrics where a benchmark-scored
    job's trials differ in data set (own: run_id -> trial_metric)."""
    mine = sorted({m for m in own.values() if m})
    if column and column != "retrain_acc" and len(mine) > 1:
        return f"{'/'.join(mine)} (each trial's own data set)"
    return column


#: the printed summary's width limit (an ordinary terminal)
SUMMARY_WIDTH = 100


def short_labels(labels: Sequence[str]) -> dict[str, str]:
    """Criterion label -> its short form for a column or row: the label itself when it has no
    parameters (`final`), else the criterion's name (`ss_eq12[op=nor_conv_3x3]` -> `ss_eq12`),
    numbered where two share a name (`ss_eq12.1`, `ss_eq12.2`)."""
    names = [lab.split("[", 1)[0] for lab in labels]
    out, seen = {}, {}
    for lab, name in zip(labels, names):
        if names.count(name) > 1:
            seen[name] = seen.get(name, 0) + 1
            name = f"{name}.{seen[name]}"
        out[lab] = name
    return out


def format_summary(summary: pd.DataFrame, metric: str | None, width: int = SUMMARY_WIDTH) -> str:
    """Text table: one row per criterion (short label), one column per grid group; each cell
    `mean±std @stop_epoch fired/n` over the group's trials, std the population one (ddof=0).
    Groups go into as many blocks of columns as keep each line within `width`; a legend gives the
    full label of each shortened criterion."""
    if summary.empty:
        return "(no selections)"
    labels = list(dict.fromkeys(summary["label"]))
    short = short_labels(labels)
    cells = {}
    for _, r in summary.iterrows():
        score = "n/a" if math.isnan(r["mean"]) else f"{r['mean']:.2f}±{r['std']:.2f}"
        cells[(r["group"], r["label"])] = (
            f"{score} @{r['stop_epoch']:.1f} {int(r['fired'])}/{int(r['n'])}"
        )
    groups = list(dict.fromkeys(summary["group"]))
    first = max(len("criterion"), *(len(short[lab]) for lab in labels))
    col = {g: max(len(g), *(len(cells.get((g, lab), "")) for lab in labels)) for g in groups}
    blocks: list[list[str]] = [[]]
    for g in groups:  # a new block when this group's column would pass the width
        used = first + sum(2 + col[x] for x in blocks[-1])
        if blocks[-1] and used + 2 + col[g] > width:
            blocks.append([])
        blocks[-1].append(g)
    title = (
        f"{metric or 'no metric'}: mean±std (population std, ddof=0) over seeds "
        "@mean stop epoch, fired/trials"
    )
    out = [title]
    for block in blocks:
        widths = [first, *(col[g] for g in block)]
        line = lambda r, w=widths: "  ".join(str(x).ljust(n) for x, n in zip(r, w)).rstrip()  # noqa: E731
        out += [line(["criterion", *block]), line(["-" * n for n in widths])]
        out += [line([short[lab], *(cells.get((g, lab), "") for g in block)]) for lab in labels]
    legend = [f"  {short[lab]} = {lab}" for lab in labels if short[lab] != lab]
    if legend:
        out += ["criteria:", *legend]
    return "\n".join(out)


def diverged_lines(status: pd.DataFrame | None) -> list[str]:
    """Summary lines naming the trials that diverged (status `diverged`): where and why."""
    if status is None or not len(status) or "diverged_epoch" not in status:
        return []
    rows = status[status["status"] == "diverged"]
    if rows.empty:
        return []
    lines = [f"diverged: {len(rows)} trials (criteria used their epochs before the divergence)"]
    for _, r in rows.iterrows():
        lines.append(f"  {r['run_id']}: {r['stop_reason']}; kept epochs 0..{int(r['epochs_done'])}")
    return lines
