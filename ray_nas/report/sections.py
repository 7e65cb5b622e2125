"""The report's sections: per grid group the magnitude, accuracy and Hessian charts; the criteria
tables (Table 2/3/4 layouts, Figure 4); the trials and the resolved job spec.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import yaml

from ray_nas.config import flatten, resolved_job_dict
from ray_nas.offline import evaluate as ev
from ray_nas.report.charts import (
    BENCH_COLOR,
    HESSIAN_COLOR,
    OP_COLORS,
    VALID_COLOR,
    Marker,
    Series,
    _stack,
    band_name,
    svg_chart,
)
from ray_nas.report.data import ReportData
from ray_nas.report.html import METRIC_NAMES, _compact, _e, _fmt_ms, _ok, _section


def _magnitudes(trials: list) -> dict[str, list[np.ndarray]]:
    """op -> per trial its m(t, o) [T+1] (mean softmax weight over the parameter rows), by op
    NAME: trials of one group may hold different op sets (a store that kept the trials of an
    earlier `ops`); a trial without the op contributes NaN."""
    ops = list(dict.fromkeys(o for t in trials for o in t.ops))
    return {
        op: [
            t.weights[:, :, t.ops.index(op)].mean(1) if op in t.ops
            else np.full(len(t.weights), np.nan)
            for t in trials
        ]
        for op in ops
    }  # fmt: skip


def _group_section(d: ReportData, group: str, trials: list, index: int) -> str:
    sel = d.selections[d.selections["group"] == group]
    markers = _stop_markers(d, sel)
    x_max = max(len(t.epochs["epoch"]) for t in trials) - 1
    warmup = int(trials[0].config.get("warmup_epochs") or 0)
    mag = [Series(op, OP_COLORS.get(op, "#333"), _stack(runs)) for op, runs in _magnitudes(trials).items()]  # fmt: skip
    charts = [_chart_block("Operation magnitude m(t, o)", mag, "epoch", "m(t, o): mean softmax weight over edges",
                           x_max, markers, warmup, y_zero=True, fmt="{:.3f}")]  # fmt: skip
    acc = [
        Series(
            "supernet search-valid", VALID_COLOR, _stack([t.epochs["valid_acc"] for t in trials])
        )
    ]
    if d.bench_per_epoch is not None and d.metric and d.metric != "retrain_acc":
        runs = _stack(
            [
                d.bench_per_epoch(t).get(d.metric, np.full(len(t.epochs["epoch"]), np.nan))
                for t in trials
            ]
        )
        if np.isfinite(runs).any():
            acc.append(Series(f"benchmark {METRIC_NAMES.get(d.metric, d.metric)} of the epoch's genotype",
                              BENCH_COLOR, runs, dash="6 3"))  # fmt: skip
    charts.append(_chart_block("Accuracy per epoch", acc, "epoch", "accuracy (%)", x_max, markers, warmup,
                               fmt="{:.2f}"))  # fmt: skip
    eig = _stack([t.epochs["hessian_eig"] for t in trials])
    if np.isfinite(eig).any():
        charts.append(_chart_block("Dominant Hessian eigenvalue", [Series("λmax", HESSIAN_COLOR, eig)], "epoch",
                                   "λmax of ∇²α L_valid + wd·I (last α batch)", x_max, markers, warmup, fmt="{:.4g}"))  # fmt: skip
    else:
        charts.append('<figure class="chart empty"><figcaption>Dominant Hessian eigenvalue</figcaption>'
                      "<p>not recorded (search.hessian_every: 0)</p></figure>")  # fmt: skip
    seeds = _compact([t.config.get("seed") for t in trials])
    intro = (f'<p class="sub">{len(trials)} trials (seeds {_e(seeds)}); curves: mean over seeds, band: '
             f"{band_name(len(trials))}"
             f"{'; shaded: warmup (alpha frozen)' if warmup else ''}. Dashed lines: each criterion's mean stop "
             "epoch over seeds.</p>")  # fmt: skip
    inner = intro + f'<div class="charts">{"".join(charts)}</div>' + _table2(d, sel)
    return _section(f"group-{index}", f"Grid group <code>{_e(group)}</code>", inner)


def _figure4(d: ReportData, trials: list) -> str:
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
    intro = (f'<p class="sub">Per space: (top) {_e(METRIC_NAMES[metric])} accuracy '
             "in the benchmark table (evaluate.benchmark, a `ray-nas benchmark convert-nb101` table) of the cell "
             "discretised from each epoch's weights; (bottom) op magnitudes, the mean over the choice blocks of "
             f"the softmax op weights. Curves: mean over seeds, band: {band_name(seeds, True)}.</p>")  # fmt: skip
    style = f"grid-template-columns:repeat({len(order)},minmax(300px,1fr))"
    return intro + f'<div class="charts" style="{style}">{"".join(accs + mags)}</div>'


def _figure4_title(panel: tuple[str, str], letter: str) -> str:
    space, group = panel
    return f"({letter}) {space}" + ("" if group in (f"space={space}", "all") else f" ({group})")


def _figure4_accuracy(d: ReportData, trials: list, metric: str, title: str) -> str:
    runs = None
    if d.bench_per_epoch is not None:
        runs = _stack([d.bench_per_epoch(t).get(metric, np.full(len(t.epochs["epoch"]), np.nan))
                       for t in trials])  # fmt: skip
    if runs is None or not np.isfinite(runs).any():
        why = ("no cell of these epochs is in the benchmark table" if runs is not None else
               "no benchmark accuracy: set evaluate.benchmark to a `ray-nas benchmark convert-nb101` table")  # fmt: skip
        return (
            f'<figure class="chart empty"><figcaption>{_e(title)}</figcaption><p>{why}</p></figure>'
        )
    x_max = max(len(t.epochs["epoch"]) for t in trials) - 1
    series = [
        Series(
            f"{METRIC_NAMES.get(metric, metric)} of the epoch's cell",
            BENCH_COLOR,
            runs,
            std_band=True,
        )
    ]
    return _chart_block(title, series, "epoch", "accuracy (%)", x_max, [], 0, fmt="{:.2f}")


def _figure4_magnitudes(trials: list, title: str) -> str:
    x_max = max(len(t.epochs["epoch"]) for t in trials) - 1
    series = [Series(op, OP_COLORS.get(op, "#333"), _stack(runs), std_band=True)
              for op, runs in _magnitudes(trials).items()]  # fmt: skip
    return _chart_block(title, series, "epoch", "m(t, o): mean over choice blocks",
                        x_max, [], 0, y_zero=True, fmt="{:.3f}")  # fmt: skip


def _stop_markers(d: ReportData, sel: pd.DataFrame) -> list[Marker]:
    """One marker per criterion at its mean stop epoch over the group's seeds, numbered in job order."""
    markers = []
    for i, c in enumerate(d.criteria, start=1):
        s = sel[sel["label"] == c.label]
        if len(s):
            mean, per_seed = (
                float(s["stop_epoch"].mean()),
                ", ".join(str(int(e)) for e in s["stop_epoch"]),
            )
            markers.append(
                Marker(i, mean, f"{i}. {c.label}: mean stop epoch {mean:.1f} (per seed {per_seed})")
            )
    return markers


