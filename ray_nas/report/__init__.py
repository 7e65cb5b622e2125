"""The job's dashboard: one self-contained HTML file, `{store}/{job}/report.html`.

Everything is inline (CSS, SVG charts drawn here, a few lines of JS for toggles): no CDN, no
network, it opens offline and can be mailed or attached to MLflow as one file.

What it shows, per grid group (the grid minus `seed`; curves are the mean over seeds with a
min-max band):
- the op magnitudes m(t, o) of Eq.11 for every op, with each criterion's mean stop epoch marked
  (the paper's Fig. 3d, 5, 6b);
- the supernet's search-valid accuracy per epoch and, with a benchmark table, the benchmark
  accuracy of each epoch's genotype (Fig. 2, 3: where the degradation shows);
- the dominant Hessian eigenvalue per epoch when recorded (Fig. 7);
then the criteria tables (Table 2 layout per group; Table 3 layout when trials differ in
`weights.lr`); for NAS-Bench-1Shot1 trials the Figure 4 layout (per space: the benchmark's test
accuracy of each epoch's discretised cell, and the op magnitudes over the choice blocks, mean ±
std over seeds); for DARTS-space trials the Table 4 layout; the trials with their status, and the
resolved job spec.

Where the numbers come from: trajectories and status files are read from the store; the job's
criteria are applied afresh (`evaluate.select`: pure and cheap, so stop epochs always match the
stored trajectories, even while a sweep is running); benchmark scores are looked up afresh in
`evaluate.benchmark`. Retrained accuracies (`retrain_acc`) are taken from `selections.parquet`
for the (trial, criterion) rows whose selected arch still matches: the report never trains, run
`ray-nas evaluate` first to get them. The report writes nothing else to the store.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import yaml

from ray_nas import store as trajectory
from ray_nas.config import JobSpec, SpecError, flatten, resolved_job_dict
from ray_nas.offline import evaluate as ev

#: op -> line colour; every chart and legend uses the same one.
OP_COLORS = {
    "none": "#7f7f7f",
    "skip_connect": "#d62728",
    "nor_conv_1x1": "#1f77b4",
    "nor_conv_3x3": "#2ca02c",
    "avg_pool_3x3": "#ff7f0e",
    "maxpool3x3": "#ff7f0e",  # NAS-Bench-1Shot1's (NAS-Bench-101's) op names
    "conv3x3-bn-relu": "#2ca02c",
    "conv1x1-bn-relu": "#1f77b4",
}
VALID_COLOR, BENCH_COLOR, HESSIAN_COLOR = "#1f77b4", "#9467bd", "#8c564b"

METRIC_NAMES = {
    "cifar10_valid": "CIFAR-10 valid",
    "cifar10_test": "CIFAR-10 test",
    "cifar100_valid": "CIFAR-100 valid",
    "cifar100_test": "CIFAR-100 test",
    "imagenet16_valid": "ImageNet16-120 valid",
    "imagenet16_test": "ImageNet16-120 test",
    "retrain_acc": "retrained acc",
}


def write_report(
    spec: JobSpec, output: str | os.PathLike | None = None, log: Callable[[str], None] = print
) -> str:
    """Write the job's report (default `{store}/{job}/report.html`), attach it to the job's MLflow
    parent run when there is one, and return its path."""
    t0 = time.perf_counter()
    path = str(output) if output else f"{spec.job_dir}/report.html"
    problem = trajectory.output_problem(path)
    if problem:
        raise SpecError(f"report -o {path}: {problem}")
    page = build_report(spec)
    trajectory.write_bytes(path if "://" in path else os.path.abspath(path), page.encode())
    log(f"report: {len(page) / 1e6:.2f} MB in {time.perf_counter() - t0:.1f}s")
    _attach(spec, path, page, log)
    return path


def _attach(spec: JobSpec, path: str, page: str, log: Callable[[str], None]) -> None:
    """Attach to MLflow; a tracking problem is a note, never a failed report."""
    try:
        from ray_nas.tracking import log_artifact_to_job

        if "://" not in path:
            log_artifact_to_job(spec, path)
        else:
            with tempfile.TemporaryDirectory() as tmp:  # MLflow wants a local file
                local = os.path.join(tmp, os.path.basename(path))
                with open(local, "w", encoding="utf-8") as f:
                    f.write(page)
                log_artifact_to_job(spec, local)
        log(
            f"report: attached to the job's MLflow run when there is one ({spec.tracking_uri}, experiment {spec.name!r})"
        )
    except Exception as e:  # noqa: BLE001 - any backend error only skips the attachment
        log(
            f"report: not attached to MLflow ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        )


# ------------------------------------------------------------------------------------------
# the data behind the page


@dataclass
class ReportData:
    spec: JobSpec
    trials: list[trajectory.TrialData]
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
    groups: dict[str, list[trajectory.TrialData]]
    status: pd.DataFrame
    bench_per_epoch: Callable | None = None
    notes: list[str] = field(default_factory=list)


def load_report_data(spec: JobSpec) -> ReportData:
    """Read the store and apply the criteria; see the module docstring for where scores come from."""
    trials, problems = trajectory.read_job(spec.job_dir)
    status = trajectory.read_status(spec.job_dir)
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
    if not len(sel) or not trajectory.exists(path):
        return sel
    old = trajectory.read_frame(path)
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


# ------------------------------------------------------------------------------------------
# the page


def build_report(spec: JobSpec) -> str:
    """The whole report as one HTML string."""
    d = load_report_data(spec)
    body = [_header(d)]
    for i, (group, trials) in enumerate(d.groups.items()):
        body.append(_group_section(d, group, trials, i))
    body.append(_tables_section(d))
    for key, title, draw in SPACE_SECTIONS:
        trials = _section_trials(d, key)
        if trials:
            body.append(_section(key, title, draw(d, trials)))
    body.append(_trials_section(d))
    body.append(_spec_section(d))
    title = f"ray_nas report: {d.spec.name}"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{JS}</script>\n</body></html>\n")  # fmt: skip


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _header(d: ReportData) -> str:
    n_groups = len(d.groups)
    metric = METRIC_NAMES.get(d.metric or "", d.metric) or "none"
    facts = [
        (
            "trials",
            f"{len(d.trials)} read" + (f", {len(d.problems)} unreadable" if d.problems else ""),
        ),
        (
            "grid groups",
            f"{n_groups} ({', '.join(ev.grid_group_keys(d.spec)) or 'no grid key but seed'})",
        ),
        ("criteria", str(len(d.criteria))),
        ("score", metric),
        ("store", d.spec.job_dir),
        ("written", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
    ]
    dl = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in d.notes)
    toc = "".join(f'<a href="#group-{i}">{_e(g)}</a>' for i, g in enumerate(d.groups))
    return f"""<header><h1>{_e(d.spec.name)} <small>ray_nas sweep report</small></h1>
