"""The report's sections: per grid group the op magnitude charts (one per cell type), accuracy
and Hessian charts; the criteria tables (Table 2/3/4 layouts, Figure 4); the trials and the
resolved job spec. Python gathers what each shows; templates/ lays it out.

The magnitudes are the criteria's own (criteria.magnitudes over one cell type's rows), so a
chart shows exactly the curve a selective stop read, and its stop marker sits on that curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import yaml
from markupsafe import Markup

from ray_nas.config import bundle_label, flatten, grid_value, is_bundle_axis, resolved_job_dict
from ray_nas.criteria import magnitude_cells, magnitudes, parse_criterion
from ray_nas.offline import evaluate as ev
from ray_nas.report.charts import (
    BENCH_COLOR,
    HESSIAN_COLOR,
    VALID_COLOR,
    Marker,
    Series,
    _stack,
    band_name,
    svg_chart,
)
from ray_nas.report.data import ReportData
from ray_nas.report.html import METRIC_NAMES, _compact, _fmt_ms, _ok, render
from ray_nas.spaces import get_space
from ray_nas.tables import METRICS

#: the magnitude charts' y axis: the data's range widened by this fraction on each side
MAGNITUDE_MARGIN = 0.05


@dataclass
class Chart:
    """One chart of a section: its title and legend (`series`), and the SVG, or why none."""

    title: str
    series: list[Series]
    svg: Markup | None = None
    why: str = ""
    """shown in place of the chart when `svg` is None"""


def _chart(
    title: str, series: list[Series], ylabel: str, x_max: int, markers=(), warmup=0, **how
) -> Chart:
    """A Chart of `series` over epochs 0..x_max; `how`: svg_chart's y_zero, margin, fmt."""
    svg = svg_chart(
        series,
        xlabel="epoch",
        ylabel=ylabel,
        x_max=x_max,
        markers=list(markers),
        warmup=warmup,
        title=title,
        **how,
    )
    return Chart(title, series, Markup(svg))


# ------------------------------------------------------------------------------------------
# op magnitudes, as the criteria read them


def _group_cells(trials: list) -> list[str]:
    """The cell types of the trials' op rows, the criteria's default first
    (criteria.magnitude_cells): ["shared"] on NAS-Bench-201/-1Shot1, ["normal", "reduce"] on DARTS."""
    return list(dict.fromkeys(c for t in trials for c in magnitude_cells(t.space, t.cells)))


def _magnitudes(trials: list, cell: str = "") -> dict[str, list[np.ndarray]]:
    """op -> per trial its m(t, o) [T+1] over the rows of `cell` ("" = the cell the criteria read
    by default), computed as the criteria do (criteria.magnitudes). By op NAME: trials of one
    group may hold different op sets (a store that kept the trials of an earlier `ops`); a trial
    without the op or the cell contributes NaN."""
    ops = list(dict.fromkeys(o for t in trials for o in t.ops))
    per_trial = []
    for t in trials:
        c = cell or magnitude_cells(t.space, t.cells)[0]
        per_trial.append(magnitudes(t.weights, t.cells, c) if c in t.cells else None)
    nan = [np.full(len(t.weights), np.nan) for t in trials]
    return {
        op: [
            m[:, t.ops.index(op)] if m is not None and op in t.ops else missing
            for t, m, missing in zip(trials, per_trial, nan)
        ]
        for op in ops
    }


def _op_colors(trials: list) -> dict[str, str]:
    """op -> colour from the trials' spaces (Space.op_colors; the first space's where two differ)."""
    colors: dict[str, str] = {}
    for space in dict.fromkeys(t.space for t in trials):
        colors = {**get_space(space).op_colors(), **colors}
    return colors


def _magnitude_series(trials: list, cell: str = "", std_band: bool = False) -> list[Series]:
    colors = _op_colors(trials)
    return [
        Series(op, colors.get(op, "#333"), _stack(runs), std_band=std_band)
        for op, runs in _magnitudes(trials, cell).items()
    ]


