"""The reference pages of the docs, generated from the code itself so they cannot drift.

- job keys: the job spec's dataclasses (`ray_nas.config.schema`) and their field docstrings;
- criteria: `ray_nas.criteria.registry.CRITERIA` (each one's line and its parameters');
- algorithms: `ray_nas.algorithms.REGISTRY` and each one's settings dataclass;
- spaces: `ray_nas.spaces.NAMES` (ops, cells, edges, benchmark, retraining recipes);
- commands: the `ray-nas` argparse parser (`ray_nas.cli.build_parser`).

A field, parameter, command or option the code leaves without a docstring or help text is
documented in NOTES below; `undocumented()` lists what has neither (tests/test_docs.py fails on
it), `stale_notes()` the notes that name nothing any more or repeat what the code now says.

Used three ways: as a MkDocs hook (mkdocs.yml `hooks:`, the pages exist only in the built site),
by the tests, and by hand: `python docs/gen_reference.py OUT_DIR` writes the pages as Markdown.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python docs/gen_reference.py` and the MkDocs hook
    sys.path.insert(0, str(ROOT))

#: where the generated pages live in the site
PREFIX = "reference"

#: meaning of what the code leaves undocumented: "job:KEY", "recipe:SPACE:FIELD",
#: "command:NAME", "option:COMMAND OPTION" (COMMAND may have two words: "benchmark convert"),
#: "api:Job.ATTR" or "api:FUNCTION" (ray_nas.api)
NOTES: dict[str, str] = {
    "job:store": "where the job's folder `{store}/{name}/` is written: a path or `s3://bucket/prefix`",
    "job:tracking_uri": "MLflow tracking URI: `sqlite:///mlflow.db`, `http://host:5000`, ...; "
    "one experiment per job",
    "job:resources.cpu": "CPUs per trial",
    "job:resources.gpu": "GPUs per trial; a fraction (0.25) packs several trials on one GPU",
    "job:evaluate": "the offline stage: how the epochs the criteria choose are scored "
    "(a benchmark table, else retraining)",
    "job:max_failures": "how often Ray Tune retries a failed trial (it resumes from its last "
    "checkpoint)",
    "job:search.weights.momentum": "SGD momentum",
    "job:search.weights.nesterov": "Nesterov momentum",
    "job:search.weights.weight_decay": "L2 on the weights (SGD's weight decay)",
    "job:search.alpha.lr": "Adam learning rate of the architecture parameters",
    "job:search.alpha.betas": "Adam betas",
    "job:search.batch_size": "images per batch, for the weight step and the alpha step alike",
    "job:search.seed": "seeds the supernet's initialisation and the batch order (a grid axis "
    "as a rule)",
    "job:evaluate.retrain.channels": "NB201 archs: C of the retrained network",
    "job:evaluate.retrain.cells": "NB201 archs: N, cells per stage of the retrained network",
    "job:evaluate.retrain.batch_size": "NB201 archs: batch size of the retraining",
    "job:evaluate.retrain.lr": "NB201 archs: initial SGD lr, cosine to 0 over `epochs`",
    "recipe:nb201:epochs": "training epochs",
    "recipe:nb201:channels": "C of the discrete network",
    "recipe:nb201:cells": "N, cells per stage",
    "recipe:nb201:batch_size": "batch size",
    "recipe:darts:layers": "cells of the network (reductions at layers//3 and 2*layers//3)",
    "recipe:darts:channels": "C, channels of the first cell",
    "recipe:darts:epochs": "training epochs",
    "recipe:darts:batch_size": "batch size",
    "recipe:darts:momentum": "SGD momentum",
    "recipe:darts:weight_decay": "SGD weight decay",
    "recipe:darts:grad_clip": "max global L2 norm of the gradients",
    "api:Job.name": "the job's name (`name:` of its file)",
    "option:analysis restore --lr": "learning rates to study, one column each",
    "option:analysis restore --t1": "the step at which the gradient flips (up to 100,000)",
    "option:analysis restore --momentum": "SGD momentum of the study",
}

#: JobSpec fields that a job file does not set (filled in by the loader)
INTERNAL_KEYS = {"source"}


# ------------------------------------------------------------------ helpers


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (attribute docstrings)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def class_doc(cls: type) -> str:
    """The first paragraph of a class's own docstring ("" for a dataclass's generated one)."""
    doc = cls.__dict__.get("__doc__") or ""
    if dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}("):
        return ""
    doc = inspect.cleandoc(doc)
    return " ".join(doc.split("\n\n")[0].split())


def type_name(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "mapping"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and "UnionType" in str(origin)):
        inner = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(inner) + (" | null" if type(None) in args else "")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {type_name(args[0])}"
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if tp is dict:
        return "mapping"
    if tp is tuple:
        return "list"
    return {str: "string", int: "integer", float: "number", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def yaml_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, str):
        return v if v else '""'
    return repr(v)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


# ------------------------------------------------------------------ job keys


def job_keys() -> list[dict]:
    """Every key a job file can set: key, type, default, meaning ("" = undocumented)."""
    from ray_nas.config import schema

    rows: list[dict] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if not prefix and f.name in INTERNAL_KEYS:
                continue
            key = f"{prefix}{f.name}"
            tp = hints[f.name]
            default = default_of(f)
            if cls is schema.JobSpec and f.name == "search":
                tp, default = schema.SearchConfig, None
            sub = tp if dataclasses.is_dataclass(tp) else None
            if sub is None and typing.get_origin(tp) is not None:
                sub = next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)
            meaning = docs.get(f.name) or (class_doc(sub) if sub is not None else "")
            if cls is schema.JobSpec and f.name == "search":  # its docstring is about internals
                meaning = class_doc(schema.SearchConfig)
            rows.append(
                {
                    "key": key,
                    "type": type_name(tp),
                    "default": "(required)"
                    if default is dataclasses.MISSING
                    else (
                        "(section)"
                        if dataclasses.is_dataclass(default) or sub
                        else yaml_value(default)
                    ),
                    "meaning": meaning,
                    "section": sub is not None,
                }
            )
            if sub is not None:
                walk(sub, key + ".")

    walk(schema.JobSpec, "")
    for row in rows:
        note = NOTES.get(f"job:{row['key']}")
        if note and not row["meaning"]:
            row["meaning"] = note
    return rows


def presets_page_part() -> list[str]:
    from ray_nas.config.presets import LR_PRESETS

    out = [
        "## `search.lr_scheme` presets",
        "",
        "A preset sets these keys before the job's explicit `search` keys and the grid point "
        "(defaults < preset < `search:` < grid point). The defaults in the table above are the "
        "dataclass defaults, before the preset.",
        "",
        "| preset | sets |",
        "|---|---|",
    ]
    for name, keys in LR_PRESETS.items():
        flat = _flatten(keys, "")
        out.append(f"| `{name}` | {cell(', '.join(flat))} |")
    return out


def _flatten(d: dict, prefix: str) -> list[str]:
    """`key: value` of a nested mapping, dotted."""
    out: list[str] = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append(f"`{prefix}{k}: {yaml_value(v)}`")
    return out


def job_keys_page() -> str:
    out = [
        "# Job keys (reference)",
        "",
        "Every key a job file (or `--set`) can set, generated from the job spec's dataclasses "
        "(`ray_nas/config/schema.py`) and their docstrings. Keys under `search.` can also be "
        "`grid:` axes. See [Job files](../jobs.md) for a worked example.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for r in job_keys():
        key = f"**`{r['key']}`**" if r["section"] else f"`{r['key']}`"
        out.append(f"| {key} | {cell(r['type'])} | `{cell(r['default'])}` | {cell(r['meaning'])} |")
    out += [""] + presets_page_part()
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ criteria


def criteria_page() -> str:
    from ray_nas import spaces
    from ray_nas.criteria.parse import default_criteria
    from ray_nas.criteria.registry import CRITERIA, REQUIRED

    out = [
        "# Stop criteria (reference)",
        "",
        "Every built-in criterion and its parameters, generated from "
        "`ray_nas.criteria.registry.CRITERIA` (`ray-nas criteria` prints the same). A job names "
        "them in `criteria:` as `name` or `{name: ..., param: value}`; see "
        "[Stop criteria](../criteria.md) for how they are applied and how to write your own.",
        "",
    ]
    for name, info in CRITERIA.items():
        out += [f"## `{name}`", "", info.doc, ""]
        if info.params:
            out += ["| parameter | default | meaning |", "|---|---|---|"]
            for p, d in info.params.items():
                dv = "(required)" if d is REQUIRED else yaml_value(d)
                out.append(f"| `{p}` | `{cell(dv)}` | {cell(info.param_docs.get(p, ''))} |")
        else:
            out.append("No parameters.")
        out.append("")
    out += [
        "## The default set",
        "",
        "A job that lists no `criteria:` gets the paper's comparison set, on the ops of the space "
        "it searches (`ray_nas.criteria.parse.default_criteria`):",
        "",
        "| space | criteria (labels) |",
        "|---|---|",
    ]
    for name in spaces.NAMES:
        labels = ", ".join(f"`{c.label}`" for c in default_criteria(name))
        out.append(f"| `{name}` | {cell(labels)} |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ algorithms


def algorithms_page() -> str:
    from ray_nas.algorithms import REGISTRY

    out = [
        "# Search algorithms (reference)",
        "",
        "Every value of `search.algorithm`, generated from `ray_nas.algorithms.REGISTRY` "
        "(`ray-nas algorithms` prints the same). See [Search algorithms](../algorithms.md).",
        "",
    ]
    for name, info in REGISTRY.items():
        out += [f"## `{name}`", "", info.summary + ".", ""]
        out.append(f"- class: `{info.target}`")
        if info.uses:
            out.append("- shared keys it reads: " + ", ".join(f"`search.{k}`" for k in info.uses))
        out.append(
            "- NAS-Bench-1Shot1 spaces (connection weights): "
            + ("yes" if info.connections else "no (refused)")
        )
        out.append("")
        if info.settings is not None:
            docs = field_docs(info.settings)
            hints = typing.get_type_hints(info.settings)
            out += [
                f"Its own keys, `search.{name}.*` ({class_doc(info.settings).rstrip('.')}):",
                "",
                "| key | type | default | meaning |",
                "|---|---|---|---|",
            ]
            for f in dataclasses.fields(info.settings):
                out.append(
                    f"| `search.{name}.{f.name}` | {type_name(hints[f.name])} | "
                    f"`{yaml_value(default_of(f))}` | {cell(docs.get(f.name, ''))} |"
                )
            out.append("")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ spaces


def recipe_fields(space_name: str, recipe: Any) -> list[dict]:
    docs = field_docs(type(recipe))
    hints = typing.get_type_hints(type(recipe))
    return [
        {
            "field": f.name,
            "type": type_name(hints[f.name]),
            "meaning": docs.get(f.name) or NOTES.get(f"recipe:{space_name}:{f.name}", ""),
        }
        for f in dataclasses.fields(recipe)
    ]


def spaces_page() -> str:
    from ray_nas import spaces

    out = [
        "# Search spaces (reference)",
        "",
        "Every value of `search.space`, generated from the space registry "
        "(`ray_nas.spaces.NAMES`). See [Search spaces](../spaces.md).",
        "",
    ]
    seen_recipe_types: set[type] = set()
    for name in spaces.NAMES:
        s = spaces.get_space(name)
        out += [f"## `{name}`", "", class_doc(type(s)), ""]
        if dataclasses.is_dataclass(s):  # a parametrised space: its own values
            docs = field_docs(type(s))
            for f in dataclasses.fields(s):
                out.append(
                    f"- `{f.name}` = `{yaml_value(getattr(s, f.name))}`: {docs.get(f.name, '')}".rstrip(
                        ": "
                    )
                )
        out.append("- ops (column order): " + ", ".join(f"`{o}`" for o in s.ops))
        out.append(
            "- cell types (rows of the architecture parameter): "
            + ", ".join(f"`{c}`" for c in s.cell_types)
        )
        out.append(f"- edges per cell: {len(s.edges)}")
        out.append(
            "- ops the default selective-stop criteria read: "
            + ", ".join(f"`{o}`" for o in s.criteria_ops)
        )
        out.append(
            "- benchmark: "
            + (
                f"tables keyed by `{s.benchmark_key_column}`"
                if s.benchmark_key_column
                else "none (selected cells are retrained)"
            )
        )
        out.append("- `search.impl`: " + " | ".join(f"`{i}`" for i in s.impls))
        out.append(
            f"- sized by `search.{s.size_key}`"
            + (f" (default {s.default_layers})" if s.default_layers else "")
        )
        if s.export_format:
            out.append(f"- `ray-nas export` writes its genotypes as `{s.export_format}`")
        out.append("")
        if s.recipes:
            out += [
                f"Retraining recipes (`evaluate.retrain.recipe`, default `{s.default_recipe}`; "
                "`evaluate.retrain.overrides` changes their fields):",
                "",
            ]
            fields = [f.name for f in dataclasses.fields(next(iter(s.recipes.values())))]
            out.append("| recipe | " + " | ".join(f"`{f}`" for f in fields) + " |")
            out.append("|---" * (len(fields) + 1) + "|")
            for rname, rec in s.recipes.items():
                vals = [yaml_value(getattr(rec, f)) for f in fields]
                out.append(f"| `{rname}` | " + " | ".join(vals) + " |")
            out.append("")
            rtype = type(next(iter(s.recipes.values())))
            if rtype not in seen_recipe_types:
                seen_recipe_types.add(rtype)
                out += ["| field | type | meaning |", "|---|---|---|"]
                for r in recipe_fields(name, next(iter(s.recipes.values()))):
                    out.append(f"| `{r['field']}` | {cell(r['type'])} | {cell(r['meaning'])} |")
                out.append("")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ commands


def commands() -> list[dict]:
    """Every (sub)command and its arguments: name, help, usage, arguments [(names, help)]."""
    from ray_nas.cli import build_parser

    rows: list[dict] = []

    def walk(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
        sub_actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        args = []
        for a in parser._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            names = ", ".join(a.option_strings) if a.option_strings else (a.metavar or a.dest)
            key = a.option_strings[-1] if a.option_strings else (a.metavar or a.dest)
            text = (
                a.help
                if a.help and a.help != argparse.SUPPRESS
                else NOTES.get(f"option:{name} {key}", "")
            )
            default = (
                a.default
                if a.option_strings and a.default not in (None, False, [], argparse.SUPPRESS)
                else None
            )
            args.append({"names": names, "key": key, "help": text or "", "default": default})
        if name:
            rows.append(
                {
                    "name": name,
                    "help": help_text or NOTES.get(f"command:{name}", ""),
                    "usage": " ".join(parser.format_usage().split())[len("usage: ") :],
                    "args": args,
                    "leaf": not sub_actions,
                }
            )
        for sa in sub_actions:
            helps = {c.dest: c.help for c in sa._choices_actions}
            for sub_name, sub_parser in sa.choices.items():
                walk(sub_parser, f"{name} {sub_name}".strip(), helps.get(sub_name, ""))

    walk(build_parser(), "", "")
    return rows


def commands_page() -> str:
    out = [
        "# Commands (reference)",
        "",
        "Every `ray-nas` command and its arguments, generated from the command's own parser "
        "(`ray_nas/cli/__init__.py`; `ray-nas COMMAND --help` prints the same). See "
        "[Commands](../commands.md) for what they do together.",
        "",
    ]
    for c in commands():
        out += [f"## `ray-nas {c['name']}`", "", c["help"], "", "```", c["usage"], "```", ""]
        if c["args"]:
            out += ["| argument | meaning | default |", "|---|---|---|"]
            for a in c["args"]:
                d = "" if a["default"] is None else f"`{yaml_value(a['default'])}`"
                out.append(f"| `{cell(a['names'])}` | {cell(a['help'])} | {d} |")
            out.append("")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ notebook API


def api_members() -> list[dict]:
    """`ray_nas.api`'s functions and the public methods and properties of its Job."""
    from ray_nas import api

    rows = []
    for name in ("open_job", "criterion", "apply"):
        fn = getattr(api, name)
        rows.append(
            {"name": f"api.{name}", "sig": f"{name}{inspect.signature(fn)}", "doc": fn.__doc__}
        )
    for name, member in vars(api.Job).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            sig, doc = f"job.{name}", member.fget.__doc__
        else:
            params = list(inspect.signature(member).parameters.values())[1:]
            sig = f"job.{name}({', '.join(str(p) for p in params)})"
            doc = member.__doc__
        rows.append({"name": f"Job.{name}", "sig": sig, "doc": doc})
    for r in rows:
        r["sig"] = r["sig"].replace("'", "")  # postponed annotations print quoted
        r["doc"] = " ".join((r["doc"] or NOTES.get(f"api:{r['name']}", "")).split())
    return rows