def _chart_block(
    title, series, xlabel, ylabel, x_max, markers, warmup, y_zero=False, fmt="{:.3f}"
) -> str:
    keys = "".join(f'<span><i style="border-color:{s.color};border-top-style:{"dashed" if s.dash else "solid"}">'
                   f"</i>{_e(s.name)}</span>" for s in series)  # fmt: skip
    svg = svg_chart(series, xlabel=xlabel, ylabel=ylabel, x_max=x_max, markers=markers, warmup=warmup,
                    y_zero=y_zero, fmt=fmt, title=title)  # fmt: skip
    return f'<figure class="chart"><figcaption>{_e(title)}</figcaption><div class="keys">{keys}</div>{svg}</figure>'


# ------------------------------------------------------------------------------------------
# SVG line charts


def _table2(d: ReportData, sel: pd.DataFrame) -> str:
    """Table 2 layout: criterion rows x score columns (mean ± std over seeds), stop epoch, fire rate.
    The numbers in the first column are the chart markers'."""
    cols = d.score_cols
    rows, cells = [], {}
    for c in d.criteria:
        s = sel[sel["label"] == c.label]
        cells[c.label] = [_fmt_ms(s[col]) for col in cols]
    best = [
        max((r[j][1] for r in cells.values() if math.isfinite(r[j][1])), default=math.nan)
        for j in range(len(cols))
    ]
    for i, c in enumerate(d.criteria, start=1):
        s = sel[sel["label"] == c.label]
        if s.empty:
            continue
        tds = "".join(f'<td class="{"best" if math.isfinite(b) and abs(v - b) < 1e-9 else ""}">{txt}</td>'
                      for (txt, v), b in zip(cells[c.label], best))  # fmt: skip
        stops = [int(e) for e in s["stop_epoch"]]
        if len(stops) <= 12:
            per_seed = ", ".join(map(str, stops))
        elif min(stops) == max(stops):
            per_seed = f"all {stops[0]}"
        else:
            per_seed = f"{min(stops)}–{max(stops)}, median {np.median(stops):g}"
        fired = f"{s['fired'].mean() * 100:.0f}% ({int(s['fired'].sum())}/{len(s)})"
        rows.append(f'<tr><td><span class="badge">{i}</span> <code>{_e(c.label)}</code></td>{tds}'
                    f"<td>{_fmt_ms(s['stop_epoch'])[0]}</td><td>{_e(per_seed)}</td><td>{fired}</td></tr>")  # fmt: skip
    head = "".join(f"<th>{_e(METRIC_NAMES.get(c, c))} (%)</th>" for c in cols)
    return ("<h3>Criteria (Table 2 layout): accuracy of the selected arch, mean ± population std (ddof=0) over seeds; best in bold</h3>"
            f'<table class="data"><thead><tr><th>criterion</th>{head}<th>stop epoch</th><th>stop epochs (per seed, or range)</th>'
            f"<th>fire rate</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")  # fmt: skip