def _magnitude_charts(d: ReportData, trials: list, sel, x_max: int, warmup: int) -> list[Chart]:
    """One chart per cell type (NAS-Bench-201: one), each with the stop markers of the criteria
    that read that cell (`_stop_markers`)."""
    cells = _group_cells(trials)
    charts = []
    for cell in cells:
        title, ylabel = "Operation magnitude m(t, o)", "m(t, o): mean softmax weight over edges"
        if len(cells) > 1:
            default = " (the criteria's default)" if cell == cells[0] else ""
            title += f": {cell} cell{default}"
            ylabel = f"m(t, o): mean over {cell} edges"
        markers = _stop_markers(d, sel, cell if len(cells) > 1 else None, cells[0])
        series, how = _magnitude_series(trials, cell), {"margin": MAGNITUDE_MARGIN, "fmt": "{:.3f}"}
        charts.append(_chart(title, series, ylabel, x_max, markers, warmup, **how))
    return charts


def _stop_markers(
    d: ReportData, sel: pd.DataFrame, cell: str | None = None, default: str = ""
) -> list[Marker]:
    """One marker per criterion at its mean stop epoch over the group's seeds, numbered in job
    order. With `cell`: only the criteria that read that cell's magnitudes (their `cell`
    parameter, else `default`, the cell the criteria read unless told otherwise)."""
    markers = []
    for i, c in enumerate(d.criteria, start=1):
        if cell is not None and (c.params.get("cell") or default) != cell:
            continue
        s = sel[sel["label"] == c.label]
        if len(s):
            mean = float(s["stop_epoch"].mean())
            per_seed = ", ".join(str(int(e)) for e in s["stop_epoch"])
            title = f"{i}. {c.label}: mean stop epoch {mean:.1f} (per seed {per_seed})"
            markers.append(Marker(i, mean, title))
    return markers


# ------------------------------------------------------------------------------------------
# a grid group


def _group_section(d: ReportData, group: str, trials: list, index: int) -> Markup:
    sel = d.selections[d.selections["group"] == group]
    x_max = max(len(t.epochs["epoch"]) for t in trials) - 1
    warmup = int(trials[0].config.get("warmup_epochs") or 0)
    charts = _magnitude_charts(d, trials, sel, x_max, warmup)
    charts += _other_charts(d, trials, _stop_markers(d, sel), x_max, warmup)
    return render(
        "group.html",
        index=index,
        group=group,
        trials=len(trials),
        seeds=_compact([t.config.get("seed") for t in trials]),
        band=band_name(len(trials)),
        warmup=warmup,
        cells=len(_group_cells(trials)),
        charts=charts,
        score_cols=d.score_cols,
        rows=_table2_rows(d, sel),
    )


def _other_charts(d: ReportData, trials: list, markers, x_max: int, warmup: int) -> list[Chart]:
    """The accuracy chart (supernet search-valid, and the benchmark's score of each epoch's
    genotype when there is one) and the Hessian eigenvalue chart."""
    nan = [np.full(len(t.epochs["epoch"]), np.nan) for t in trials]
    valid = _stack([t.epochs["valid_acc"] for t in trials])
    acc = [Series("supernet search-valid", VALID_COLOR, valid)]
    if d.bench_per_epoch is not None and d.metric and d.metric != "retrain_acc":
        runs = _stack([d.bench_per_epoch(t).get(d.metric, n) for t, n in zip(trials, nan)])
        if np.isfinite(runs).any():
            name = f"benchmark {METRIC_NAMES.get(d.metric, d.metric)} of the epoch's genotype"
            acc.append(Series(name, BENCH_COLOR, runs, dash="6 3"))
    charts = [
        _chart("Accuracy per epoch", acc, "accuracy (%)", x_max, markers, warmup, fmt="{:.2f}")
    ]
    eig = _stack([t.epochs["hessian_eig"] for t in trials])
    title = "Dominant Hessian eigenvalue"
    if not np.isfinite(eig).any():
        return [*charts, Chart(title, [], why="not recorded (search.hessian_every: 0)")]
    series = [Series("λmax", HESSIAN_COLOR, eig)]
    ylabel = "λmax of ∇²α L_valid + wd·I (last α batch)"
    return [*charts, _chart(title, series, ylabel, x_max, markers, warmup, fmt="{:.4g}")]


