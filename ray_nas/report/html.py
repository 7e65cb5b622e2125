"""The pages' HTML: Jinja2 templates (templates/, autoescaped) with their stylesheet and script
(assets/, inlined: a page is one self-contained file), and the display names and number formats
the sections share.
"""

from __future__ import annotations

import math
from importlib import resources

import jinja2
import markupsafe
import pandas as pd

METRIC_NAMES = {
    "cifar10_valid": "CIFAR-10 valid",
    "cifar10_test": "CIFAR-10 test",
    "cifar100_valid": "CIFAR-100 valid",
    "cifar100_test": "CIFAR-100 test",
    "imagenet16_valid": "ImageNet16-120 valid",
    "imagenet16_test": "ImageNet16-120 test",
    "retrain_acc": "retrained acc",
}


def _asset(name: str) -> str:
    """The text of assets/<name> (package data)."""
    return (resources.files("ray_nas.report") / "assets" / name).read_text(encoding="utf-8")


CSS = _asset("report.css")
#: toggles only: expand/collapse the sections, per-seed curves, filter the trials table
JS = _asset("report.js")

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("ray_nas.report", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["metric_name"] = lambda m: METRIC_NAMES.get(m, m)


def render(template: str, **context) -> markupsafe.Markup:
    """templates/<template> rendered with `context` (values are escaped unless Markup)."""
    return markupsafe.Markup(_ENV.get_template(template).render(**context))


def page(title: str, parts: list, script: bool = True) -> str:
    """A whole page: `parts` (rendered sections) under one <body>, the stylesheet inline, and
    the script unless `script` is False."""
    css, js = markupsafe.Markup(CSS), markupsafe.Markup(JS if script else "")
    return str(render("page.html", title=title, parts=parts, css=css, js=js))


def _e(x) -> str:
    """`x` as escaped HTML text (the SVG charts, written without templates)."""
    return str(markupsafe.escape(x))


def _compact(values: list, limit: int = 12) -> str:
    """`0, 1, 2` or, for long lists, `0-49` (consecutive ints) or the first `limit` values and a count."""
    if len(values) <= limit:
        return ", ".join(map(str, values))
    ints = sorted(v for v in values if isinstance(v, int))
    if len(ints) == len(values) and ints == list(range(ints[0], ints[-1] + 1)):
        return f"{ints[0]}–{ints[-1]}"
    return ", ".join(map(str, values[:limit])) + f", … ({len(values)} in all)"


def _fmt_ms(values: pd.Series) -> tuple[str, float]:
    """("mean ± std", mean) of the numeric values (population std); ("–", NaN) when none."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "–", math.nan
    return f"{v.mean():.2f} ± {v.std(ddof=0):.2f}", float(v.mean())


def _ok(v) -> bool:
    """A value to show: not None, NaN, NA or empty."""
    return (
        v is not None
        and not (isinstance(v, float) and math.isnan(v))
        and v is not pd.NA
        and str(v) != ""
    )
