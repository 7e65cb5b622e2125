"""Search spaces, one unit each behind ray_nas.spaces.base.Space, and their registry.

Adding a space: a module here that defines `SPACE` (a Space), and one line in `_UNITS`.
Looking one up imports only its pure module (no torch).
"""

from __future__ import annotations

import importlib

from ray_nas.spaces.base import Space

#: space name -> the module that defines its SPACE
_UNITS: dict[str, str] = {
    "nb201": "ray_nas.spaces.nb201",
    "darts": "ray_nas.spaces.darts",
}
NAMES: tuple[str, ...] = tuple(_UNITS)
DEFAULT = "nb201"


def get_space(name: str) -> Space:
    """The registered space `name`; ValueError names the valid ones."""
    if name not in _UNITS:
        raise ValueError(f"unknown search space {name!r}; valid: {', '.join(NAMES)}")
    return importlib.import_module(_UNITS[name]).SPACE


def cell_types() -> tuple[str, ...]:
    """Every cell type of every registered space (criteria validate `cell` against these)."""
    return tuple(dict.fromkeys(c for n in NAMES for c in get_space(n).cell_types))


def all_ops() -> tuple[str, ...]:
    """Every op name of every registered space (criteria validate `op` against these)."""
    return tuple(dict.fromkeys(o for n in NAMES for o in get_space(n).ops))