def _table2_rows(d: ReportData, sel: pd.DataFrame) -> list[dict]:
    """Table 2 layout: per criterion (numbered as the chart markers) its scores (mean ± std over
    seeds; best per column flagged), mean stop epoch, stop epochs per seed and fire rate."""
    scores = {
        c.label: [_fmt_ms(sel.loc[sel["label"] == c.label, col]) for col in d.score_cols]
        for c in d.criteria
    }
    best = [
        max((r[j][1] for r in scores.values() if math.isfinite(r[j][1])), default=math.nan)
        for j in range(len(d.score_cols))
    ]
    rows = []
    for i, c in enumerate(d.criteria, start=1):
        s = sel[sel["label"] == c.label]
        if s.empty:
            continue
        flagged = [
            (text, math.isfinite(b) and abs(v - b) < 1e-9)
            for (text, v), b in zip(scores[c.label], best)
        ]
        fired = f"{s['fired'].mean() * 100:.0f}% ({int(s['fired'].sum())}/{len(s)})"
        rows.append(
            {
                "number": i,
                "label": c.label,
                "scores": flagged,
                "fired": fired,
                "stop": _fmt_ms(s["stop_epoch"])[0],
                "per_seed": _per_seed(s["stop_epoch"]),
            }
        )
    return rows


def _per_seed(stop_epochs: pd.Series) -> str:
    """The stop epochs, or for many seeds their range and median (or the one epoch they share)."""
    stops = [int(e) for e in stop_epochs]
    if len(stops) <= 12:
        return ", ".join(map(str, stops))
    if min(stops) == max(stops):
        return f"all {stops[0]}"
    return f"{min(stops)}–{max(stops)}, median {np.median(stops):g}"


# ------------------------------------------------------------------------------------------
# the space-specific sections (Space.report_sections)


def _section_trials(d: ReportData, section: str) -> list:
    """The trials whose space asks for the report section `section` (Space.report_sections)."""
    return [t for t in d.trials if section in get_space(t.space).report_sections]


def _figure4(d: ReportData, trials: list) -> Markup:
    """Figure 4 layout: one column per NAS-Bench-1Shot1 space (per grid group when the grid has
    other keys), (a..) the benchmark's test accuracy of each epoch's discretised cell and, below,
    the op magnitudes (mean over the choice blocks of the softmax weights, 3 ops) over epochs;
    curves: mean over seeds, band: ± 1 std."""
    keys = ev.grid_group_keys(d.spec)
    panels: dict[tuple[str, str], list] = {}
    for t in trials:
        panels.setdefault((t.space, ev.group_label(t.config, keys, d.spec)), []).append(t)
    order = sorted(panels, key=lambda p: p[0])  # by space name, then first-seen group
    metric = "cifar10_test"  # the figure's: NAS-Bench-101's test accuracy, whatever the summary's
    letters = iter("abcdefghijklmnopqrstuvwxyz" * 4)
    accs = [
        _figure4_accuracy(d, panels[p], metric, _figure4_title(p, next(letters))) for p in order
    ]
    mags = [_figure4_magnitudes(panels[p], _figure4_title(p, next(letters))) for p in order]
    seeds = max(len(ts) for ts in panels.values())
    return render(
        "figure4.html",
        metric=metric,
        band=band_name(seeds, True),
        columns=len(order),
        charts=accs + mags,
    )


def _figure4_title(panel: tuple[str, str], letter: str) -> str:
    space, group = panel
    return f"({letter}) {space}" + ("" if group in (f"space={space}", "all") else f" ({group})")


def _figure4_accuracy(d: ReportData, trials: list, metric: str, title: str) -> Chart:
    runs = None
    if d.bench_per_epoch is not None:
        runs = _stack(
            [
                d.bench_per_epoch(t).get(metric, np.full(len(t.epochs["epoch"]), np.nan))
                for t in trials
            ]
        )
    if runs is None:
        why = "no benchmark accuracy: set evaluate.benchmark to a `ray-nas benchmark convert-nb101` table"
        return Chart(title, [], why=why)
    if not np.isfinite(runs).any():
        return Chart(title, [], why="no cell of these epochs is in the benchmark table")
    x_max = max(len(t.epochs["epoch"]) for t in trials) - 1
    name = f"{METRIC_NAMES.get(metric, metric)} of the epoch's cell"
    return _chart(
        title, [Series(name, BENCH_COLOR, runs, std_band=True)], "accuracy (%)", x_max, fmt="{:.2f}"
    )


