"""The grid: its points (the Cartesian product of `grid:`'s axes), each resolved into a trial's
SearchConfig and run_id (`expand_grid`), the bundle axes whose values set several search keys at
once (the rows of a methods table), and how points and values are shown (`point_text`) or found
again in a stored trial's config (`grid_value`).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from ray_nas.config.identity import run_id
from ray_nas.config.loader import flatten, set_dotted
from ray_nas.config.resolve import resolve_search
from ray_nas.config.schema import SEARCH_KEYS, JobSpec, SearchConfig, to_dict
from ray_nas.errors import SpecError


def grid_points(spec: JobSpec) -> list[dict[str, Any]]:
    """The Cartesian product of the grid in a stable order (keys as written, last key fastest)."""
    keys = list(spec.grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spec.grid[k] for k in keys))]


def expand_grid(spec: JobSpec) -> list[tuple[SearchConfig, str, dict[str, Any]]]:
    """[(resolved SearchConfig, run_id, grid point)] for every grid point, in stable order.

    A bundle axis's value sets all its search keys at once; the run_id depends only on the
    resolved config (not on the axis's name, its labels or the rows' order)."""
    out = []
    for point in grid_points(spec) or [{}]:
        raw = copy.deepcopy(spec.search)
        for key, value in point.items():
            for k, v in _point_keys(key, value).items():
                set_dotted(raw, k, v)
        where = "search" if not point else "grid point " + point_text(point)
        cfg = resolve_search(raw, where)
        out.append((cfg, run_id(cfg), point))
    ids: dict[str, dict] = {}
    for _cfg, rid, point in out:
        if rid in ids:
            raise SpecError(
                f"grid: points {point_text(ids[rid])} and {point_text(point)} resolve to the same "
                f"search config (the same run_id {rid}); drop or change one"
            )
        ids[rid] = point
    return out


# --------------------------------------------------------------------------------------------
# bundle axes: grid values that set several search keys at once (e.g. the rows of Table 2)

#: keys of a bundle that are not search keys: the row's name, and the criteria (labels or
#: items as in `criteria:`) that `ray-nas report` shows for that row in its methods table
BUNDLE_META = ("label", "criteria")


def is_bundle_axis(key: str, values: Any) -> bool:
    """A grid key that is not a search key and whose values are all mappings."""
    return (
        str(key).split(".")[0] not in SEARCH_KEYS
        and isinstance(values, list)
        and bool(values)
        and all(isinstance(v, dict) for v in values)
    )


def bundle_keys(bundle: dict) -> dict[str, Any]:
    """The dotted search keys a bundle sets ({'weights': {'lr': 1}} -> {'weights.lr': 1})."""
    return flatten({k: v for k, v in bundle.items() if k not in BUNDLE_META})


def bundle_label(bundle: dict) -> str:
    return str(bundle.get("label") or ",".join(f"{k}={v}" for k, v in bundle_keys(bundle).items()))


def _point_keys(key: str, value: Any) -> dict[str, Any]:
    return bundle_keys(value) if isinstance(value, dict) else {key: value}


def value_text(value: Any) -> str:
    """A grid value as text: a bundle by its label."""
    return bundle_label(value) if isinstance(value, dict) else str(value)


def point_text(point: dict[str, Any]) -> str:
    return ",".join(f"{k}={value_text(v)}" for k, v in point.items())


def grid_value(spec: JobSpec, key: str, config: dict) -> tuple[int, str]:
    """(index in grid[key], display text) of a stored trial's resolved `config` on one axis;
    index len(values) when no value matches. A bundle matches when every key that any bundle
    of the axis sets has, in the config, the value that bundle resolves it to."""
    values = spec.grid[key]
    flat = flatten(config)
    if not is_bundle_axis(key, values):
        v = flat.get(key)
        v = list(v) if isinstance(v, tuple) else v
        return (values.index(v) if v in values else len(values)), _short(v)
    union = sorted({k for b in values for k in bundle_keys(b)})
    for i, bundle in enumerate(values):
        raw = copy.deepcopy(spec.search)
        for k, v in bundle_keys(bundle).items():
            set_dotted(raw, k, v)
        resolved = flatten(to_dict(resolve_search(raw)))
        if all(flat.get(k) == resolved.get(k) for k in union):
            return i, bundle_label(bundle)
    return len(values), "?"


def _short(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)
