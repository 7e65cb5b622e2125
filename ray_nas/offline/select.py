"""The criteria applied to stored trajectories and scored: which epoch and arch each criterion
selects per trial, the benchmark's scores of those archs, and the keys that group trials.

Pure functions over `store.TrialData` and a benchmark table; `offline.results.JobResults` calls
them once per job, and every reader of a job (evaluate, report, compare, the notebook API) gets
its frames from there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from ray_nas import criteria as crit
from ray_nas import store
from ray_nas.config import (
    JobSpec,
    benchmark_key_column,
    expand_grid,
    flatten,
    grid_value,
    resolve_search,
)
from ray_nas.spaces import get_space
from ray_nas.tables import METRICS, default_metric, load_table, lookup

#: the columns of `selections.parquet` before any score
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

#: benchmark columns renamed in selections (`params` there is the criterion's parameters)
_SELECTION_NAMES = {"params": "params_m"}

#: per_epoch(trial) -> {metric: [T+1] benchmark score of each epoch's arch}
PerEpoch = Callable[[store.TrialData], dict[str, np.ndarray]]

# ------------------------------------------------------------------------------------------
# which criteria, which metric


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
    return default_metric(config.get("dataset", ""))


def load_benchmark(spec: JobSpec) -> pd.DataFrame | None:
    """The job's benchmark table (evaluate.benchmark), or None."""
    if not spec.evaluate.benchmark:
        return None
    return load_table(spec.evaluate.benchmark, benchmark_key_column(spec))


def in_progress(status: pd.DataFrame | None) -> set[str]:
    """run_ids whose status is running or failed (their selections are marked `in_progress`)."""
    if status is None or not len(status):
        return set()
    return set(status.loc[status.status.isin(["running", "failed"]), "run_id"])


# ------------------------------------------------------------------------------------------
# groups


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


def grid_rank(spec: JobSpec, config: dict) -> tuple:
    """A trial's position in the job's grid (keys and values in the order written)."""
    return tuple(grid_value(spec, key, config)[0] for key in spec.grid)


# ------------------------------------------------------------------------------------------
# applying the criteria


def select(
    trials: list[store.TrialData],
    specs: list[crit.CriterionSpec],
    per_epoch_metrics: PerEpoch | None = None,
    in_progress: set[str] = frozenset(),
    metric_of: Callable[[store.TrialData], str | None] | None = None,
) -> pd.DataFrame:
    """One row per (trial, criterion): the stop epoch, whether it fired, the arch there.

    metric_of(trial): the metric a plain `oracle` (no explicit metric) uses for that trial.
    The criteria run over all trials at once (criteria.apply_many); `select_per_trial` is the
    same, one trial at a time (the reference the tests compare it with).
    """
    specs = [c for c in specs if not c.info.stage]  # darts_pt: rows from its stage (offline.pt)
    metrics_of = getattr(per_epoch_metrics, "of", None)
    if not trials or (per_epoch_metrics is not None and metrics_of is None):  # a plain function
        return select_per_trial(trials, specs, per_epoch_metrics, in_progress, metric_of)
    by_metric: dict[str | None, list[int]] = {}
    for i, t in enumerate(trials):
        by_metric.setdefault(metric_of(t) if metric_of else None, []).append(i)
    n, c = len(trials), len(specs)
    epoch = np.zeros((n, c), dtype=np.int64)
    fired = np.zeros((n, c), dtype=bool)
    arch = np.empty((n, c), dtype=object)
    note = np.empty((n, c), dtype=object)
    row_params = np.empty((n, c), dtype=object)  # a plain oracle's differ by the trial's metric
    for metric, rows in by_metric.items():
        specs_m = with_oracle_metric(specs, metric)
        got = crit.apply_many(specs_m, [trials[i] for i in rows], metrics_of)
        epoch[rows], fired[rows], arch[rows], note[rows] = got.epoch, got.fired, got.arch, got.note
        row_params[rows] = [s.params_json for s in specs_m]
    labels = [s.label for s in specs]
    names = [s.name for s in specs]
    run_ids = np.array([t.run_id for t in trials], dtype=object)
    return pd.DataFrame(
        {
            "run_id": np.repeat(run_ids, c),
            "criterion": np.tile(np.array(names, dtype=object), n),
            "params": row_params.ravel(),
            "label": np.tile(np.array(labels, dtype=object), n),
            "fired": fired.ravel(),
            "stop_epoch": epoch.ravel().astype("int32"),
            "arch": arch.ravel(),
            "note": note.ravel(),
            "in_progress": np.repeat(np.array([r in in_progress for r in run_ids], dtype=bool), c),
        },
        columns=SELECTION_COLUMNS,
    )


