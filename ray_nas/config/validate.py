"""The job, validated as a whole before any work: its own keys (name, store, tracking_uri,
resources), the grid's axes, every grid point (each resolved as its trial will be), the
evaluation (benchmark table and metric, retraining recipe), the criteria and the online stop.
Every problem raises SpecError with one line naming the key and what would be valid.
"""

from __future__ import annotations

import json
import re
import typing

from ray_nas import criteria, spaces
from ray_nas.config.grid import BUNDLE_META, bundle_keys, bundle_label, expand_grid, is_bundle_axis
from ray_nas.config.resolve import check_positive, resolve_search
from ray_nas.config.schema import IMAGE_SIZES, SEARCH_KEYS, JobSpec, RetrainConfig, SearchConfig
from ray_nas.errors import SpecError, did_you_mean

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def validate_job(spec: JobSpec) -> None:
    """SpecError (one line) for the first problem of `spec`, checked in this order: the job's own
    keys, the grid's axes, the search defaults and every grid point, the evaluation, the criteria
    and the online stop."""
    _check_job_keys(spec)
    for key, values in spec.grid.items():
        _check_axis(key, values)
    resolve_search(spec.search)  # the defaults alone must be valid
    trials = expand_grid(spec)  # and so must every grid point (each its own run_id)
    _check_evaluate(spec, trials)
    _check_criteria(spec)
    _check_criteria_ops(spec, trials)


def _check_job_keys(spec: JobSpec) -> None:
    if not _NAME_RE.match(spec.name):
        raise SpecError(
            f"name: {spec.name!r} must be letters, digits, '_', '-', '.' (it names a folder)"
        )
    if not spec.store:
        raise SpecError("store: must be a path or s3:// URI")
    _validate_tracking_uri(spec.tracking_uri)
    check_positive(spec.resources.cpu, "resources.cpu", allow_zero=True)
    check_positive(spec.resources.gpu, "resources.gpu", allow_zero=True)
    check_positive(spec.max_failures, "max_failures", allow_zero=True)


def _check_axis(key: str, values: typing.Any) -> None:
    """grid.<key>: a non-empty list of distinct values of a dotted search key, or of bundles."""
    if not isinstance(values, list) or not values:
        raise SpecError(f"grid.{key}: expected a non-empty list of values, got {values!r}")
    if is_bundle_axis(key, values):
        _validate_bundles(key, values)
        return
    top = str(key).split(".")[0]
    if top not in SEARCH_KEYS:
        raise SpecError(
            f"grid.{key}: not a search key{did_you_mean(top, SEARCH_KEYS)} (grid keys are dotted "
            "keys of `search`, or a named axis whose values are mappings of search keys)"
        )
    _no_repeats([json.dumps(v, sort_keys=True, default=str) for v in values], f"grid.{key}")


def _check_evaluate(spec: JobSpec, trials: list[tuple[SearchConfig, str, dict]]) -> None:
    """evaluate.*: the benchmark table can score every trial, the retraining can run."""
    if spec.evaluate.benchmark:
        key = _benchmark_key_of(cfg.space for cfg, _rid, _point in trials)
        _check_table_metrics(spec, key, {cfg.dataset for cfg, _rid, _point in trials})
    if spec.evaluate.retrain is not None:
        r = spec.evaluate.retrain
        for key in ("epochs", "channels", "cells", "batch_size", "steps_per_epoch"):
            check_positive(getattr(r, key), f"evaluate.retrain.{key}")
        check_positive(r.lr, "evaluate.retrain.lr")
        _check_recipe(r, trials)
    _validate_metric(spec.evaluate.metric)


def _check_criteria(spec: JobSpec) -> None:
    """criteria: each parses and appears once; bundles name computed ones; `stop` can stop."""
    labels = []
    for i, item in enumerate(spec.criteria):
        try:
            labels.append(criteria.parse_criterion(item).label)
        except ValueError as e:
            raise SpecError(f"criteria[{i}]: {e}") from None
    _no_repeats(labels, "criteria")
    _validate_bundle_criteria(spec)
    if spec.stop is None:
        return
    try:
        stop = criteria.parse_criterion(spec.stop)
    except ValueError as e:
        raise SpecError(f"stop: {e}") from None
    if stop.info.stage:
        raise SpecError(
            f"stop: {stop.name!r} cannot stop a search early (it selects from the final supernet, "
            "a stage of `ray-nas evaluate`; name it in criteria)"
        )
    if stop.name in ("final", "best_valid", "oracle"):
        raise SpecError(
            f"stop: {stop.name!r} cannot stop a search early (it looks at the whole run)"
        )
    if stop.info.builtin and stop.params.get("patience", 1) < 1:
        raise SpecError(
            f"stop: {stop.name} needs patience >= 1 online "
            "(with 0 the peak so far always 'fires' at epoch 1)"
        )


