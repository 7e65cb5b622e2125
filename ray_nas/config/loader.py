"""Reading job files: YAML as ML people write it (`3e-4` is a number, a key written twice is an
error), `--set key=value` overrides, and the helpers on nested mappings (flatten, deep merge,
set a dotted key).
"""

from __future__ import annotations

import copy
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from ray_nas.errors import SpecError

# --------------------------------------------------------------------------------------------
# YAML as ML people write it: `3e-4` and `1e6` are numbers, a key written twice is an error

#: A Python float literal with an exponent and no dot or no exponent sign (`3e-4`, `1e6`, `1.0e6`,
#: `1_000e3`), which YAML 1.1 leaves as a string; the forms YAML 1.1 already reads are unchanged.
_FLOAT_RE = re.compile(
    r"^[-+]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)[eE][-+]?\d(?:_?\d)*$"
)


class JobLoader(yaml.SafeLoader):
    """yaml.SafeLoader that reads `3e-4`/`1e6` as floats and refuses a mapping key written twice."""

    yaml_implicit_resolvers = {
        k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node, deep=False):  # noqa: D102 - yaml.SafeLoader's hook
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}); keep one",
                    None,
                )
            if isinstance(key, typing.Hashable):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


JobLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """Parse YAML the way job files are read (JobLoader); raises yaml.YAMLError."""
    return yaml.load(text, Loader=JobLoader)  # noqa: S506 - JobLoader is a SafeLoader


def yaml_error_line(e: yaml.YAMLError) -> str:
    """A YAML error as one line: the problem and where (line, column)."""
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if problem:
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{problem}{where}"
    return " ".join(str(e).split())[:200] or "invalid YAML"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'weights': {'lr': 1}} -> {'weights.lr': 1}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def deep_merge(base: dict, over: dict) -> dict:
    """A copy of `base` with `over` merged in: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_dotted(d: dict, key: str, value: Any) -> None:
    """d['a']['b'] = value for key 'a.b', creating mappings on the way."""
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise SpecError(f"{key}: {p!r} is not a mapping")
        d = nxt
    d[parts[-1]] = value


def parse_set(items: typing.Iterable[str]) -> list[tuple[str, Any]]:
    """`key=value` strings -> (key, YAML-parsed value) pairs."""
    out = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {item!r}: expected key=value, e.g. --set search.epochs=3")
        try:
            parsed = yaml_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        out.append((key.strip(), parsed))
    return out


def load_raw(path: str | Path) -> dict:
    """A job file as a plain mapping (not yet validated); SpecError when missing or not YAML."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{path}: job file not found")
    try:
        raw = yaml_load(p.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML ({yaml_error_line(e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read the job file ({e})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a job file must be a YAML mapping with at least `name:`")
    return raw
