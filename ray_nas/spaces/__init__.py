"""Search spaces, one unit each behind ray_nas.spaces.base.Space, and their registry.

Adding a space: a module here that defines `SPACE` (a Space), and one line in `_UNITS`
("module" for its `SPACE`, or "module:NAME" for another attribute, when a module holds several).
Looking one up imports only its pure module (no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: `from ray_nas import nb101_hash` stays free of numpy
    from ray_nas.spaces.base import Space

#: space name -> the module that defines its SPACE (or module:attribute)
_UNITS: dict[str, str] = {
    "nb201": "ray_nas.spaces.nb201.unit",
    "darts": "ray_nas.spaces.darts.unit",
    "nb1shot1_s1": "ray_nas.spaces.nb1shot1.unit:SPACE_S1",
    "nb1shot1_s2": "ray_nas.spaces.nb1shot1.unit:SPACE_S2",
    "nb1shot1_s3": "ray_nas.spaces.nb1shot1.unit:SPACE_S3",
}
NAMES: tuple[str, ...] = tuple(_UNITS)
DEFAULT = "nb201"


def name_of(config: dict) -> str:
    """The space of a trial's resolved search config (stores from before spaces were units have
    no `space` key: NAS-Bench-201)."""
    return config.get("space", DEFAULT)


def get_space(name: str) -> Space:
    """The registered space `name`; ValueError names the valid ones."""
    if name not in _UNITS:
        raise ValueError(f"unknown search space {name!r}; valid: {', '.join(NAMES)}")
    module, _, attr = _UNITS[name].partition(":")
    return getattr(importlib.import_module(module), attr or "SPACE")


def cell_types() -> tuple[str, ...]:
    """Every cell type of every registered space (criteria validate `cell` against these)."""
    return tuple(dict.fromkeys(c for n in NAMES for c in get_space(n).cell_types))


def all_ops() -> tuple[str, ...]:
    """Every op name of every registered space (criteria validate `op` against these)."""
    return tuple(dict.fromkeys(o for n in NAMES for o in get_space(n).ops))
