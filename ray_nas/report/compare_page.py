"""The page of `ray-nas compare`: the criteria over several jobs and their ranks."""

from __future__ import annotations

import math
import time

from ray_nas.report.html import CSS, METRIC_NAMES, _e, _section

# ------------------------------------------------------------------------------------------
# `ray-nas compare`: several jobs on one page


def compare_page(c) -> str:
    """The page of a `compare.Comparison`: the criteria x (job, group) table and the rank, in the
    report's style (one self-contained file, no script)."""
    from ray_nas.offline.compare import columns

    cols = columns(c)
    metric = dict(zip(c.cells["job"], c.cells["metric"]))
    facts = [("jobs", ", ".join(c.jobs)), ("criteria", str(len(c.labels))),
             ("written", time.strftime("%Y-%m-%d %H:%M:%S %Z"))]  # fmt: skip
    dl = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in c.notes)
    body = [f"<header><h1>{_e(' vs '.join(c.jobs))} <small>ray_nas criteria comparison</small></h1>"
            f'<dl class="facts">{dl}</dl>{notes}</header>',
            _section("table", "Criteria x jobs", _compare_table(c, cols, metric)),
            _section("rank", "Rank of the criteria per job", _rank_table(c, metric))]  # fmt: skip
    title = f"ray_nas compare: {', '.join(c.jobs)}"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")  # fmt: skip


def _compare_table(c, cols: list[tuple[str, str]], metric: dict[str, str]) -> str:
    cells = {(r["job"], r["group"], r["label"]): r for _, r in c.cells.iterrows()}
    best = {col: c.cells.loc[(c.cells["job"] == col[0]) & (c.cells["group"] == col[1]), "mean"].max()
            for col in cols}  # fmt: skip
    spans = "".join(
        f'<th colspan="{sum(j == job for j, _ in cols)}">{_e(job)} '
        f"<small>({_e(METRIC_NAMES.get(metric[job], metric[job]) or 'no score')})</small></th>"
        for job in c.jobs
    )
    groups = "".join(f"<th>{_e(g)}</th>" for _, g in cols)
    rows = []
    for i, lab in enumerate(c.labels, start=1):
        tds = []
        for col in cols:
            r = cells.get((*col, lab))
            if r is None:
                tds.append("<td></td>")
                continue
            ok = math.isfinite(r["mean"])
            cls = "best" if ok and abs(r["mean"] - best[col]) < 1e-9 else ""
            score = f"{r['mean']:.2f} ± {r['std']:.2f}" if ok else "–"
            tds.append(f'<td class="{cls}">{score}<br><small>@{r["stop_epoch"]:.1f}, '
                       f"{int(r['fired'])}/{int(r['n'])} fired</small></td>")  # fmt: skip
        rows.append(
            f'<tr><td><span class="badge">{i}</span> <code>{_e(lab)}</code></td>{"".join(tds)}</tr>'
        )
    return ('<p class="sub">Accuracy (%) of the selected arch, mean ± std over seeds; '
            "@ mean stop epoch; fired/trials. Best per column in bold; a criterion that does not "
            "fire selects the last epoch.</p>"
            f'<table class="data"><thead><tr><th rowspan="2">criterion</th>{spans}</tr>'
            f"<tr>{groups}</tr></thead><tbody>{''.join(rows)}</tbody></table>")  # fmt: skip


def _rank_table(c, metric: dict[str, str]) -> str:
    head = "".join(f"<th>{_e(j)}</th>" for j in c.jobs)
    rows = []
    for _, r in c.ranks.iterrows():
        tds = "".join(
            "<td>–</td>" if math.isnan(r[j]) else
            f'<td class="{"best" if r[j] == 1 else ""}">#{int(r[j])} <small>({r[f"{j} mean"]:.2f})</small></td>'
            for j in c.jobs
        )  # fmt: skip
        mean_rank = "–" if math.isnan(r["mean_rank"]) else f"{r['mean_rank']:.1f}"
        rows.append(f"<tr><td>{mean_rank}</td><td><code>{_e(r['label'])}</code></td>{tds}</tr>")
    return ('<p class="sub">Per job: rank by mean accuracy over all its trials (1 = best), '
            "mean in brackets; rows sorted by the mean rank over the jobs.</p>"
            f'<table class="data"><thead><tr><th>mean rank</th><th>criterion</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")  # fmt: skip
