"""Criteria named by import path (`package.module:function`): imported once, their parameters
read from the function's signature.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

from ray_nas.criteria.registry import CRITERIA, REQUIRED, CriterionInfo
from ray_nas.criteria.trajectory import StopResult
from ray_nas.errors import did_you_mean, first_line

# ---------------------------------------------------------------- criteria named by import path

_UnionType = type(int | None)


def resolve_criterion(name: str) -> CriterionInfo:
    """The catalogue entry of a built-in name, or of a function named `package.module:function`.

    The module is imported (from sys.path, plus the current directory, as `python -m` would):
    a job runs the code it names. Raises ValueError (one line) on an unknown name, a module that
    cannot be imported, a misspelt function or a signature that cannot take a trajectory.
    """
    if name in CRITERIA:
        return CRITERIA[name]
    if ":" not in name:
        raise ValueError(
            f"unknown criterion {name!r}{did_you_mean(name, CRITERIA, n=3, list_valid=True)} "
            "(or name your own function as package.module:function)"
        )
    return _import_criterion(name)


@functools.cache
def _import_criterion(path: str) -> CriterionInfo:
    module_name, _, attr = path.partition(":")
    parts = [*module_name.split("."), *attr.split(".")]
    if not all(p.isidentifier() for p in parts):
        raise ValueError(f"criterion {path!r}: expected package.module:function")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ValueError(
            f"criterion {path!r}: cannot import module {module_name!r} ({first_line(e, 300)}); "
            "it must be importable here and on every worker (PYTHONPATH, an installed package)"
        ) from None
    except Exception as e:
        raise ValueError(
            f"criterion {path!r}: importing {module_name!r} raised {type(e).__name__}: "
            f"{first_line(e, 300)}"
        ) from None
    fn: Any = module
    for i, a in enumerate(attr.split(".")):
        if not hasattr(fn, a):
            here = [n for n in dir(fn) if not n.startswith("_") and callable(getattr(fn, n))]
            owner = module_name if i == 0 else f"{module_name}:{'.'.join(attr.split('.')[:i])}"
            raise ValueError(
                f"criterion {path!r}: {owner} has no function {a!r}"
                f"{did_you_mean(a, here, n=3, list_valid=True)}"
            )
        fn = getattr(fn, a)
    if not callable(fn):
        raise ValueError(f"criterion {path!r}: {attr} is a {type(fn).__name__}, not a function")
    return _user_info(path, fn)


def _user_info(path: str, fn: Callable[..., StopResult]) -> CriterionInfo:
    """Parameters, defaults and types of a user criterion `fn(traj, **params)`."""
    try:
        sig = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise ValueError(f"criterion {path!r}: its signature cannot be read") from None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not sig or sig[0].kind not in positional:
        raise ValueError(f"criterion {path!r}: must take the trajectory as its first argument")
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: fall back to the defaults' types
        hints = {}
    params, kinds = {}, {}
    for p in sig[1:]:
        if p.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            raise ValueError(
                f"criterion {path!r}: parameter {p.name!r} must be a named keyword "
                "(no *args, **kwargs or positional-only parameters)"
            )
        params[p.name] = p.default
        kinds[p.name] = _annotation_kind(hints.get(p.name), p.default)
    doc = (inspect.getdoc(fn) or "(no docstring)").splitlines()[0]
    param_docs = {k: f"{getattr(kinds[k], '__name__', 'any')} (from the signature)" for k in params}
    return CriterionInfo(path, fn, doc, params, param_docs, kinds, builtin=False)


def _annotation_kind(hint: Any, default: Any) -> Any:
    """bool/int/float/str/list from an annotation (X | None counts as X), else the default's type."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is not None and args and typing.get_origin(hint) in (typing.Union, _UnionType):
        hint = args[0] if len(args) == 1 else None
    origin = typing.get_origin(hint) or hint
    if origin in (bool, int, float, str):
        return origin
    if origin in (list, tuple) or origin is Sequence:
        return list
    if hint is None and default is not REQUIRED and default is not None:
        kind = type(default)
        return list if kind is tuple else kind if kind in (bool, int, float, str, list) else None
    return None