def _check_criteria_ops(spec: JobSpec, trials: list[tuple[SearchConfig, str, dict]]) -> None:
    """criteria: an `op` (or `cell`) that no search of the job has is refused (it could never
    fire: every trial would only note that the op is missing)."""
    ops = list(dict.fromkeys(o for cfg, _rid, _point in trials for o in cfg.ops))
    names = list(dict.fromkeys(cfg.space for cfg, _rid, _point in trials))
    cells = list(dict.fromkeys(c for n in names for c in spaces.get_space(n).cell_types))
    where = f"search space {'/'.join(names)}"
    for i, item in enumerate(spec.criteria):
        parsed = criteria.parse_criterion(item)
        if parsed.info.stage:
            _check_stage(spec, parsed.name, i, names)
        params = parsed.params
        op, cell = params.get("op"), params.get("cell")
        if isinstance(op, str) and op not in ops:
            raise SpecError(
                f"criteria[{i}]: op {op!r} is not an op of this job's searches ({where}; "
                f"valid: {', '.join(ops)})"
            )
        if isinstance(cell, str) and cell and cell not in cells:
            raise SpecError(
                f"criteria[{i}]: cell {cell!r} is not a cell type of this job's searches "
                f"({where}; valid: {', '.join(cells)})"
            )


def _check_stage(spec: JobSpec, name: str, i: int, spaces_: list[str]) -> None:
    """darts_pt: the job keeps its trials' final supernets, on a space it is defined on."""
    if not spec.keep_checkpoints:
        raise SpecError(
            f"criteria[{i}]: {name} projects each trial's final supernet, which keep_checkpoints: "
            "false deletes; set keep_checkpoints: true"
        )
    bad = [n for n in spaces_ if n not in criteria.PT_SPACES]
    if bad:
        raise SpecError(
            f"criteria[{i}]: {name} is defined on the {' and '.join(criteria.PT_SPACES)} spaces, not on "
            f"{bad[0]!r} (upstream's); leave it out of this job's criteria"
        )


def benchmark_key_column(spec: JobSpec) -> str:
    """The benchmark-table column that keys the job's genotypes (its spaces'
    `benchmark_key_column`: ``arch`` for nb201, ``hash`` for the NAS-Bench-1Shot1 spaces).
    SpecError (one line) when a space of the job has no tabular benchmark or two spaces need
    differently keyed tables."""
    return _benchmark_key_of(cfg.space for cfg, _rid, _point in expand_grid(spec))


def _benchmark_key_of(names: typing.Iterable[str]) -> str:
    units = [spaces.get_space(n) for n in dict.fromkeys(names)]
    for unit in units:
        if not unit.benchmark_key_column:
            raise SpecError(
                f"evaluate.benchmark: search space {unit.name!r} has no tabular benchmark "
                "(its selections are retrained, evaluate.retrain); set evaluate.benchmark: null"
            )
    keys = {u.name: u.benchmark_key_column for u in units}
    if len(set(keys.values())) > 1:
        raise SpecError(
            "evaluate.benchmark: one table cannot score these spaces, their tables are keyed "
            f"by different columns ({', '.join(f'{n}: {k}' for n, k in keys.items())}); "
            "run them as separate jobs"
        )
    return next(iter(keys.values()))


def _check_table_metrics(spec: JobSpec, key: str, datasets: set[str]) -> None:
    """The metric that scores each trial (evaluate.metric, else its data set's test accuracy)
    must be one a table keyed by `key` can hold (a NAS-Bench-101 table: CIFAR-10 only)."""
    from ray_nas.tables import TABLE_KINDS, default_metric  # pandas: imported on use

    kind = TABLE_KINDS[key]

    for dataset in sorted(datasets):
        metric = spec.evaluate.metric or default_metric(dataset)
        if metric and metric not in kind.metrics:
            why = (
                "evaluate.metric"
                if spec.evaluate.metric
                else f"the {dataset} searches' test accuracy"
            )
            raise SpecError(
                f"evaluate.metric: {metric} ({why}) is not in a {kind.benchmark} table, which "
                f"holds {', '.join(kind.metrics)}; set evaluate.metric to one of them"
            )


