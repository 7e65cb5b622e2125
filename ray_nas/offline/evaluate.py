"""The offline stage (Algorithm 2): stored trajectories x criteria -> selected epochs and archs,
their benchmark scores (or retrained accuracy), `selections.parquet`, a summary over seeds, MLflow.

It reads only what the store holds, so it can be rerun with new criteria at any time.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ray_nas import criteria as crit
from ray_nas import store
from ray_nas.config import JobSpec, expand_grid, flatten, grid_value, resolve_search

SELECTION_COLUMNS = [
    "run_id",
    "criterion",
    "params",
    "label",
    "fired",
    "stop_epoch",
    "arch",
    "note",
    "in_progress",
]


def job_criteria(spec: JobSpec, metric: str | None) -> list[crit.CriterionSpec]:
    """The job's criteria (when it lists none: the default set of each search space its grid
    has, crit.default_criteria); a plain `oracle` uses `metric`."""
    if spec.criteria:
        specs = [crit.parse_criterion(c) for c in spec.criteria]
    else:
        spaces = dict.fromkeys(cfg.space for cfg, _, _ in expand_grid(spec))
        specs = list({c.label: c for s in spaces for c in crit.default_criteria(s)}.values())
    return with_oracle_metric(specs, metric)


def with_oracle_metric(
    specs: list[crit.CriterionSpec], metric: str | None
) -> list[crit.CriterionSpec]:
    """The specs, a plain `oracle` (no metric= given) set to score on `metric`."""
    out = []
    for c in specs:
        if c.name == "oracle" and "metric=" not in c.label and metric:
            c = crit.CriterionSpec(c.name, {**c.params, "metric": metric}, c.label)
        out.append(c)
    return out


def main_metric(spec: JobSpec) -> str | None:
    """The job's benchmark metric: evaluate.metric, else the `search` data set's test metric (each
    trial is scored with trial_metric, which differs where `dataset` is a grid key)."""
    return trial_metric(spec, {"dataset": resolve_search(spec.search).dataset})


def trial_metric(spec: JobSpec, config: dict) -> str | None:
    """The benchmark metric that scores one trial (its resolved config): evaluate.metric, else
    the test metric of the trial's own data set."""
    if spec.evaluate.metric:
        return spec.evaluate.metric
    from ray_nas.tables import default_metric

    return default_metric(config.get("dataset", ""))


@dataclass
class EvaluateResult:
    selections: pd.DataFrame
    summary: pd.DataFrame
    trials: list[store.TrialData]
    problems: dict[str, str]
    metric: str


def select(
    trials: list[store.TrialData],
    specs: list[crit.CriterionSpec],
    per_epoch_metrics: Callable[[store.TrialData], dict[str, np.ndarray]] | None = None,
    in_progress: set[str] = frozenset(),
    metric_of: Callable[[store.TrialData], str | None] | None = None,
) -> pd.DataFrame:
    """One row per (trial, criterion): the stop epoch, whether it fired, the arch there.

    metric_of(trial): the metric a plain `oracle` (no explicit metric) uses for that trial.
    """
    rows = []
    for t in trials:
        traj = crit.from_trial(t, per_epoch_metrics(t) if per_epoch_metrics else None)
        for c in specs:
            if c.name == "oracle" and "metric=" not in c.label and metric_of and metric_of(t):
                c = crit.CriterionSpec(c.name, {**c.params, "metric": metric_of(t)}, c.label)
            try:
                r = c.apply(traj)
            except crit.CriterionError as e:
                raise crit.CriterionError(f"trial {t.run_id}: {e}") from e
            rows.append((t.run_id, c.name, c.params_json, c.label, bool(r.fired), int(r.epoch), r.arch, r.note,
                         t.run_id in in_progress))  # fmt: skip
    df = pd.DataFrame(rows, columns=SELECTION_COLUMNS)
    df["stop_epoch"] = df["stop_epoch"].astype("int32")
    return df


