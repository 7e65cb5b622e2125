"""A criterion as a job or the command line names it (`CriterionSpec`, `parse_criterion`), the
default set of each space, and the text of `ray-nas criteria`.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ray_nas import spaces
from ray_nas.criteria.builtin import _check_params
from ray_nas.criteria.plugins import resolve_criterion
from ray_nas.criteria.registry import (
    _ADDED_PARAMS,
    CRITERIA,
    REQUIRED,
    CriterionInfo,
    _coerce,
    _fmt,
    _jsonable,
    apply_checked,
)
from ray_nas.criteria.trajectory import StopResult, Trajectory
from ray_nas.errors import did_you_mean


@dataclass(frozen=True)
class CriterionSpec:
    """A criterion with all its parameters fixed, as a job spec or the CLI names it."""

    name: str
    """a catalogue name, or `package.module:function`"""
    params: dict[str, Any]
    """every parameter, defaults filled in"""
    label: str
    """stable display/grouping key: `name`, or `name[k=v,...]` with the user's explicit params, sorted"""

    @property
    def params_json(self) -> str:
        """All params as canonical JSON (sorted keys, tuples as lists); parameters added later
        (_ADDED_PARAMS) only where they differ from their default, so older selections keep
        their text."""
        kept = {k: v for k, v in self.params.items() if _ADDED_PARAMS.get(k, object()) != v}
        return json.dumps({k: _jsonable(v) for k, v in kept.items()}, sort_keys=True)

    @property
    def info(self) -> CriterionInfo:
        return resolve_criterion(self.name)

    def apply(self, traj: Trajectory) -> StopResult:
        """The criterion on `traj`, the shared rules checked (CriterionError when broken)."""
        return apply_checked(self.info, self.label, traj, self.params)

    def __hash__(self) -> int:
        return hash((self.name, self.params_json, self.label))


def parse_criterion(item: str | Mapping[str, Any]) -> CriterionSpec:
    """A CriterionSpec from a name ("final"), a dict ({name: "ss_eq13", exclude: [none]}) or an
    import path ({name: "my_lab.stops:entropy_drop", threshold: 0.5}).

    Raises ValueError (one line, with close matches) on an unknown name or parameter, a missing
    one, a wrong type or an out-of-range value.
    """
    if isinstance(item, str):
        name, given = item, {}
    elif isinstance(item, Mapping):
        given = dict(item)
        name = given.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(
                f"a criterion given as a dict needs a 'name' (str), got {dict(item)!r}"
            )
    else:
        raise ValueError(f"a criterion is a name or {{name: ..., params}}, got {item!r}")
    info = resolve_criterion(name)
    params = dict(info.params)
    for key, value in given.items():
        if key not in info.params:
            valid = list(info.params) or ["(none)"]
            raise ValueError(
                f"criterion {name!r} has no parameter {key!r}"
                f"{did_you_mean(str(key), valid, n=3, list_valid=True)}"
            )
        params[key] = _coerce(name, key, value, info.kind(key))
    missing = [k for k, v in params.items() if v is REQUIRED]
    if missing:
        raise ValueError(
            f"criterion {name!r}: missing parameter {missing[0]!r} ({info.where} gives it no default)"
        )
    if info.builtin:
        try:
            _check_params(**params)
        except ValueError as e:
            raise ValueError(f"criterion {name!r}: {e}") from None
    label = name
    if given:
        label += "[" + ",".join(f"{k}={_fmt(params[k])}" for k in sorted(given)) + "]"
    return CriterionSpec(name=name, params=params, label=label)


def default_items(space: str | None = None) -> list[str | dict[str, Any]]:
    """The paper's comparison set (Tables 2-3) as job items, on the ops of `space` (a name in
    spaces.NAMES; None: NAS-Bench-201): the selective stops on its `criteria_ops` (Eq.12 on
    each, Eq.13 on the first, also without `none` where the space has it), DARTS+ sc_k only
    where it has skip_connect, then rt_k, DARTS-ES and the oracle."""
    unit = spaces.get_space(space or spaces.DEFAULT)
    first = unit.criteria_ops[0]
    items: list[str | dict[str, Any]] = ["final", "best_valid"]
    items += [{"name": "ss_eq12", "op": op} for op in unit.criteria_ops]
    items.append({"name": "ss_eq13", "op": first})
    if "none" in unit.ops:
        items.append({"name": "ss_eq13", "op": first, "exclude": ["none"]})
    if "skip_connect" in unit.ops:
        items += [{"name": "dartsplus_sc", "k": k} for k in (2, 3, 4)]
    items += [{"name": "dartsplus_rt", "k": k} for k in (2, 3, 4, 10)]
    return [*items, "darts_es", "darts_es_paper", "oracle"]


def default_criteria(space: str | None = None) -> list[CriterionSpec]:
    """The criteria of a job on `space` that lists none: `default_items(space)` parsed."""
    return [parse_criterion(item) for item in default_items(space)]


def describe_criteria(extra: Sequence[CriterionInfo] = ()) -> str:
    """A text table of every criterion (the catalogue, then `extra`: a job's own functions), its
    parameters with defaults, and what they mean."""
    lines = []
    for info in [*CRITERIA.values(), *extra]:
        mine = "" if info.builtin else "  (your code)"
        lines.append(f"{info.name:<23} {info.doc}{mine}")
        for key, default in info.params.items():
            setting = f"{key}={'(required)' if default is REQUIRED else _fmt(default)}"
            lines.append(f"  {setting:<22}{info.param_docs[key]}")
    return "\n".join([*lines, "", *_describe_defaults()])


def _describe_defaults() -> list[str]:
    """The default set of each space (spaces with the same set on one line)."""
    by_set: dict[tuple[str, ...], list[str]] = {}
    for name in spaces.NAMES:
        by_set.setdefault(tuple(c.label for c in default_criteria(name)), []).append(name)
    lines = ["default criteria (a job that lists no `criteria:`), by the job's search space:"]
    for labels, names in by_set.items():
        lines.append(f"  {', '.join(names)}:")
        lines += textwrap.wrap(
            ", ".join(labels), 96, initial_indent="    ", subsequent_indent="    "
        )
    return lines


def job_functions(items: Sequence[Any]) -> list[CriterionInfo]:
    """The user functions (named by import path) among criteria items, each once, in order."""
    names = [i if isinstance(i, str) else i.get("name") for i in items if i is not None]
    infos = {n: resolve_criterion(n) for n in names if isinstance(n, str)}
    return [i for i in infos.values() if not i.builtin]