def select_per_trial(
    trials: list[store.TrialData],
    specs: list[crit.CriterionSpec],
    per_epoch_metrics: PerEpoch | None = None,
    in_progress: set[str] = frozenset(),
    metric_of: Callable[[store.TrialData], str | None] | None = None,
) -> pd.DataFrame:
    """`select`, one trial and criterion at a time through `CriterionSpec.apply` (the reference
    that `select`'s stacked criteria are tested against)."""
    specs = [c for c in specs if not c.info.stage]  # darts_pt: rows from its stage (offline.pt)
    rows = []
    # the specs with a plain oracle set to each metric, and their params text, made once
    by_metric: dict[str | None, list[tuple[crit.CriterionSpec, str]]] = {}
    for t in trials:
        traj = crit.from_trial(t, per_epoch_metrics(t) if per_epoch_metrics else None)
        metric = metric_of(t) if metric_of else None
        if metric not in by_metric:
            by_metric[metric] = [(c, c.params_json) for c in with_oracle_metric(specs, metric)]
        for c, params in by_metric[metric]:
            try:
                r = c.apply(traj)
            except crit.CriterionError as e:
                raise crit.CriterionError(f"trial {t.run_id}: {e}") from e
            rows.append((t.run_id, c.name, params, c.label, bool(r.fired), int(r.epoch), r.arch, r.note,
                         t.run_id in in_progress))  # fmt: skip
    df = pd.DataFrame(rows, columns=SELECTION_COLUMNS)
    df["stop_epoch"] = df["stop_epoch"].astype("int32")
    return df


# ------------------------------------------------------------------------------------------
# benchmark scores


def benchmark_scores(
    trials: list[store.TrialData], table: pd.DataFrame, extra: Mapping[str, list] | None = None
):
    """(scores, per_epoch) of every genotype the trials recorded, looked up once per distinct
    (space, arch) through each trial's space: its `benchmark_key(arch)` in the table's
    `benchmark_key_column` (NAS-Bench-201: the arch string in ``arch``; NAS-Bench-1Shot1: the
    cell's NAS-Bench-101 hash in ``hash``).

    scores: one row per distinct (space, arch), columns ``space``, ``arch``, then the table's
    ``index``, metrics and costs (`benchmark.lookup`); per_epoch(trial) -> {metric: [T+1] score
    of each epoch's arch, NaN where unknown}. ValueError (one line) for a trial whose space has
    no tabular benchmark. extra: space -> further genotypes to look up (darts_pt's projections).
    """
    archs: dict[str, dict[str, None]] = {}  # space -> its distinct archs, first-seen order
    for t in trials:
        archs.setdefault(t.space, {}).update(dict.fromkeys(t.epochs["arch"]))
    for name, texts in (extra or {}).items():
        archs.setdefault(name, {}).update(dict.fromkeys(texts))
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
    # each metric as one array over the rows of `scores`, then a NaN for an arch not looked up
    values = {m: np.append(scores[m].to_numpy(dtype=np.float64), np.nan) for m in present}
    row = {key: i for i, key in enumerate(zip(scores["space"], scores["arch"]))}

    return scores, EpochScores(row, values)


class EpochScores:
    """per_epoch(trial) -> {metric: [T+1] score of each epoch's arch, NaN where unknown}; and
    .of(space, archs) -> {metric: [len(archs)] score of each arch text} (criteria.MetricsOf)."""

    def __init__(self, row: dict[tuple[str, str], int], values: dict[str, np.ndarray]):
        self.row, self.values = row, values

    def of(self, space: str, archs) -> dict[str, np.ndarray]:
        row = self.row
        at = np.fromiter((row.get((space, a), -1) for a in archs), np.intp, len(archs))
        return {m: v[at] for m, v in self.values.items()}

    def __call__(self, t: store.TrialData) -> dict[str, np.ndarray]:
        return self.of(t.space, t.epochs["arch"])


