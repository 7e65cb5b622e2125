"""Small HTML helpers and display names shared by the report's sections."""

from __future__ import annotations

import html
import math

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


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _section(anchor: str, title: str, inner: str) -> str:
    return (f'<details class="section" id="{anchor}" open><summary><h2>{title}</h2></summary>'
            f"{inner}</details>")  # fmt: skip


def _compact(values: list, limit: int = 12) -> str:
    """`0, 1, 2` or, for long lists, `0-49` (consecutive ints) or the first `limit` values and a count."""
    if len(values) <= limit:
        return ", ".join(map(str, values))
    ints = sorted(v for v in values if isinstance(v, int))
    if len(ints) == len(values) and ints == list(range(ints[0], ints[-1] + 1)):
        return f"{ints[0]}–{ints[-1]}"
    return ", ".join(map(str, values[:limit])) + f", … ({len(values)} in all)"


# ------------------------------------------------------------------------------------------
# tables


def _fmt_ms(values: pd.Series) -> tuple[str, float]:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "–", math.nan
    return f"{v.mean():.2f} ± {v.std(ddof=0):.2f}", float(v.mean())


def _ok(v) -> bool:
    return (
        v is not None
        and not (isinstance(v, float) and math.isnan(v))
        and v is not pd.NA
        and str(v) != ""
    )


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