def run_evaluate(
    spec: JobSpec,
    log: Callable[[str], None] = print,
    retrain_map: Callable | None = None,
    track: bool = True,
) -> EvaluateResult:
    """The whole offline stage for a job; prints the summary table. Idempotent."""
    t0 = time.perf_counter()
    job_dir = spec.job_dir
    metric = main_metric(spec)
    specs = job_criteria(spec, metric)
    table = _load_benchmark(spec)
    trials, problems = store.read_job(job_dir)
    status = store.consolidate_trials(job_dir) if store.exists(f"{job_dir}/status") else None
    running = in_progress(status)
    if not trials:
        raise FileNotFoundError(
            f"{job_dir}: no readable trajectory (run `ray-nas sweep` or `ray-nas search` first)"
        )
    log(
        f"evaluate {spec.name}: {len(trials)} trials, {len(specs)} criteria, {time.perf_counter() - t0:.1f}s to read"
    )
    for rid, why in sorted(problems.items()):
        log(
            f"  skipped trial {rid}: {why} (`ray-nas sweep {spec.source} --redo {rid}` runs it again)"
        )

    sel = selections(trials, specs, table, running, lambda t: trial_metric(spec, t.config))
    uncovered = table is None or metric is None or metric not in sel
    if uncovered and spec.evaluate.retrain is not None:
        from ray_nas.offline.retrain import retrain_selected

        configs = {t.run_id: t.config for t in trials}
        sel = retrain_selected(spec, sel, configs, retrain_map=retrain_map, log=log)
        metric = "retrain_acc"
    elif metric not in sel:
        metric = None
    store.write_frame(sel, f"{job_dir}/selections.parquet")
    summary = summarize(spec, trials, sel, specs, metric)
    log(format_summary(summary, _shown_metric(spec, trials, metric)))
    for line in diverged_lines(status):
        log(line)
    log(f"selections: {job_dir}/selections.parquet ({len(sel)} rows); "
        f"{len(problems)} trials skipped; {time.perf_counter() - t0:.1f}s")  # fmt: skip
    result = EvaluateResult(sel, summary, trials, problems, metric or "")
    if track:
        from ray_nas.tracking import log_job

        log_job(spec, result, log=log)
    return result


def diverged_lines(status: pd.DataFrame | None) -> list[str]:
    """Summary lines naming the trials that diverged (status `diverged`): where and why."""
    if status is None or not len(status) or "diverged_epoch" not in status:
        return []
    rows = status[status["status"] == "diverged"]
    if rows.empty:
        return []
    lines = [f"diverged: {len(rows)} trials (criteria used their epochs before the divergence)"]
    for _, r in rows.iterrows():
        lines.append(f"  {r['run_id']}: {r['stop_reason']}; kept epochs 0..{int(r['epochs_done'])}")
    return lines


def _load_benchmark(spec: JobSpec) -> pd.DataFrame | None:
    """The job's benchmark table (evaluate.benchmark), or None."""
    if not spec.evaluate.benchmark:
        return None
    from ray_nas.config import benchmark_key_column
    from ray_nas.tables import load_table

    return load_table(spec.evaluate.benchmark, benchmark_key_column(spec))


def in_progress(status: pd.DataFrame | None) -> set[str]:
    """run_ids whose status is running or failed (their selections are marked `in_progress`)."""
    if status is None or not len(status):
        return set()
    return set(status.loc[status.status.isin(["running", "failed"]), "run_id"])


def selections(
    trials: list[store.TrialData],
    specs: list[crit.CriterionSpec],
    table: pd.DataFrame | None,
    running: set[str] = frozenset(),
    metric_of: Callable[[store.TrialData], str | None] | None = None,
) -> pd.DataFrame:
    """The rows of `selections.parquet` before retraining (`ray-nas evaluate` and `ray_nas.api`).

    metric_of(trial): the metric a plain `oracle` uses for that trial (see select)."""
    return select_and_score(trials, specs, table, running, metric_of)[0]


