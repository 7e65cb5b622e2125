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

Modules: page.py (the page, write_report), data.py (what the page shows, read from the store),
sections.py (per-group charts and the tables), charts.py (the SVG line charts), html.py (small
HTML helpers), compare_page.py (`ray-nas compare`'s page).
"""

from ray_nas.report.charts import (  # noqa: F401
    BENCH_COLOR,
    HESSIAN_COLOR,
    MB,
    MINMAX_SEEDS,
    ML,
    MR,
    MT,
    OP_COLORS,
    VALID_COLOR,
    H,
    Marker,
    Series,
    W,
    _path,
    _stack,
    _svg_markers,
    _tick_label,
    band_name,
    nice_ticks,
    svg_chart,
)
from ray_nas.report.compare_page import (  # noqa: F401
    _compare_table,
    _rank_table,
    compare_page,
)
from ray_nas.report.data import (  # noqa: F401
    ReportData,
    _grid_rank,
    _stored_scores,
    load_report_data,
)
from ray_nas.report.html import (  # noqa: F401
    CSS,
    JS,
    METRIC_NAMES,
    _compact,
    _e,
    _fmt_ms,
    _ok,
    _section,
)
from ray_nas.report.page import (  # noqa: F401
    _attach,
    _header,
    build_report,
    write_report,
)
from ray_nas.report.sections import (  # noqa: F401
    SPACE_SECTIONS,
    _chart_block,
    _figure4,
    _figure4_accuracy,
    _figure4_magnitudes,
    _figure4_title,
    _group_section,
    _magnitudes,
    _methods_section,
    _section_trials,
    _skips,
    _spec_section,
    _stop_markers,
    _table2,
    _table3,
    _table4,
    _tables_section,
    _trials_section,
    methods_table,
)

__all__ = [
    "write_report",
    "build_report",
    "load_report_data",
    "svg_chart",
    "nice_ticks",
    "compare_page",
]