def _section_trials(d: ReportData, section: str) -> list:
    """The trials whose space asks for the report section `section` (Space.report_sections)."""
    from ray_nas.spaces import get_space

    return [t for t in d.trials if section in get_space(t.space).report_sections]


def _skips(space, arch: str) -> int:
    """skip_connect edges in the cell the space's criteria read (DARTS: normal)."""
    return space.skip_count(arch, space.magnitude_cell)


def _table4(d: ReportData, trials: list) -> str:
    """Table 4 layout (DARTS-space searches): per search and criterion the selected genotype's
    stop epoch, skip connections in its normal cell, parameters (M, auxiliary head excluded) and
    retrained test error (%, mean ± std over evaluate.retrain.seeds)."""
    from ray_nas.spaces import get_space

    space_of = {t.run_id: get_space(t.space) for t in trials}
    sel = d.selections[d.selections["run_id"].isin(space_of)]
    rows = []
    for r in sel.sort_values(["run_id", "label"]).itertuples():
        acc, std, pm = (
            getattr(r, c, math.nan) for c in ("retrain_acc", "retrain_acc_std", "params_m")
        )
        err = "–" if not _ok(acc) else f"{100 - acc:.2f}" + (f" ± {std:.2f}" if _ok(std) else "")
        rows.append(f"<tr><td><code>{_e(r.run_id)}</code></td><td><code>{_e(r.label)}</code></td>"
                    f"<td>{int(r.stop_epoch)}</td><td>{_skips(space_of[r.run_id], r.arch)}</td>"
                    f"<td>{f'{pm:.2f}' if _ok(pm) else '–'}</td><td>{err}</td>"
                    f'<td><code class="arch">{_e(r.arch)}</code></td></tr>')  # fmt: skip
    return ('<p class="sub">Each criterion\'s genotype, retrained from scratch (`ray-nas evaluate`; '
            "`ray-nas export` writes them as a DARTS genotypes.py). Test error = 100 − retrained accuracy.</p>"
            '<table class="data"><thead><tr><th>run_id</th><th>criterion</th><th>stop epoch</th>'
            "<th>skips (normal)</th><th>params (M)</th><th>test error (%)</th><th>genotype</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")  # fmt: skip


def methods_table(d: ReportData) -> tuple[list[str], list[list[str]]]:
    """Table 2 of the paper from a job with a bundle axis: one row per (bundle, criterion shown
    for it), columns data set x valid/test (mean ± std over seeds; "–" where the benchmark table
    has no such column), plus the bundle's mean search seconds. ([], []) without a bundle axis."""
    from ray_nas.config import bundle_label, grid_value, is_bundle_axis
    from ray_nas.criteria import parse_criterion
    from ray_nas.tables import METRICS

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


def _methods_section(d: ReportData) -> str:
    head, rows = methods_table(d)
    if not rows:
        return ""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return ("<h3>Methods (the paper's Table 2 layout): rows = grid rows x their criteria; accuracy "
            "of the selected arch, mean ± std over seeds</h3>"
            f'<table class="data"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>')  # fmt: skip


def _tables_section(d: ReportData) -> str:
    parts = [_methods_section(d), _table3(d)]
    parts.append('<p class="sub">Each grid group\'s Table 2 layout is in its section above. '
                 "A criterion that does not fire selects the last epoch.</p>")  # fmt: skip
    return _section("tables", "Criteria across learning rates", "".join(parts))


