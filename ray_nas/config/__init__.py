"""The job spec: YAML -> frozen dataclasses, `--set` overrides, grid expansion and stable run ids.

A job file holds the search defaults every trial starts from (`search:`), a `grid:` of dotted
`search` keys whose Cartesian product gives the trials, the offline `criteria`, and where things
go (`store`, `tracking_uri`). Resolution order for one trial's search config:
dataclass defaults < the `lr_scheme` preset < the job's explicit `search` keys < the grid point.
Everything is validated here, before any work: a bad key or value raises SpecError with one line
that names the key and what would be valid.

Modules, lowest first (each imports only those before it): loader.py (YAML, `--set`, nested
mappings), schema.py (the dataclasses, their vocabularies and coercion), presets.py (LR_PRESETS),
identity.py (run_id and the rule that keeps old run_ids), resolve.py (one search config, resolved
and validated), grid.py (grid points, bundles, expand_grid), validate.py (the whole job); this
file loads a job and re-exports the public names.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any

from ray_nas.config.grid import (  # noqa: F401
    BUNDLE_META,
    bundle_keys,
    bundle_label,
    expand_grid,
    grid_axis_of,
    grid_points,
    grid_value,
    is_bundle_axis,
    point_text,
    select_trial,
    value_text,
)
from ray_nas.config.identity import (  # noqa: F401
    ADDED_FIELDS,
    LEGACY_FIELDS,
    NON_IDENTITY_FIELDS,
    config_json,
    run_id,
)
from ray_nas.config.loader import (  # noqa: F401
    JobLoader,
    deep_merge,
    flatten,
    load_raw,
    parse_set,
    set_dotted,
    yaml_error_line,
    yaml_load,
)
from ray_nas.config.presets import (  # noqa: F401
    LR_PRESETS,
)
from ray_nas.config.resolve import (  # noqa: F401
    resolve_search,
    validate_search,
)
from ray_nas.config.schema import (  # noqa: F401
    COMPILE_MODES,
    DATASETS,
    DEVICES,
    IMAGE_SIZES,
    IMPLS,
    PRECISIONS,
    SCHEDULES,
    SEARCH_KEYS,
    WARMUP_RULES,
    AlphaOptim,
    Estimate,
    EvaluateConfig,
    JobSpec,
    Resources,
    RetrainConfig,
    SearchConfig,
    WeightsOptim,
    build,
    to_dict,
)
from ray_nas.config.validate import (  # noqa: F401
    TRACKING_SCHEMES,
    benchmark_key_column,
    validate_job,
)
from ray_nas.errors import SpecError  # noqa: F401


def load_spec(path: str | Path, overrides: typing.Iterable[str] = ()) -> JobSpec:
    """Load, override (`--set key=value`, dotted) and validate a job. Raises SpecError."""
    raw = load_raw(path)
    for key, value in parse_set(overrides):
        set_dotted(raw, key, value)
    return spec_from_dict(raw, source=str(path))


def spec_from_dict(raw: dict, source: str = "<dict>") -> JobSpec:
    """A job from a plain mapping (as a job file holds it), validated; SpecError messages start
    with `source`."""
    raw = copy.deepcopy(raw)
    raw.pop("source", None)
    if "criteria" in raw and raw["criteria"] is not None:
        if not isinstance(raw["criteria"], list):
            raise SpecError("criteria: expected a list of names or {name: ..., params}")
        raw["criteria"] = tuple(raw["criteria"])
    elif "criteria" in raw:
        raw["criteria"] = ()
    if raw.get("grid") is None:
        raw["grid"] = {}
    if raw.get("search") is None:
        raw["search"] = {}
    try:
        spec = build(JobSpec, raw)
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None
    spec = dataclasses.replace(spec, source=source)
    try:
        validate_job(spec)
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None
    return spec


def search_config(spec: JobSpec, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """The job's `search` defaults plus dotted search-key overrides (no grid): `ray-nas search`."""
    raw = copy.deepcopy(spec.search)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return resolve_search(raw)


def resolved_job_dict(spec: JobSpec) -> dict:
    """The spec as plain data (for job.yaml and MLflow), the search defaults resolved."""
    d = to_dict(spec)
    d.pop("source", None)
    d["search"] = to_dict(resolve_search(spec.search))
    return d