def api_page() -> str:
    out = [
        "# Notebook API (reference)",
        "",
        "`from ray_nas import api`: a job's store as pandas frames and trajectories, any criteria; "
        "no Ray, MLflow or torch is imported, and nothing is written. Generated from "
        "`ray_nas/api.py`; [The store](../store.md) shows it at work.",
        "",
        "| call | what |",
        "|---|---|",
    ]
    for r in api_members():
        out.append(f"| `{cell(r['sig'])}` | {cell(r['doc'])} |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ completeness


def undocumented() -> list[str]:
    """What the reference would show without a meaning; empty when everything is documented."""
    from ray_nas import spaces
    from ray_nas.algorithms import REGISTRY
    from ray_nas.criteria.registry import CRITERIA

    missing = [f"job key {r['key']}" for r in job_keys() if not r["meaning"].strip()]
    for name, info in CRITERIA.items():
        if not info.doc.strip():
            missing.append(f"criterion {name}")
        missing += [
            f"criterion {name} parameter {p}" for p, d in info.param_docs.items() if not d.strip()
        ]
    for name, info in REGISTRY.items():
        if not info.summary.strip():
            missing.append(f"algorithm {name}")
        if info.settings is not None:
            docs = field_docs(info.settings)
            missing += [
                f"algorithm key search.{name}.{f.name}"
                for f in dataclasses.fields(info.settings)
                if not docs.get(f.name)
            ]
    for name in spaces.NAMES:
        s = spaces.get_space(name)
        if not class_doc(type(s)):
            missing.append(f"space {name}")
        for rec in s.recipes.values():
            missing += [
                f"space {name} recipe field {r['field']}"
                for r in recipe_fields(name, rec)
                if not r["meaning"]
            ]
    for c in commands():
        if not c["help"].strip():
            missing.append(f"command ray-nas {c['name']}")
        missing += [
            f"ray-nas {c['name']} argument {a['key']}" for a in c["args"] if not a["help"].strip()
        ]
    missing += [f"notebook API {r['name']}" for r in api_members() if not r["doc"]]
    return sorted(set(missing))


def stale_notes() -> list[str]:
    """NOTES entries that name nothing in the code, or that the code now documents itself."""
    from ray_nas import spaces
    from ray_nas.config import schema

    stale = []
    rows = {r["key"]: r for r in job_keys()}
    recipe_docs: dict[str, dict[str, str]] = {}
    for name in spaces.NAMES:
        s = spaces.get_space(name)
        for rec in s.recipes.values():
            recipe_docs.setdefault(name, {}).update(
                {f.name: field_docs(type(rec)).get(f.name, "") for f in dataclasses.fields(rec)}
            )
    cmds = {c["name"]: c for c in commands()}
    for note in NOTES:
        kind, _, what = note.partition(":")
        if kind == "job":
            # the key exists, and the code does not document it itself
            ok = what in rows and not _code_doc(schema, what)
        elif kind == "recipe":
            space, _, fld = what.partition(":")
            ok = fld in recipe_docs.get(space, {}) and not recipe_docs[space][fld]
        elif kind == "command":
            ok = what in cmds and not _parser_help(what)
        elif kind == "api":
            from ray_nas import api

            owner, _, attr = what.partition(".")
            obj = getattr(api.Job if owner == "Job" else api, attr, None)
            obj = obj.fget if isinstance(obj, property) else obj
            ok = obj is not None and not (obj.__doc__ or "").strip()
        elif kind == "option":
            cmd, _, opt = what.rpartition(" ")
            c = cmds.get(cmd)
            ok = c is not None and any(
                a["key"] == opt and a["help"] == NOTES[note] for a in c["args"]
            )
        else:
            ok = False
        if not ok:
            stale.append(note)
    return stale


def _code_doc(schema: Any, key: str) -> str:
    """The docstring (or section class docstring) the code itself has for a job key."""
    cls = schema.JobSpec
    parts = key.split(".")
    for i, part in enumerate(parts):
        if cls is schema.JobSpec and part == "search":
            if i == len(parts) - 1:
                return field_docs(cls).get(part, "")
            cls = schema.SearchConfig
            continue
        docs = field_docs(cls)
        f = {x.name: x for x in dataclasses.fields(cls)}[part]
        tp = typing.get_type_hints(cls)[part]
        sub = (
            tp
            if dataclasses.is_dataclass(tp)
            else next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)
        )
        if i == len(parts) - 1:
            return docs.get(f.name) or (class_doc(sub) if sub is not None else "")
        cls = sub
    return ""


def _parser_help(name: str) -> str:
    for c in commands():
        if c["name"] == name:
            return c["help"] if c["help"] != NOTES.get(f"command:{name}") else ""
    return ""


# ------------------------------------------------------------------ pages, hook, main


def pages() -> dict[str, str]:
    """Site path -> Markdown of every generated page."""
    return {
        f"{PREFIX}/job-keys.md": job_keys_page(),
        f"{PREFIX}/criteria.md": criteria_page(),
        f"{PREFIX}/algorithms.md": algorithms_page(),
        f"{PREFIX}/spaces.md": spaces_page(),
        f"{PREFIX}/commands.md": commands_page(),
        f"{PREFIX}/api.md": api_page(),
    }


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated pages to the site (nothing is written under docs/)."""
    from mkdocs.structure.files import File

    for path, text in pages().items():
        files.append(File.generated(config, path, content=text))
    return files


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python docs/gen_reference.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    for path, text in pages().items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