def _table3(d: ReportData) -> str:
    """Table 3 layout: criterion x weights.lr, when the trials differ in weights.lr."""
    lr = {t.run_id: flatten(t.config).get("weights.lr") for t in d.trials}
    values = sorted({v for v in lr.values() if v is not None})
    if len(values) < 2:
        return '<p class="sub">Table 3 layout (criterion x weights.lr): the trials share one weights.lr.</p>'
    sel = d.selections.assign(lr=d.selections["run_id"].map(lr))
    col = d.metric or "stop_epoch"
    what = (
        f"{METRIC_NAMES.get(col, col)} (%)"
        if d.metric
        else "mean stop epoch (no accuracy available)"
    )
    head = "".join(f"<th>weights.lr = {v:g}</th>" for v in values)
    rows = []
    for i, c in enumerate(d.criteria, start=1):
        s = sel[sel["label"] == c.label]
        tds = "".join(f"<td>{_fmt_ms(s.loc[s['lr'] == v, col])[0]}</td>" for v in values)
        rows.append(
            f'<tr><td><span class="badge">{i}</span> <code>{_e(c.label)}</code></td>{tds}</tr>'
        )
    return (f"<h3>Table 3 layout: {_e(what)} by weights.lr, mean ± population std (ddof=0) over all trials with that lr</h3>"
            f'<table class="data"><thead><tr><th>criterion</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")  # fmt: skip


#: the report's space-specific sections (Space.report_sections): key, title, draw(d, its trials)
SPACE_SECTIONS = (
    ("figure4", "NAS-Bench-1Shot1 (Figure 4 layout)", _figure4),
    ("table4", "Selected architectures (Table 4 layout)", _table4),
)


def _trials_section(d: ReportData) -> str:
    st = d.status.set_index("run_id") if len(d.status) else pd.DataFrame()
    keys = ev.grid_group_keys(d.spec)
    rows = []
    by_id = {t.run_id: t for t in d.trials}
    for rid in [*by_id, *sorted(set(st.index) - set(by_id))]:
        t = by_id.get(rid)
        s = st.loc[rid] if rid in st.index else None
        status = (
            str(s["status"])
            if s is not None
            else ("unreadable" if rid in d.problems else "unknown")
        )
        if t is not None:
            va = np.asarray(t.epochs["valid_acc"], dtype=np.float64)
            group, seed = ev.group_label(t.config, keys, d.spec), t.config.get("seed")
            epochs = f"{len(va) - 1}" + (
                f"/{int(s['total_epochs'])}" if s is not None and _ok(s.get("total_epochs")) else ""
            )
            acc, best = f"{va[-1]:.2f}", f"{np.nanmax(va):.2f}"
            secs = f"{np.nansum(t.epochs['seconds']):.1f}"
        else:
            group, seed, epochs, acc, best, secs = (
                "",
                s.get("seed", "") if s is not None else "",
                "",
                "",
                "",
                "",
            )
        why = d.problems.get(rid) or (
            s.get("error") if s is not None and _ok(s.get("error")) else ""
        )
        if not why and s is not None and _ok(s.get("stop_reason")):
            why = s["stop_reason"]
        rows.append(f'<tr class="st-{_e(status)}"><td><code>{_e(rid)}</code></td><td>{_e(group)}</td>'
                    f"<td>{_e(seed)}</td><td class=\"status\">{_e(status)}</td><td>{epochs}</td><td>{acc}</td>"
                    f"<td>{best}</td><td>{secs}</td><td>{_e(why)}</td></tr>")  # fmt: skip
    counts = d.status["status"].value_counts().to_dict() if len(d.status) else {}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no status files"
    inner = (f'<p class="sub">{len(rows)} trials: {_e(summary)}. '
             '<input type="search" id="trial-filter" placeholder="filter rows…" aria-label="filter trials"></p>'
             '<table class="data" id="trial-table"><thead><tr><th>run_id</th><th>group</th><th>seed</th>'
             "<th>status</th><th>epochs</th><th>last valid acc (%)</th><th>best valid acc (%)</th>"
             f"<th>search time (s)</th><th>note</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")  # fmt: skip
    return _section("trials", "Trials", inner)


def _spec_section(d: ReportData) -> str:
    text = yaml.safe_dump(
        resolved_job_dict(d.spec), sort_keys=False, default_flow_style=None, width=100
    )
    return _section("spec", "Job spec (resolved)", f"<pre>{_e(text)}</pre>")