def benchmark_scores(trials: list[store.TrialData], table: pd.DataFrame):
    """(scores, per_epoch) of every genotype the trials recorded, looked up through each trial's
    space: its `benchmark_key(arch)` in the table's `benchmark_key_column` (NAS-Bench-201: the
    arch string in ``arch``; NAS-Bench-1Shot1: the cell's NAS-Bench-101 hash in ``hash``).

    scores: one row per distinct (space, arch), columns ``space``, ``arch``, then the table's
    ``index``, metrics and costs (`benchmark.lookup`); per_epoch(trial) -> {metric: [T+1] score
    of each epoch's arch, NaN where unknown}. ValueError (one line) for a trial whose space has
    no tabular benchmark."""
    from ray_nas.spaces import get_space
    from ray_nas.tables import METRICS, lookup

    archs: dict[str, dict[str, None]] = {}  # space -> its distinct archs, first-seen order
    for t in trials:
        archs.setdefault(t.space, {}).update(dict.fromkeys(t.epochs["arch"]))
    frames = []
    for name, texts in archs.items():
        space = get_space(name)
        if not space.benchmark_key_column:
            raise ValueError(
                f"search space {name!r} has no tabular benchmark to look its genotypes up in"
            )
        keys = [space.benchmark_key(a) for a in texts]
        found = lookup(table, keys, key=space.benchmark_key_column)
        found = found.drop(columns=space.benchmark_key_column)
        frames.append(
            pd.concat([pd.DataFrame({"space": name, "arch": list(texts)}), found], axis=1)
        )
    scores = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    present = [m for m in METRICS if m in scores]
    by_arch = {
        (name, m): dict(zip(part["arch"], part[m].to_numpy(dtype=np.float64)))
        for name, part in scores.groupby("space", sort=False)
        for m in present
    }

    def per_epoch(t: store.TrialData) -> dict[str, np.ndarray]:
        return {m: np.array([by_arch[t.space, m].get(a, np.nan) for a in t.epochs["arch"]])
                for m in present}  # fmt: skip

    return scores, per_epoch


#: benchmark columns renamed in selections (`params` there is the criterion's parameters)
_SELECTION_NAMES = {"params": "params_m"}


def select_and_score(
    trials: list[store.TrialData],
    specs: list[crit.CriterionSpec],
    table: pd.DataFrame | None,
    in_progress: set[str] = frozenset(),
    metric_of: Callable[[store.TrialData], str | None] | None = None,
):
    """select() with the benchmark's scores: one join over every epoch's arch of every trial.

    Returns (selections with one column per table metric/cost and `bench_index`, per_epoch) where
    per_epoch(trial) -> {metric: [T+1] score of each epoch's arch} (None without a table). The
    table's `params` (millions) is named `params_m` there, as retraining's.
    """
    if table is None:
        return select(trials, specs, None, in_progress, metric_of), None
    scores, per_epoch = benchmark_scores(trials, table)
    sel = select(trials, specs, per_epoch, in_progress, metric_of)
    space = {t.run_id: t.space for t in trials}
    left = pd.DataFrame({"space": sel["run_id"].map(space), "arch": sel["arch"]})
    picked = left.merge(scores, on=["space", "arch"], how="left", sort=False)
    for col in picked.columns.drop(["space", "arch"]):
        if col != "index":
            sel[_SELECTION_NAMES.get(col, col)] = picked[col].to_numpy(dtype=np.float64)
    if "index" in picked:
        sel["bench_index"] = picked["index"].to_numpy(dtype="float64", na_value=np.nan)
    return sel, per_epoch


def grid_group_keys(spec: JobSpec) -> list[str]:
    """The grid keys that define a group (every grid key except `seed`)."""
    return [k for k in spec.grid if k != "seed"]


def group_label(config: dict, keys: list[str], spec: JobSpec | None = None) -> str:
    """`key=value ...` over the group keys; a bundle axis shows the matching bundle's label."""
    if not keys:
        return "all"
    if spec is not None:
        return " ".join(f"{k}={grid_value(spec, k, config)[1]}" for k in keys)
    flat = flatten(config)
    return " ".join(f"{k}={_short(flat.get(k))}" for k in keys)


def _short(v) -> str:
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)