def _figure4_magnitudes(trials: list, title: str) -> Chart:
    x_max = max(len(t.epochs["epoch"]) for t in trials) - 1
    series = _magnitude_series(trials, std_band=True)
    return _chart(
        title,
        series,
        "m(t, o): mean over choice blocks",
        x_max,
        margin=MAGNITUDE_MARGIN,
        fmt="{:.3f}",
    )


def _table4(d: ReportData, trials: list) -> Markup:
    """Table 4 layout (DARTS-space searches): per search and criterion the selected genotype's
    stop epoch, skip connections in the cell the criteria read (Space.skips: DARTS's normal),
    parameters (M, auxiliary head excluded) and retrained test error (%, mean ± std over
    evaluate.retrain.seeds)."""
    space_of = {t.run_id: get_space(t.space) for t in trials}
    sel = d.selections[d.selections["run_id"].isin(space_of)]
    rows = []
    for r in sel.sort_values(["run_id", "label"]).itertuples():
        acc, std, pm = (
            getattr(r, c, math.nan) for c in ("retrain_acc", "retrain_acc_std", "params_m")
        )
        err = "–" if not _ok(acc) else f"{100 - acc:.2f}" + (f" ± {std:.2f}" if _ok(std) else "")
        rows.append(
            {
                "run_id": r.run_id,
                "label": r.label,
                "stop": int(r.stop_epoch),
                "skips": space_of[r.run_id].skips(r.arch),
                "arch": r.arch,
                "error": err,
                "params": f"{pm:.2f}" if _ok(pm) else "–",
            }
        )
    cell = " / ".join(dict.fromkeys(s.magnitude_cell for s in space_of.values()))
    return render("table4.html", rows=rows, cell=cell)


#: the report's space-specific sections (Space.report_sections): key, title, draw(d, its trials)
SPACE_SECTIONS = (
    ("figure4", "NAS-Bench-1Shot1 (Figure 4 layout)", _figure4),
    ("table4", "Selected architectures (Table 4 layout)", _table4),
)


# ------------------------------------------------------------------------------------------
# across groups: the methods (a bundle axis) and Table 3 (criterion x weights.lr)


def methods_table(d: ReportData) -> tuple[list[str], list[list[str]]]:
    """Table 2 of the paper from a job with a bundle axis: one row per (bundle, criterion shown
    for it), columns data set x valid/test (mean ± std over seeds; "–" where the benchmark table
    has no such column), plus the bundle's mean search seconds. ([], []) without a bundle axis."""
    axis = next((k for k, v in d.spec.grid.items() if is_bundle_axis(k, v)), None)
    if axis is None:
        return [], []
    cols = [m for m in METRICS if m != "retrain_acc"]
    head = ["method", "search (s)", *(METRIC_NAMES.get(c, c) for c in cols)]
    rows = []
    for i, bundle in enumerate(d.spec.grid[axis]):
        trials = [t for t in d.trials if grid_value(d.spec, axis, t.config)[0] == i]
        ids = {t.run_id for t in trials}
        secs = [float(np.nansum(t.epochs["seconds"])) for t in trials]
        shown = [parse_criterion(c).label for c in bundle.get("criteria") or []]
        for label in shown or [c.label for c in d.criteria]:
            s = d.selections[d.selections["run_id"].isin(ids) & (d.selections["label"] == label)]
            name = bundle_label(bundle) + ("" if label == "final" else f" ({label})")
            cells = [_fmt_ms(s[c])[0] if c in s else "–" for c in cols]
            rows.append([name, f"{np.mean(secs):.0f}" if secs else "–", *cells])
    return head, rows


def _tables_section(d: ReportData) -> Markup:
    head, rows = methods_table(d)
    columns, t3_rows = _table3(d)
    col = d.metric or "stop_epoch"
    what = (
        f"{METRIC_NAMES.get(col, col)} (%)"
        if d.metric
        else "mean stop epoch (no accuracy available)"
    )
    return render(
        "tables.html",
        methods_head=head,
        methods_rows=rows,
        table3_what=what,
        table3_columns=[label for _, label in columns],
        table3_rows=t3_rows,
    )


