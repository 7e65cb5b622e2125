"""Hand-written SVG line charts (no plotting library): series with min-max bands, markers, ticks."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ray_nas.report.html import _e

#: the colours of the accuracy and Hessian curves (ops take theirs from Space.op_colors)
VALID_COLOR, BENCH_COLOR, HESSIAN_COLOR = "#1f77b4", "#9467bd", "#8c564b"

#: chart size and margins, px: left (y tick labels + label), right, top, bottom
W, H = 480, 310
ML, MR, MT, MB = 64, 14, 12, 44


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


def y_range(values: np.ndarray, zero: bool = False, margin: float = 0.0) -> np.ndarray:
    """The y ticks of a chart of `values` (NaN ignored): round ticks (`nice_ticks`) covering
    [min, max] (from 0 when `zero`) widened by `margin` x (max - min) on each side, never across
    0; a narrow range gets fine ticks (0.196..0.204 -> 0.194, 0.196, ..., 0.206)."""
    vals = np.asarray(values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
    if zero:
        lo = min(0.0, lo)
    pad = margin * (hi - lo)
    lo, hi = (
        (max(lo - pad, 0.0) if lo >= 0 else lo - pad),
        (min(hi + pad, 0.0) if hi <= 0 else hi + pad),
    )
    return nice_ticks(lo, hi)


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


def svg_chart(
    series: list[Series],
    *,
    xlabel: str,
    ylabel: str,
    x_max: int,
    markers: Sequence[Marker] = (),
    warmup: int = 0,
    y_zero: bool = False,
    margin: float = 0.0,
    fmt: str = "{:.3f}",
    title: str = "",
) -> str:
    """A line chart as an inline <svg>: mean lines, min-max bands, per-seed lines (hidden unless
    the page's "show every seed" is on), vertical stop markers, hover titles on every point.

    The y axis spans the data (and 0 when `y_zero`), widened by `margin` x its range on each side,
    out to round ticks (`y_range`)."""
    stats = [s.stats() for s in series]
    vals = np.concatenate(
        [np.concatenate([m, lo, hi, s.runs.ravel()]) for (m, lo, hi), s in zip(stats, series)]
    )
    yt = y_range(vals, y_zero, margin)
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
        out.append(
            f'<rect class="warmup" x="{sx(0):.1f}" y="{MT}" width="{sx(min(warmup, x1)) - sx(0):.1f}" '
            f'height="{ph}"><title>warmup: alpha frozen</title></rect>'
        )
    for v in yt:
        out.append(
            f'<line class="grid" x1="{ML}" x2="{ML + pw}" y1="{sy(v):.1f}" y2="{sy(v):.1f}"/>'
            f'<text class="tick" x="{ML - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{_tick_label(v, yt)}</text>'
        )
    for v in xt:
        out.append(
            f'<line class="grid" x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{MT}" y2="{MT + ph}"/>'
            f'<text class="tick" x="{sx(v):.1f}" y="{MT + ph + 16}" text-anchor="middle">{int(v)}</text>'
        )
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
            out.append(
                f'<circle class="pt" cx="{sx(x):.1f}" cy="{sy(m):.1f}" r="4" stroke="{s.color}">'
                f"<title>{_e(tip)}</title></circle>"
            )
    out.extend(_svg_markers(markers, sx, ph))
    out.append(
        f'<text class="label" x="{ML + pw / 2:.1f}" y="{H - 8}" text-anchor="middle">{_e(xlabel)}</text>'
    )
    out.append(
        f'<text class="label" transform="translate(14,{MT + ph / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{_e(ylabel)}</text></svg>'
    )
    return "".join(out)


def _svg_markers(markers: list[Marker], sx, ph: float) -> list[str]:
    """Dashed vertical lines with numbered badges; badges of nearby epochs stack downwards."""
    out, placed = [], []  # placed: (x pixel, stack row)
    for m in sorted(markers, key=lambda m: (m.epoch, m.number)):
        x = sx(m.epoch)
        row = sum(1 for px, _ in placed if abs(px - x) < 16)
        placed.append((x, row))
        y = MT + 10 + 17 * row
        out.append(
            f'<g class="marker"><title>{_e(m.title)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MT}" y2="{MT + ph}"/>'
            f'<circle cx="{x:.1f}" cy="{y}" r="8"/><text x="{x:.1f}" y="{y + 4}" '
            f'text-anchor="middle">{m.number}</text></g>'
        )
    return out