def summarize(spec, trials, sel: pd.DataFrame, specs, metric: str | None) -> pd.DataFrame:
    """Rows (group, criterion label): n, score mean and population std (ddof=0) over the group's
    trials, mean stop epoch, fire count. The score of a row is `metric`'s column when it is
    retrain_acc, else the column of the trial's own metric (trial_metric: its data set's)."""
    keys = grid_group_keys(spec)
    groups = {t.run_id: group_label(t.config, keys, spec) for t in trials}
    df = sel.assign(group=sel["run_id"].map(groups))
    own = {t.run_id: trial_metric(spec, t.config) for t in trials}
    value = pd.Series(np.nan, index=df.index)
    if metric == "retrain_acc" and metric in df:
        value = df[metric]
    elif metric:
        for col in {c for c in own.values() if c in df}:
            rows = df["run_id"].map(own) == col
            value[rows] = df.loc[rows, col]
    df = df.assign(value=pd.to_numeric(value, errors="coerce"))
    order = {c.label: i for i, c in enumerate(specs)}
    out = (
        df.groupby(["group", "label"], sort=False)
        .agg(
            n=("run_id", "size"),
            mean=("value", "mean"),
            std=("value", lambda s: s.std(ddof=0)),
            stop_epoch=("stop_epoch", "mean"),
            fired=("fired", "sum"),
        )  # fmt: skip
        .reset_index()
    )
    out["order"] = out["label"].map(order)
    return (
        out.sort_values(["group", "order"], kind="stable")
        .drop(columns="order")
        .reset_index(drop=True)
    )


def _shown_metric(spec: JobSpec, trials, metric: str | None) -> str | None:
    """The summary's metric name; the per-trial ones where the trials' data sets differ."""
    own = sorted({m for m in (trial_metric(spec, t.config) for t in trials) if m})
    if metric and metric != "retrain_acc" and len(own) > 1:
        return f"{'/'.join(own)} (each trial's own data set)"
    return metric


def format_summary(summary: pd.DataFrame, metric: str | None) -> str:
    """Text table: one row per grid group, one column per criterion; each cell
    `mean±std @stop_epoch fired/n` over the group's trials, std the population one (ddof=0)."""
    if summary.empty:
        return "(no selections)"
    labels = list(dict.fromkeys(summary["label"]))
    cells = {}
    for _, r in summary.iterrows():
        score = "n/a" if math.isnan(r["mean"]) else f"{r['mean']:.2f}±{r['std']:.2f}"
        cells[(r["group"], r["label"])] = (
            f"{score} @{r['stop_epoch']:.1f} {int(r['fired'])}/{int(r['n'])}"
        )
    groups = list(dict.fromkeys(summary["group"]))
    header = ["group", *labels]
    rows = [[g, *(cells.get((g, lab), "") for lab in labels)] for g in groups]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    title = (
        f"{metric or 'no metric'}: mean±std (population std, ddof=0) over seeds "
        "@mean stop epoch, fired/trials"
    )
    return "\n".join(
        [title, line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    )


def export_genotypes(spec: JobSpec, output: str | None = None) -> tuple[str, int]:
    """Write the job's selected DARTS-space genotypes as a Python file in DARTS's own format
    (`Genotype = namedtuple(...)` then one `NAME = Genotype(...)` per distinct (run, criterion)
    selection, NAME = criterion label and run_id as an identifier). Returns (path, count).

    FileNotFoundError / ValueError (one line) when the job has no selections or no DARTS run."""
    path = f"{spec.job_dir}/selections.parquet"
    if not store.exists(path):
        raise FileNotFoundError(f"{path}: no selections yet (run `ray-nas evaluate` first)")
    sel = store.read_frame(path)
    from ray_nas.spaces import get_space

    trials = store.read_job(spec.job_dir)[0]
    darts_runs = {t.run_id for t in trials if get_space(t.space).export_format == "darts"}
    sel = sel[sel["run_id"].isin(darts_runs)]
    if not len(sel):
        raise ValueError(
            f"export: job {spec.name!r} has no DARTS-space selections (search.space: darts)"
        )
    lines = [
        f"# Selected genotypes of job {spec.name!r} (ray-nas export); DARTS cnn/genotypes.py format",
        "from collections import namedtuple",
        "",
        "Genotype = namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')",
        "",
    ]
    for r in sel.sort_values(["label", "run_id"]).itertuples():
        name = re.sub(r"\W+", "_", f"{r.label}_{r.run_id}").strip("_")
        lines.append(f"{name} = {r.arch}  # stop epoch {r.stop_epoch}, fired {bool(r.fired)}")
    out = output or f"{spec.job_dir}/genotypes.py"
    store.write_bytes(out, ("\n".join(lines) + "\n").encode())  # local path or s3://
    return out, len(sel)