def add_scores(
    sel: pd.DataFrame, space_of: Mapping[str, str], scores: pd.DataFrame
) -> pd.DataFrame:
    """`sel` with the benchmark's scores of each selected arch (`scores` from benchmark_scores;
    space_of: run_id -> space): one column per table metric/cost, the table's `params`
    (millions) named `params_m` as retraining's, and its row `bench_index`."""
    left = pd.DataFrame({"space": sel["run_id"].map(space_of), "arch": sel["arch"]})
    picked = left.merge(scores, on=["space", "arch"], how="left", sort=False)
    for col in picked.columns.drop(["space", "arch"]):
        if col != "index":
            sel[_SELECTION_NAMES.get(col, col)] = picked[col].to_numpy(dtype=np.float64)
    if "index" in picked:
        sel["bench_index"] = picked["index"].to_numpy(dtype="float64", na_value=np.nan)
    return sel


def select_and_score(
    trials: list[store.TrialData],
    specs: list[crit.CriterionSpec],
    table: pd.DataFrame | None,
    in_progress: set[str] = frozenset(),
    metric_of: Callable[[store.TrialData], str | None] | None = None,
):
    """select() with the benchmark's scores: one join over every epoch's arch of every trial.

    Returns (selections with one column per table metric/cost and `bench_index`, per_epoch) where
    per_epoch(trial) -> {metric: [T+1] score of each epoch's arch} (None without a table or
    trials). The table's `params` (millions) is named `params_m` there, as retraining's.
    """
    if table is None or not trials:
        return select(trials, specs, None, in_progress, metric_of), None
    scores, per_epoch = benchmark_scores(trials, table)
    sel = select(trials, specs, per_epoch, in_progress, metric_of)
    return add_scores(sel, {t.run_id: t.space for t in trials}, scores), per_epoch


# ------------------------------------------------------------------------------------------
# stored scores (retraining's) and the score of each row


def stored_scores(sel: pd.DataFrame, old: pd.DataFrame | None, notes: list[str]) -> pd.DataFrame:
    """`sel` with the score columns of `old` (a job's `selections.parquet`, e.g. retrain_acc)
    that `sel` lacks, on rows whose (run_id, label, arch) still match: a stale row never lends
    its score. Appends a note to `notes` when some rows find none."""
    if old is None or not len(sel):
        return sel
    skip = {*SELECTION_COLUMNS, "bench_index", *sel.columns}
    cols = [c for c in old.columns if c not in skip and pd.api.types.is_numeric_dtype(old[c])]
    if not cols or not {"run_id", "label", "arch"} <= set(old.columns):
        return sel
    old = old.drop_duplicates(["run_id", "label"], keep="last")[["run_id", "label", "arch", *cols]]
    out = sel.merge(old, on=["run_id", "label", "arch"], how="left")
    missing = int(out[cols[0]].isna().sum())
    if missing:
        notes.append(f"{missing} of {len(out)} selections have no {cols[0]} in selections.parquet "
                     "(criteria not evaluated yet, or trajectories newer than the last evaluation): "
                     "run `ray-nas evaluate` with the same criteria to complete them (the other "
                     "criteria's rows are kept)")  # fmt: skip
    return out


def score_column(sel: pd.DataFrame, metric: str | None) -> str | None:
    """The column that scores `sel`: the benchmark `metric` where the table gave any score, else
    the retrained accuracy `retrain_acc` where there is any, else None."""
    for col in (metric, "retrain_acc"):
        if col and col in sel and sel[col].notna().any():
            return col
    return None


def row_scores(sel: pd.DataFrame, column: str | None, own: Mapping[str, str | None]) -> pd.Series:
    """The score (%) of each row of `sel` [len(sel)], NaN where none: column `column`, except that
    a benchmark metric (a table's, e.g. cifar10_test) reads each row's own trial's metric (own:
    run_id -> trial_metric), so a `dataset` grid scores each trial on its own data set."""
    value = pd.Series(np.nan, index=sel.index, dtype=np.float64)
    if column is None or column not in sel:
        return value
    if column not in METRICS:
        return pd.to_numeric(sel[column], errors="coerce").astype(np.float64)
    mine = sel["run_id"].map(own)
    for col in {c for c in own.values() if c and c in sel}:
        rows = mine == col
        value[rows] = pd.to_numeric(sel.loc[rows, col], errors="coerce")
    return value
