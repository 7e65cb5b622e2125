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


# --------------------------------------------------------------------------------------------
# one trial of the grid, picked on its own (`ray-nas search --trial/--trial-index/--set`)


def grid_axis_of(grid: dict, key: str) -> str | None:
    """The grid axis a `--set KEY=...` picks a value of, or None: `search.<axis>` for an axis of
    search-key values (`search.seed` for `grid: {seed: [...]}`), `<axis>` for a bundle axis."""
    if key.startswith("search.") and key[len("search.") :] in grid:
        axis = key[len("search.") :]
        return None if is_bundle_axis(axis, grid[axis]) else axis
    if key in grid and is_bundle_axis(key, grid[key]):
        return key
    return None


def _axis_text(key: str, values: list) -> str:
    return f"{key}: [{', '.join(value_text(v) for v in values)}]"


def _same_value(grid_value: Any, value: Any) -> bool:
    if isinstance(grid_value, dict):  # a bundle: by its label
        return bundle_label(grid_value) == str(value)
    if isinstance(value, tuple):
        value = list(value)
    return grid_value == value and isinstance(grid_value, bool) == isinstance(value, bool)


def select_trial(
    spec: JobSpec,
    trials: list[tuple[SearchConfig, str, dict[str, Any]]],
    run_id: str | None = None,
    index: int | None = None,
    values: dict[str, tuple[str, Any]] | None = None,
) -> tuple[SearchConfig, str, dict[str, Any]]:
    """The one trial of `trials` (expand_grid's list) picked by its run_id, its 0-based index in
    that order (the `--dry-run` order), or a value on grid axes (`values`: axis -> (the `--set`
    key as written, value)). SpecError, one line naming what is valid, otherwise."""
    picks = [x for x in ("--trial" if run_id is not None else None,
                         "--trial-index" if index is not None else None,
                         "--set on a grid axis" if values else None) if x]  # fmt: skip
    if len(picks) > 1:
        raise SpecError(f"{' and '.join(picks)}: each picks a trial of the job; use one of them")
    n = len(trials)
    if run_id is not None:
        for t in trials:
            if t[1] == run_id:
                return t
        shown = ", ".join(rid for _, rid, _ in trials[:8]) + (", ..." if n > 8 else "")
        raise SpecError(
            f"--trial {run_id}: not a trial of job {spec.name!r}; its {n} run_ids: {shown} "
            f"(`ray-nas sweep {spec.source} --dry-run` lists them with their grid points)"
        )
    if index is not None:
        if not 0 <= index < n:
            raise SpecError(
                f"--trial-index {index}: job {spec.name!r} has {n} trial{'s' * (n != 1)} "
                f"(0..{n - 1}, in `ray-nas sweep {spec.source} --dry-run` order)"
            )
        return trials[index]
    if not values:
        raise SpecError(
            "no trial picked: give --trial RUN_ID, --trial-index N or --set on a grid axis"
        )
    for axis, (key, value) in values.items():
        if not any(_same_value(v, value) for v in spec.grid[axis]):
            raise SpecError(
                f"--set {key}={value_text(value)}: not a value of the job's grid "
                f"({_axis_text(axis, spec.grid[axis])})"
            )
    match = [
        t
        for t in trials
        if all(_same_value(t[2][axis], value) for axis, (_key, value) in values.items())
    ]
    if len(match) != 1:
        rest = [k for k in spec.grid if k not in values]
        raise SpecError(
            f"--set {', '.join(f'{k}={value_text(v)}' for k, v in values.values())}: "
            f"{len(match)} trials of job {spec.name!r} have this value; set also "
            + "; ".join(_axis_text(k, spec.grid[k]) for k in rest)
            + " (or pick one with --trial RUN_ID / --trial-index N)"
        )
    return match[0]
