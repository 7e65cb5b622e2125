"""The commands behind the CLI: load and validate the job, then call the stage that does the work.

Everything a command needs is validated here before any work starts.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from ray_nas import config as specmod
from ray_nas import criteria
from ray_nas.config import SpecError
from ray_nas.spaces import get_space


def search_command(
    job: str,
    overrides: list[str],
    progress: bool = True,
    redo: bool | str = False,
    trial: str | None = None,
    trial_index: int | None = None,
) -> int:
    """`ray-nas search`: one search in this process, on the job's `search` defaults + overrides,
    or one trial of the job's grid (`trial` run_id, `trial_index`, or `--set` on a grid axis to
    one of its values), run under the run_id and into the store the sweep would use.

    Checked before any work, as the sweep does: the store holds this job (same grid and search
    defaults: a grid point's own values are not the job's), it can be written, and the trial's
    files are whole (`redo`: moved aside first).
    """
    # pyarrow (the store) and torch: imported on use, `ray-nas --help` starts without them
    from ray_nas import store
    from ray_nas.search import integrity
    from ray_nas.search.trial import StoreError, run_trial

    rest, axis_values = _split_grid_overrides(job, overrides)
    spec = specmod.load_spec(job, rest)
    if isinstance(redo, str) and spec.grid and trial is None and trial_index is None:
        if not axis_values:
            trial = redo  # `--redo RUN_ID` alone: that trial of the grid, run again
    if trial is not None or trial_index is not None or axis_values:
        cfg, rid, _point = specmod.select_trial(
            spec, specmod.expand_grid(spec), trial, trial_index, axis_values
        )
    else:
        cfg = specmod.search_config(spec)
        rid = specmod.run_id(cfg)
    if isinstance(redo, str) and redo != rid:
        raise SpecError(f"--redo {redo}: this search is trial {rid} (`--redo` alone redoes it)")
    integrity.check_store_writable(spec)
    integrity.check_job_identity(spec)
    if redo:
        folder = integrity.redo_trial(spec.job_dir, rid)
        print(
            f"trial {rid}: "
            + (f"files moved to {folder}; it runs again" if folder else "no files yet")
        )
    else:
        integrity.check_trials(spec, [rid], "search")

    size = f"N={cfg.cells}" if get_space(cfg.space).size_key == "cells" else f"{cfg.layers} cells"
    print(f"job {spec.name}: search {rid} ({cfg.space}, {cfg.dataset}, C={cfg.channels}, {size}, "
          f"{cfg.warmup_epochs}+{cfg.epochs} epochs) -> {spec.job_dir}")  # fmt: skip
    t0 = time.perf_counter()
    try:
        status = run_trial(spec, cfg, rid, progress=progress)
    except StoreError as e:  # the store failed mid-search: what was written stays, rerun resumes
        print(
            f"ray-nas search: error: {e}; rerun the same command once it is writable",
            file=sys.stderr,
        )
        return 1
    store.consolidate_trials(spec.job_dir)  # trials.parquet: one row per trial of the job
    if status != "skipped":
        print(f"search {rid} {status} in {time.perf_counter() - t0:.1f}s")
        print(f"  epochs: {spec.job_dir}/epochs/run_id={rid}/")
        print(f"  alphas: {spec.job_dir}/alphas/run_id={rid}/")
    return 0


def _split_grid_overrides(job: str, overrides: list[str]) -> tuple[list[str], dict]:
    """(the `--set` items that change the job, {grid axis: (key, value)} of those that pick a
    value on one of the job's grid axes: `search.seed=1` for `grid: {seed: [...]}`)."""
    if not overrides:
        return list(overrides), {}
    grid = specmod.load_raw(job).get("grid")
    if not isinstance(grid, dict) or not grid:
        return list(overrides), {}
    rest, picked = [], {}
    for item, (key, value) in zip(overrides, specmod.parse_set(overrides)):
        axis = specmod.grid_axis_of(grid, key)
        if axis is None:
            rest.append(item)
        else:
            picked[axis] = (key, value)
    return rest, picked


def sweep_command(
    job: str,
    overrides: list[str],
    dry_run: bool = False,
    evaluate: bool = True,
    redo: tuple[str, ...] = (),
    report: bool = False,
) -> int:
    spec = specmod.load_spec(job, overrides)
    trials = specmod.expand_grid(spec)
    if dry_run:
        for _cfg, rid, point in trials:
            print(rid, " ".join(f"{k}={specmod.value_text(v)}" for k, v in point.items()))
        print(f"{len(trials)} trials")
        for line in _estimate_lines(spec, trials):
            print(line)
        return 0
    if evaluate and spec.evaluate.benchmark:
        _check_benchmark(spec)
    # pyarrow and ray (the sweep), urllib and ssl (the tracking check): imported on use
    from ray_nas.search.sweep import run_sweep
    from ray_nas.tracking import check_tracking

    check_tracking(spec.tracking_uri)
    run_sweep(spec, trials, redo=tuple(redo), evaluate=evaluate)
    if evaluate:
        return evaluate_command(job, overrides, use_ray=True, report=report)
    print(f"next: ray-nas evaluate {job}")
    return 0


def _check_benchmark(spec: specmod.JobSpec) -> None:
    """Before a sweep: the table the offline stage after it needs exists and is keyed by the
    column the job's spaces look their genotypes up in (SpecError, one line)."""
    # pandas: imported on use
    from ray_nas.offline.evaluate import _load_benchmark
    from ray_nas.tables import TABLE_KINDS

    try:
        _load_benchmark(spec)
    except FileNotFoundError:
        make = TABLE_KINDS[specmod.benchmark_key_column(spec)].make
        raise SpecError(f"evaluate.benchmark: {spec.evaluate.benchmark} not found (the offline "
                        f"stage after the sweep needs it; make it with {make}, "
                        "or set it to null)") from None  # fmt: skip
    except SpecError:
        raise
    except ValueError as e:
        raise SpecError(f"evaluate.benchmark: {e}") from None


def _estimate_lines(spec: specmod.JobSpec, trials: list) -> list[str]:
    """The dry run's cost estimate: trials x total (warmup + joint) epochs x GPU seconds per epoch."""
    epochs = sum(cfg.total_epochs for cfg, _rid, _point in trials)
    per_epoch = spec.estimate.gpu_seconds_per_epoch
    lines = [
        f"estimate: {len(trials)} trials, {epochs} epochs in all, x {per_epoch:g} s/epoch "
        f"= {epochs * per_epoch / 3600:.1f} GPU-hours",
        f"  (estimate.gpu_seconds_per_epoch{_set_by_job(spec)}, one trial per whole GPU; the default is "
        "NAS-Bench-201's DARTS-V1: 10,890 s / 50 CIFAR-10 epochs at batch 64)",
    ]
    gpu = spec.resources.gpu
    if 0 < gpu < 1:
        lines.append(
            f"  resources.gpu={gpu:g} packs {int(1 // gpu)} trials on a GPU: an upper bound, since packed "
            "trials that leave the GPU idle share it for fewer GPU-hours (none saved if one saturates it)"
        )
    elif gpu == 0:
        lines.append("  resources.gpu=0: the trials run on CPUs, so this GPU figure does not apply")
    return lines + _pt_estimate(spec, trials)[1] + _retrain_estimate_lines(spec, trials)


#: the cost of one darts_pt candidate measurement (a forward pass over search-valid) in search
#: epochs: an epoch is a forward and backward on a weight batch and on an arch batch per step
#: (~6 forwards over as many images)
PT_MEASURE_EPOCHS = 1 / 6


def _pt_estimate(spec: specmod.JobSpec, trials: list) -> tuple[float, list[str]]:
    """(GPU-hours, lines) of darts_pt's projections: per trial its tuning epochs
    (criteria.pt_schedule) and candidate measurements (criteria.pt_measurements, each
    PT_MEASURE_EPOCHS of an epoch), x the job's GPU seconds per epoch; (0, []) without darts_pt."""
    stages = [c for c in map(criteria.parse_criterion, spec.criteria) if c.info.stage]
    if not stages:
        return 0.0, []
    tuned = measures = 0
    for c in stages:
        for cfg, _rid, _point in trials:
            tuned += criteria.pt_schedule(cfg.space, c.params["tune_epochs"])[2]
            measures += criteria.pt_measurements(cfg.space, len(cfg.ops))
    epochs = tuned + measures * PT_MEASURE_EPOCHS
    per_epoch = spec.estimate.gpu_seconds_per_epoch
    hours = epochs * per_epoch / 3600
    return hours, [
        f"darts_pt: {len(trials) * len(stages)} projections, {tuned} tuning epochs + {measures} "
        f"candidate measurements (~1/6 epoch each) = {epochs:.0f} epochs x {per_epoch:g} s/epoch "
        f"= {hours:.1f} GPU-hours (measured on the whole search-valid split: "
        "less with valid_batches)",
    ]


def _set_by_job(spec: specmod.JobSpec) -> str:
    """` as the job file sets it (its comment says why)` when it differs from the default."""
    default = specmod.Estimate().gpu_seconds_per_epoch
    if spec.estimate.gpu_seconds_per_epoch == default:
        return ""
    return f" = {spec.estimate.gpu_seconds_per_epoch:g} as {spec.source or 'the job'} sets it (see its comment)"


def _retrain_estimate_lines(spec: specmod.JobSpec, trials: list) -> list[str]:
    """Jobs on a space without a benchmark (DARTS): the retraining's GPU-hours, at most one
    genotype per (trial, criterion)."""
    space = {cfg.space: get_space(cfg.space) for cfg, _rid, _point in trials}
    n_retrain = sum(not space[cfg.space].has_benchmark for cfg, _rid, _point in trials)
    r = spec.evaluate.retrain
    if not n_retrain or r is None:
        return []
    sp = next(s for s in space.values() if not s.has_benchmark)
    name, rec = sp.retrain_recipe(r)
    n_crit = len(spec.criteria) or len(_default_criteria(sp.name))
    n_seeds = len(sp.retrain_seeds(r))
    runs = n_retrain * n_crit * n_seeds
    sec = rec.epochs * spec.estimate.retrain_gpu_seconds_per_epoch
    return [
        f"retraining: up to {n_retrain} searches x {n_crit} criteria x {n_seeds} seeds = {runs} runs "
        f"x {rec.epochs} epochs ({name}) x {spec.estimate.retrain_gpu_seconds_per_epoch:g} s/epoch "
        f"= {runs * sec / 3600:.1f} GPU-hours (fewer when criteria pick the same genotype)",
        "  (estimate.retrain_gpu_seconds_per_epoch: the default is DARTS_V2 at 20 cells, C=36 on a V100; "
        "a smaller recipe (proxy) runs proportionally faster: measure yours)",
        f"total: {(sum(c.total_epochs for c, _r, _p in trials) * spec.estimate.gpu_seconds_per_epoch + runs * sec) / 3600 + _pt_estimate(spec, trials)[0]:.1f} GPU-hours",
    ]


def _default_criteria(space: str) -> list:
    from ray_nas.criteria import default_criteria

    return default_criteria(space)


def evaluate_command(
    job: str, overrides: list[str], use_ray: bool | None = None, report: bool = False
) -> int:
    """`ray-nas evaluate`: the offline stage, then its results logged to MLflow; `report`: then
    the HTML report. Retraining runs as Ray tasks on the cluster RAY_ADDRESS names, else on the
    Ray cluster running on this node (a cluster's head or worker, as `ray.init(address="auto")`
    finds it), else in this process; the first line says which. `use_ray=True`: the caller's Ray
    (the sweep's) is already up."""
    spec = specmod.load_spec(job, overrides)
    import os

    from ray_nas.offline.evaluate import run_evaluate
    from ray_nas.offline.retrain import retrain_address
    from ray_nas.tracking import check_tracking, log_job

    address = None
    if use_ray is None:
        address, why = retrain_address()
        use_ray = address is not None
        where = (f"on the Ray cluster at {address} ({why})" if use_ray
                 else f"in this process, one run after another ({why})")  # fmt: skip
        print(f"evaluate {spec.name}: retraining, if any, runs {where}", flush=True)
    check_tracking(spec.tracking_uri)  # before selections.parquet is written

    retrain_map = None
    if use_ray:
        from ray_nas.search.sweep import ray_map

        retrain_map = ray_map
    from ray_nas.tracking import TrackingOutage

    saved = os.environ.get("RAY_ADDRESS")
    if address is not None:  # ray_map connects where RAY_ADDRESS points
        os.environ["RAY_ADDRESS"] = address
    try:
        result = run_evaluate(spec, retrain_map=retrain_map)
    finally:
        if saved is None:
            os.environ.pop("RAY_ADDRESS", None)
    try:
        log_job(spec, result)
    except TrackingOutage as e:
        print(f"ray-nas evaluate: error: {e}; {spec.job_dir}/selections.parquet is written; "
              f"rerun `ray-nas evaluate {job}` once it answers (nothing is logged twice)",
              file=sys.stderr)  # fmt: skip
        return 1
    report_path = None
    if report:
        from ray_nas.report import write_report

        report_path = write_report(spec, None, log=lambda _line: None)
    print(where_text(spec, job, report_path, overrides))
    return 0


def where_text(spec, job: str, report_path: str | None = None, overrides=()) -> str:
    """The block `ray-nas evaluate` ends with: the report, MLflow, the Parquet files, and how to
    rerun only the criteria; every command spelled as it runs from the repository (`.venv/bin/`
    where the tools live in the project's venv), with the run's `--set` overrides (the store, the
    name: without them a command reads another job's files)."""
    from ray_nas.tracking import experiment_id  # urllib/ssl: only when a job has run

    b = _bin()
    d = spec.job_dir
    sets = [o for o in overrides if not o.strip().startswith("criteria=")]
    again = " ".join([job] + [f"--set {shlex.quote(o)}" for o in overrides])
    job = " ".join([job] + [f"--set {shlex.quote(o)}" for o in sets])
    report = (
        f"{report_path}  (open it in a browser)"
        if report_path
        else f"`{b}ray-nas report {again}` writes {d}/report.html"
    )
    ui = mlflow_hint(spec.tracking_uri, experiment_id(spec.tracking_uri, spec.name), b)
    if ui.startswith(b + "mlflow ui") and "then open" not in ui:
        ui += "  (then http://127.0.0.1:5000)"
    ui, _, link = ui.partition(", then open ")  # the link on its own line: the block stays narrow
    return "\n".join([
        "",
        "where the results are:",
        f"  report:       {report}",
        f"  MLflow:       {ui}",
        *([f"                then open {link}"] if link else []),
        f"                experiment {spec.name!r}: the job's run and one run per trial, named by "
        "grid group and seed",
        f"  selections:   {d}/selections.parquet",
        f"                {b}python -c \"import pandas as pd; "
        f"print(pd.read_parquet('{d}/selections.parquet'))\"",
        f"  trajectories: {d}/epochs/  {d}/alphas/  (Parquet, one partition per run_id)",
        f"other criteria: {b}ray-nas evaluate {job} --report --set 'criteria=[...]'",
        "  reruns only the criteria, never the search (cells newly selected on a job without a",
        "  benchmark are retrained); the job's own criteria keep their rows in selections.parquet",
    ])  # fmt: skip


def _bin() -> str:
    """`.venv/bin/` when this process runs from the repository's own venv (as `make` makes it),
    else "" (the tools are on PATH)."""
    exe = Path(sys.executable)
    venv = Path(sys.prefix)
    try:
        rel = venv.relative_to(Path.cwd())
    except ValueError:
        return ""
    if exe.parent.parent != venv or rel == Path("."):
        return ""
    return f"{rel.as_posix()}/bin/"


#: The runs view's query: MLflow 3.17's "Model training" side (`workflowType`; the UI otherwise
#: opens an experiment on its GenAI overview, whatever the experiment's `mlflow.experimentKind`
#: tag says) with the runs sorted by name, which lists the trial runs flat (`lr_scheme=nb201
#: seed=0`, ...) instead of folded under the job's run as the default date order does.
RUNS_VIEW = "?workflowType=machine_learning&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true"


def mlflow_hint(uri: str, experiment_id: str | None = None, bin_dir: str = "") -> str:
    """How to look at the tracking backend: a server is opened, a database needs `mlflow ui`.
    With the experiment's id, the link goes to its runs (`#/experiments/<id>/runs`, RUNS_VIEW)."""
    runs = f"/#/experiments/{experiment_id}/runs{RUNS_VIEW}" if experiment_id else ""
    if uri.startswith(("http://", "https://")):
        return (f"open {uri.rstrip('/')}{runs} (a server on a cluster head: forward its port "
                "first, e.g. `ray attach CLUSTER.yaml -p 5000` with port 5000 free here; "
                "docs/cluster.md)")  # fmt: skip
    hint = f"{bin_dir}mlflow ui --backend-store-uri {uri}"
    return hint + (f", then open http://127.0.0.1:5000{runs}" if runs else "")


def status_command(job: str, overrides: list[str], watch: float | None = None) -> int:
    """`ray-nas status`: the job's trials from the store's status and epochs files (works while
    the sweep runs; local or S3). `watch`: again every `watch` seconds until none is pending or
    running; Ctrl-C ends it."""
    spec = specmod.load_spec(job, overrides)
    from ray_nas.offline.status import format_status, job_status  # pandas: imported on use

    while True:
        js = job_status(spec)
        print(format_status(js), flush=True)
        if watch is None or js.finished:
            return 0
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
            return 0
        print()


def report_command(job: str, overrides: list[str], output: str | None) -> int:
    spec = specmod.load_spec(job, overrides)
    from ray_nas.report import write_report

    path = write_report(spec, output)
    print(f"report written to {path}")
    return 0


def compare_command(jobs: list[str], overrides: list[str], output: str | None) -> int:
    """`ray-nas compare`: every job loaded and checked (and MLflow reached) before any work."""
    specs = [specmod.load_spec(job, overrides) for job in jobs]
    from ray_nas import store

    path = str(output) if output else compare_path(specs[0])
    problem = store.output_problem(path)
    if problem:
        raise SpecError(f"compare -o {path}: {problem}")
    from ray_nas.tracking import check_tracking

    check_tracking(specs[0].tracking_uri)
    from ray_nas.offline import compare
    from ray_nas.offline.results import JobResults
    from ray_nas.report import compare_page

    t0 = time.perf_counter()
    result = compare.compare_jobs([JobResults(s) for s in specs])
    text = compare.format_comparison(result)
    print(text)
    page = compare_page(result)
    store.write_bytes(path if "://" in path else os.path.abspath(path), page.encode())
    print(f"compare: {len(specs)} jobs in {time.perf_counter() - t0:.1f}s; page written to {path}")
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp, "compare.csv"), Path(tmp, "compare_rank.csv"), Path(tmp, "compare.txt")]
        result.cells.to_csv(files[0], index=False)
        result.ranks.to_csv(files[1], index=False)
        files[2].write_text(text + "\n")
        local = Path(tmp, Path(path.rsplit("/", 1)[-1] or "compare.html").name)  # MLflow: a file
        local.write_text(page, encoding="utf-8")
        from ray_nas.tracking import log_comparison

        log_comparison(specs[0].tracking_uri, result.jobs, [*map(str, files), str(local)])
    return 0


def compare_path(spec: specmod.JobSpec) -> str:
    """`ray-nas compare`'s page without `-o`: `{store}/{job}/compare.html` of the first job."""
    return f"{spec.job_dir}/compare.html"


def criteria_command(job: str | None) -> int:
    """`ray-nas criteria [JOB]`: the catalogue, then the job's own functions (named by import path)."""
    extra = []
    if job:
        spec = specmod.load_spec(job)
        extra = criteria.job_functions([*spec.criteria, spec.stop])
    print(criteria.describe_criteria(extra))
    return 0


__all__ = [
    "SpecError",
    "search_command",
    "sweep_command",
    "evaluate_command",
    "report_command",
    "compare_command",
    "status_command",
]


def export_command(job: str, overrides: list[str], output: str | None) -> int:
    """`ray-nas export`: every selected DARTS-space genotype as `NAME = Genotype(...)`."""
    spec = specmod.load_spec(job, overrides)
    from ray_nas.offline.evaluate import export_genotypes

    path, n = export_genotypes(spec, output)
    print(f"{n} genotypes written to {path} (DARTS's genotypes.py format: import it, or paste it)")
    return 0