def _no_repeats(items: list[str], key: str) -> None:
    """SpecError naming the first item of `items` that repeats an earlier one."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item in seen:
            raise SpecError(f"{key}[{i}]: {item} repeats {key}[{seen[item]}]; list each value once")
        seen[item] = i


#: tracking_uri schemes MLflow serves (a plain path is a local file store)
TRACKING_SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql")


def _validate_tracking_uri(uri: str) -> None:
    """Malformed tracking URIs (unknown scheme, `sqlite://x` with a missing slash, no host)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        if not uri.strip():
            raise SpecError("tracking_uri: empty; e.g. sqlite:///mlflow.db or http://host:5000")
        return
    if scheme not in TRACKING_SCHEMES:
        raise SpecError(
            f"tracking_uri: unknown scheme {scheme!r} in {uri!r}{did_you_mean(scheme, TRACKING_SCHEMES)} "
            f"(valid: {', '.join(TRACKING_SCHEMES)})"
        )
    if scheme == "sqlite" and not rest.startswith("/"):
        raise SpecError(
            f"tracking_uri: {uri!r} needs three slashes and a file, e.g. sqlite:///mlflow.db"
        )
    if scheme in ("http", "https") and not rest.split("/")[0]:
        raise SpecError(f"tracking_uri: {uri!r} names no host, e.g. http://127.0.0.1:5000")


def _validate_metric(metric: str | None) -> None:
    """evaluate.metric must be a benchmark accuracy column (or null for the data set's test one)."""
    if metric is None:
        return
    from ray_nas.tables import METRICS  # pandas: imported on use

    if metric not in METRICS:
        raise SpecError(
            f"evaluate.metric: unknown metric {metric!r}{did_you_mean(metric, METRICS)} "
            f"(valid: {', '.join(METRICS)}, or null for the data set's test accuracy)"
        )


def _check_recipe(r: RetrainConfig, trials: list[tuple[SearchConfig, str, dict]]) -> None:
    """evaluate.retrain against the search space of every trial that can retrain: the recipe it
    names there (recipe, overrides) and the data sets it would train on (e.g. an auxiliary head
    on 16x16 images)."""
    recipes = {}
    for cfg in {(c.space, c.dataset): c for c, _rid, _p in trials}.values():
        space = spaces.get_space(cfg.space)
        if not space.recipes:
            continue
        try:
            if cfg.space not in recipes:
                recipes[cfg.space] = space.retrain_recipe(r)[1]
        except (ValueError, TypeError) as e:
            raise SpecError(f"evaluate.retrain: {e}") from None
        try:
            space.check_retrain(recipes[cfg.space], cfg.dataset, IMAGE_SIZES[cfg.dataset])
        except ValueError as e:  # its message starts with the key under evaluate.retrain
            raise SpecError(f"evaluate.retrain.{e}") from None
    if not r.seeds:
        raise SpecError("evaluate.retrain.seeds: expected at least one seed")
    check_positive(r.cpu, "evaluate.retrain.cpu")
    check_positive(r.gpu, "evaluate.retrain.gpu", allow_zero=True)


def _validate_bundle_criteria(spec: JobSpec) -> None:
    """A bundle's `criteria` (shown by the report) must be criteria the job computes."""
    if spec.criteria:
        job = [criteria.parse_criterion(c) for c in spec.criteria]
    else:  # the default set of every space the job searches
        names = spec.grid.get("space") or [spec.search.get("space", spaces.DEFAULT)]
        job = [c for name in dict.fromkeys(names) for c in criteria.default_criteria(name)]
    labels = {c.label for c in job}
    for key, values in spec.grid.items():
        if not is_bundle_axis(key, values):
            continue
        for i, bundle in enumerate(values):
            for j, item in enumerate(bundle.get("criteria") or []):
                where = f"grid.{key}[{i}].criteria[{j}]"
                try:
                    label = criteria.parse_criterion(item).label
                except ValueError as e:
                    raise SpecError(f"{where}: {e}") from None
                if label not in labels:
                    raise SpecError(
                        f"{where}: {label!r} is not in the job's criteria (add it to `criteria:`; "
                        f"computed: {', '.join(sorted(labels))})"
                    )


def _validate_bundles(key: str, bundles: list[dict]) -> None:
    for i, bundle in enumerate(bundles):
        where = f"grid.{key}[{i}]"
        for k in bundle_keys(bundle):
            top = k.split(".")[0]
            if top not in SEARCH_KEYS:
                raise SpecError(
                    f"{where}.{k}: not a search key{did_you_mean(top, SEARCH_KEYS)} (a bundle "
                    f"holds search keys, plus {' and '.join(BUNDLE_META)})"
                )
        crit = bundle.get("criteria")
        if crit is not None and not isinstance(crit, list):
            raise SpecError(f"{where}.criteria: expected a list of criteria, got {crit!r}")
    labels = [bundle_label(b) for b in bundles]
    if len(set(labels)) != len(labels):
        raise SpecError(f"grid.{key}: labels must differ, got {labels}")
