"""The report page: assembled from its sections, written to the store, attached to MLflow."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

from markupsafe import Markup

from ray_nas import store
from ray_nas.config import JobSpec, SpecError
from ray_nas.errors import first_line
from ray_nas.offline import evaluate as ev
from ray_nas.report.data import ReportData, load_report_data
from ray_nas.report.html import METRIC_NAMES, page, render
from ray_nas.report.sections import (
    SPACE_SECTIONS,
    _group_section,
    _section_trials,
    _tables_section,
    _trials_section,
)
from ray_nas.tracking import log_artifact_to_job


def write_report(
    spec: JobSpec, output: str | os.PathLike | None = None, log: Callable[[str], None] = print
) -> str:
    """Write the job's report (default `{store}/{job}/report.html`), attach it to the job's MLflow
    parent run when there is one, and return its path."""
    t0 = time.perf_counter()
    path = str(output) if output else f"{spec.job_dir}/report.html"
    problem = store.output_problem(path)
    if problem:
        raise SpecError(f"report -o {path}: {problem}")
    page = build_report(spec)
    store.write_bytes(path if "://" in path else os.path.abspath(path), page.encode())
    log(f"report: {len(page) / 1e6:.2f} MB in {time.perf_counter() - t0:.1f}s")
    _attach(spec, path, page, log)
    return path


def _attach(spec: JobSpec, path: str, page: str, log: Callable[[str], None]) -> None:
    """Attach to MLflow; a tracking problem is a note, never a failed report."""
    try:
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
        log(f"report: not attached to MLflow ({type(e).__name__}: {first_line(e, 200)})")


# ------------------------------------------------------------------------------------------
# the page


def build_report(spec: JobSpec) -> str:
    """The whole report as one HTML string."""
    d = load_report_data(spec)
    parts = [_header(d)]
    parts += [_group_section(d, g, trials, i) for i, (g, trials) in enumerate(d.groups.items())]
    parts.append(_tables_section(d))
    for key, title, draw in SPACE_SECTIONS:
        trials = _section_trials(d, key)
        if trials:
            parts.append(render("section.html", anchor=key, title=title, inner=draw(d, trials)))
    parts.append(_trials_section(d))
    return page(f"ray_nas report: {d.spec.name}", parts)


def _header(d: ReportData) -> Markup:
    metric = METRIC_NAMES.get(d.metric or "", d.metric) or "none"
    read = f"{len(d.trials)} read" + (f", {len(d.problems)} unreadable" if d.problems else "")
    keys = ", ".join(ev.grid_group_keys(d.spec)) or "no grid key but seed"
    facts = [
        ("trials", read),
        ("grid groups", f"{len(d.groups)} ({keys})"),
        ("criteria", str(len(d.criteria))),
        ("score", metric),
        ("store", d.spec.job_dir),
        ("written", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
    ]
    return render("header.html", name=d.spec.name, facts=facts, notes=d.notes, groups=d.groups)