<dl class="facts">{dl}</dl>{notes}
<nav>{toc}<a href="#tables">criteria tables</a><a href="#trials">trials</a><a href="#spec">job spec</a></nav>
<div class="controls"><button type="button" id="expand-all">expand all</button>
<button type="button" id="collapse-all">collapse all</button>
<label><input type="checkbox" id="show-seeds"> show every seed's curve</label></div></header>"""


def _section(anchor: str, title: str, inner: str) -> str:
    return (f'<details class="section" id="{anchor}" open><summary><h2>{title}</h2></summary>'
            f"{inner}</details>")  # fmt: skip


# ------------------------------------------------------------------------------------------
# per grid group: magnitude, accuracy, Hessian charts with the criteria's stop epochs


def _stack(rows: Sequence[np.ndarray]) -> np.ndarray:
    """[n, Tmax+1] float array; shorter trials (still running) padded with NaN."""
    n = max(len(r) for r in rows)
    out = np.full((len(rows), n), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = np.asarray(r, dtype=np.float64)
    return out


@dataclass
class Series:
    """One curve: mean over seeds with a min-max band; `seeds` drawn only on request."""

    name: str
    color: str
    runs: np.ndarray
    """[seeds, epochs], NaN where missing"""
    dash: str = ""
    std_band: bool = False
    """True: the band is mean ± 1 std whatever the number of seeds (Figure 4)"""

    def stats(self):
        """(mean, band low, band high) per epoch; the band is `band_name(seeds, std_band)`."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs stay NaN
            mean = np.nanmean(self.runs, 0)
            if len(self.runs) <= MINMAX_SEEDS and not self.std_band:
                return mean, np.nanmin(self.runs, 0), np.nanmax(self.runs, 0)
            std = np.nanstd(self.runs, 0)
            return mean, mean - std, mean + std


MINMAX_SEEDS = (
    5  # up to this many seeds the band is min-max; above, mean ± 1 std (an envelope of 50 is noise)
)


def band_name(seeds: int, std_band: bool = False) -> str:
    if seeds <= MINMAX_SEEDS and not std_band:
        return f"min-max over {seeds} seeds"
    return f"± 1 std over {seeds} seeds"


@dataclass
class Marker:
    number: int
    epoch: float
    title: str


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


def _compact(values: list, limit: int = 12) -> str:
    """`0, 1, 2` or, for long lists, `0-49` (consecutive ints) or the first `limit` values and a count."""
    if len(values) <= limit:
        return ", ".join(map(str, values))
    ints = sorted(v for v in values if isinstance(v, int))
    if len(ints) == len(values) and ints == list(range(ints[0], ints[-1] + 1)):
        return f"{ints[0]}–{ints[-1]}"
    return ", ".join(map(str, values[:limit])) + f", … ({len(values)} in all)"


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


W, H = 480, 310
ML, MR, MT, MB = 64, 14, 12, 44  # margins: left (y tick labels + label), right, top, bottom


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> np.ndarray:
    """About `n` round tick values covering [lo, hi] (steps 1, 2, 2.5, 5 x 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw * 0.999)
    if integer:
        step = max(1.0, round(step))
    start, stop = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return np.round(np.arange(start, stop + step / 2, step), 10)


def _tick_label(v: float, ticks: np.ndarray) -> str:
    step = float(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = 0
    while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    if abs(v) >= 1e5 or (v and abs(v) < 1e-4 and decimals > 5):
        return f"{v:.2g}"
    return f"{v:.{decimals}f}"


def _path(xs, ys, sx, sy) -> str:
    """SVG path through the finite points (a gap, e.g. Hessian every 2 epochs, is bridged)."""
    pts = [(sx(x), sy(y)) for x, y in zip(xs, ys) if math.isfinite(y)]
    return "M" + "L".join(f"{a:.1f},{b:.1f}" for a, b in pts) if pts else ""


def svg_chart(series: list[Series], *, xlabel: str, ylabel: str, x_max: int, markers: list[Marker] = (),
              warmup: int = 0, y_zero: bool = False, fmt: str = "{:.3f}", title: str = "") -> str:  # fmt: skip
    """A line chart as an inline <svg>: mean lines, min-max bands, per-seed lines (hidden unless
    the page's "show every seed" is on), vertical stop markers, hover titles on every point."""
    stats = [s.stats() for s in series]
    vals = np.concatenate(
        [np.concatenate([m, lo, hi, s.runs.ravel()]) for (m, lo, hi), s in zip(stats, series)]
    )
    vals = vals[np.isfinite(vals)]
    lo_v, hi_v = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
    if y_zero:
        lo_v = min(0.0, lo_v)
    yt = nice_ticks(lo_v, hi_v)
    x1 = float(max(x_max, 1))
    xt = [v for v in nice_ticks(0, x1, n=min(8, int(x1)), integer=True) if v <= x1]
    x0, y0, y1 = 0.0, float(yt[0]), float(yt[-1])
    pw, ph = W - ML - MR, H - MT - MB
    sx = lambda x: ML + (x - x0) / (x1 - x0) * pw
    sy = lambda y: MT + ph - (y - y0) / (y1 - y0) * ph
    out = [
        f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    if warmup > 0:
        out.append(f'<rect class="warmup" x="{sx(0):.1f}" y="{MT}" width="{sx(min(warmup, x1)) - sx(0):.1f}" '
                   f'height="{ph}"><title>warmup: alpha frozen</title></rect>')  # fmt: skip
    for v in yt:
        out.append(f'<line class="grid" x1="{ML}" x2="{ML + pw}" y1="{sy(v):.1f}" y2="{sy(v):.1f}"/>'
                   f'<text class="tick" x="{ML - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{_tick_label(v, yt)}</text>')  # fmt: skip
    for v in xt:
        out.append(f'<line class="grid" x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{MT}" y2="{MT + ph}"/>'
                   f'<text class="tick" x="{sx(v):.1f}" y="{MT + ph + 16}" text-anchor="middle">{int(v)}</text>')  # fmt: skip
    out.append(f'<rect class="frame" x="{ML}" y="{MT}" width="{pw}" height="{ph}"/>')
    epochs = np.arange(max(s.runs.shape[1] for s in series))
    for (mean, lo, hi), s in zip(stats, series):
        ep = epochs[: len(mean)]
        ok = np.isfinite(mean)
        if s.runs.shape[0] > 1 and ok.any():
            up = [f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(ep[ok], hi[ok])]
            down = [f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(ep[ok][::-1], lo[ok][::-1])]
            out.append(f'<polygon class="band" fill="{s.color}" points="{" ".join(up + down)}"/>')
        seeds = "".join(f'<path d="{_path(ep, r, sx, sy)}"/>' for r in s.runs)
        out.append(f'<g class="seeds" stroke="{s.color}">{seeds}</g>')
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        out.append(f'<path class="line" stroke="{s.color}"{dash} d="{_path(ep, mean, sx, sy)}"/>')
        for x, m, a, b in zip(ep[ok], mean[ok], lo[ok], hi[ok]):
            tip = f"{s.name}, epoch {int(x)}: {fmt.format(m)} (min {fmt.format(a)}, max {fmt.format(b)})"
            out.append(f'<circle class="pt" cx="{sx(x):.1f}" cy="{sy(m):.1f}" r="4" stroke="{s.color}">'
                       f"<title>{_e(tip)}</title></circle>")  # fmt: skip
    out.extend(_svg_markers(markers, sx, ph))
    out.append(
        f'<text class="label" x="{ML + pw / 2:.1f}" y="{H - 8}" text-anchor="middle">{_e(xlabel)}</text>'
    )
    out.append(f'<text class="label" transform="translate(14,{MT + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{_e(ylabel)}</text></svg>')  # fmt: skip
    return "".join(out)


def _svg_markers(markers: list[Marker], sx, ph: float) -> list[str]:
    """Dashed vertical lines with numbered badges; badges of nearby epochs stack downwards."""
    out, placed = [], []  # placed: (x pixel, stack row)
    for m in sorted(markers, key=lambda m: (m.epoch, m.number)):
        x = sx(m.epoch)
        row = sum(1 for px, _ in placed if abs(px - x) < 16)
        placed.append((x, row))
        y = MT + 10 + 17 * row
        out.append(f'<g class="marker"><title>{_e(m.title)}</title>'
                   f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MT}" y2="{MT + ph}"/>'
                   f'<circle cx="{x:.1f}" cy="{y}" r="8"/><text x="{x:.1f}" y="{y + 4}" '
                   f'text-anchor="middle">{m.number}</text></g>')  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------
# tables


def _fmt_ms(values: pd.Series) -> tuple[str, float]:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "–", math.nan
    return f"{v.mean():.2f} ± {v.std(ddof=0):.2f}", float(v.mean())


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


def _ok(v) -> bool:
    return (
        v is not None
        and not (isinstance(v, float) and math.isnan(v))
        and v is not pd.NA
        and str(v) != ""
    )


def _spec_section(d: ReportData) -> str:
    text = yaml.safe_dump(
        resolved_job_dict(d.spec), sort_keys=False, default_flow_style=None, width=100
    )
    return _section("spec", "Job spec (resolved)", f"<pre>{_e(text)}</pre>")


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


CSS = """
:root{--fg:#1d1d1f;--muted:#5f6368;--line:#d9dce1;--bg:#fff;--alt:#f6f7f9}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);
 background:var(--bg);margin:0 auto;padding:16px 24px 48px;max-width:1560px}
h1{font-size:22px;margin:4px 0 8px}h1 small{font-size:14px;color:var(--muted);font-weight:400}
h2{display:inline;font-size:18px;margin:0}h3{font-size:15px;margin:18px 0 6px}
code{font:12.5px ui-monospace,"DejaVu Sans Mono",monospace}
.facts{display:flex;flex-wrap:wrap;gap:6px 28px;margin:0 0 8px}.facts div{display:flex;gap:6px}
.facts dt{color:var(--muted)}.facts dd{margin:0;font-weight:600}
.note{background:#fff8e1;border-left:4px solid #f2b705;padding:6px 10px;margin:6px 0}
nav{display:flex;flex-wrap:wrap;gap:4px 14px;margin:8px 0}nav a{color:#1a5fb4}
.controls{display:flex;gap:12px;align-items:center;margin:6px 0 4px}
button{font:inherit;padding:3px 10px;border:1px solid var(--line);border-radius:4px;background:var(--alt);cursor:pointer}
details.section{border-top:1px solid var(--line);padding:10px 0}
summary{cursor:pointer;list-style-position:outside}
.sub{color:var(--muted);margin:6px 0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(400px,1fr));gap:14px;margin:8px 0}
figure.chart{margin:0;border:1px solid var(--line);border-radius:6px;padding:8px 8px 2px;background:#fff}
figure.chart.empty p{color:var(--muted);padding:40px 10px;text-align:center}
figcaption{font-weight:600;font-size:14px}
.keys{display:flex;flex-wrap:wrap;gap:2px 12px;font-size:12px;color:var(--muted);min-height:18px}
.keys i{display:inline-block;width:18px;height:0;border-top:3px solid;margin:0 5px 3px 0;vertical-align:middle}
svg{width:100%;height:auto;display:block}
svg text{font-family:inherit}
svg .tick{font-size:11.5px;fill:#444}svg .label{font-size:12.5px;fill:#222}
svg .grid{stroke:#eceef1;stroke-width:1}svg .frame{fill:none;stroke:#b8bcc4}
svg .band{opacity:.13;stroke:none}svg .line{fill:none;stroke-width:2.2}
svg .seeds{display:none;fill:none;stroke-width:1;opacity:.5}body.show-seeds svg .seeds{display:inline}
svg .pt{fill:transparent;stroke-width:0}svg .pt:hover{fill:#fff;stroke-width:2}
svg .warmup{fill:#000;opacity:.05}
svg .marker line{stroke:#333;stroke-width:1.2;stroke-dasharray:4 3;opacity:.75}
svg .marker circle{fill:#fff;stroke:#333;stroke-width:1.2}svg .marker text{font-size:10.5px;font-weight:700;fill:#222}
.badge{display:inline-block;min-width:18px;height:18px;line-height:16px;border:1.2px solid #333;border-radius:9px;
 text-align:center;font-size:11px;font-weight:700;background:#fff}
table{border-collapse:collapse;margin:6px 0 10px}th,td{padding:3px 10px;border-bottom:1px solid var(--line);text-align:left}
th{background:var(--alt);font-weight:600}
table.data td:not(:first-child){font-variant-numeric:tabular-nums;white-space:nowrap}
td.best{font-weight:700}table.markers{font-size:13px}
tr.st-failed td.status,tr.st-unreadable td.status,tr.st-diverged td.status{color:#b3261e;font-weight:600}
tr.st-running td.status{color:#1a5fb4;font-weight:600}
pre{background:var(--alt);border:1px solid var(--line);padding:10px;overflow:auto;font-size:12.5px}
#trial-filter{margin-left:12px;font:inherit;padding:2px 6px}
"""

#: Toggles only: expand/collapse the sections, per-seed curves, filter the trials table.
JS = """
(function () {
  "use strict";
  var sections = document.querySelectorAll("details.section");
  function setAll(open) { sections.forEach(function (s) { s.open = open; }); }
  document.getElementById("expand-all").addEventListener("click", function () { setAll(true); });
  document.getElementById("collapse-all").addEventListener("click", function () { setAll(false); });
  var seeds = document.getElementById("show-seeds");
  seeds.addEventListener("change", function () { document.body.classList.toggle("show-seeds", seeds.checked); });
  var filter = document.getElementById("trial-filter");
  filter.addEventListener("input", function () {
    var q = filter.value.toLowerCase();
    document.querySelectorAll("#trial-table tbody tr").forEach(function (row) {
      row.hidden = q !== "" && row.textContent.toLowerCase().indexOf(q) < 0;
    });
  });
})();
"""

__all__ = [
    "write_report", "build_report", "load_report_data", "svg_chart", "nice_ticks", "compare_page",
]  # fmt: skip