def _table3(d: ReportData) -> tuple[list[tuple[float, str]], list[dict]]:
    """Table 3 layout, criterion x weights.lr (when the trials differ in weights.lr): the columns
    (lr, label) and per criterion the cells (score, else stop epoch: mean ± std over all trials
    with that lr). A column's label is the grid's: `weights.lr=<value as the grid writes it>`,
    and where the grid varies the lr through other keys, their groups: `weights.lr=0.025
    (lr_scheme=nb201)`."""
    lr = {t.run_id: flatten(t.config).get("weights.lr") for t in d.trials}
    values = sorted({v for v in lr.values() if v is not None})
    if len(values) < 2:
        return [(v, "") for v in values], []
    columns = [(v, _lr_label(d, v)) for v in values]
    sel = d.selections.assign(lr=d.selections["run_id"].map(lr))
    col = d.metric or "stop_epoch"
    rows = []
    for i, c in enumerate(d.criteria, start=1):
        s = sel[sel["label"] == c.label]
        cells = [_fmt_ms(s.loc[s["lr"] == v, col])[0] for v in values]
        rows.append({"number": i, "label": c.label, "cells": cells})
    return columns, rows


def _lr_label(d: ReportData, value: float) -> str:
    """`weights.lr=<value>` as the grid names it, with the groups that have it when weights.lr
    is not itself a grid key."""
    trials = [t for t in d.trials if flatten(t.config).get("weights.lr") == value]
    if "weights.lr" in d.spec.grid:
        return f"weights.lr={grid_value(d.spec, 'weights.lr', trials[0].config)[1]}"
    keys = ev.grid_group_keys(d.spec)
    groups = dict.fromkeys(ev.group_label(t.config, keys, d.spec) for t in trials)
    return f"weights.lr={value:g}" + (f" ({'; '.join(groups)})" if keys else "")


# ------------------------------------------------------------------------------------------
# the trials and the job spec


def _trials_section(d: ReportData) -> Markup:
    st = d.status.set_index("run_id") if len(d.status) else pd.DataFrame()
    by_id = {t.run_id: t for t in d.trials}
    rows = [
        _trial_row(d, rid, by_id.get(rid), st.loc[rid] if rid in st.index else None)
        for rid in [*by_id, *sorted(set(st.index) - set(by_id))]
    ]
    counts = d.status["status"].value_counts().to_dict() if len(d.status) else {}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no status files"
    text = yaml.safe_dump(
        resolved_job_dict(d.spec), sort_keys=False, default_flow_style=None, width=100
    )
    return render("trials.html", rows=rows, summary=summary, spec=text)


def _trial_row(d: ReportData, rid: str, t, s) -> dict:
    """One row of the trials table: a trial read from the store (`t`) and/or its status row (`s`)."""
    status = (
        str(s["status"]) if s is not None else ("unreadable" if rid in d.problems else "unknown")
    )
    row = {
        "run_id": rid,
        "status": status,
        "group": "",
        "epochs": "",
        "acc": "",
        "best": "",
        "secs": "",
        "seed": s.get("seed", "") if s is not None else "",
    }
    if t is not None:
        va = np.asarray(t.epochs["valid_acc"], dtype=np.float64)
        total = s is not None and _ok(s.get("total_epochs"))
        row |= {
            "group": ev.group_label(t.config, ev.grid_group_keys(d.spec), d.spec),
            "seed": t.config.get("seed"),
            "acc": f"{va[-1]:.2f}",
            "best": f"{np.nanmax(va):.2f}",
            "epochs": f"{len(va) - 1}" + (f"/{int(s['total_epochs'])}" if total else ""),
            "secs": f"{np.nansum(t.epochs['seconds']):.1f}",
        }
    why = d.problems.get(rid) or (s.get("error") if s is not None and _ok(s.get("error")) else "")
    if not why and s is not None and _ok(s.get("stop_reason")):
        why = s["stop_reason"]
    return row | {"why": why}
