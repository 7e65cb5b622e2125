"""The docs: the reference pages generated from the code document every job key, criterion,
algorithm, space and command; the MkDocs site builds with --strict (no broken link, no missing
page); the README stays a landing page whose links resolve."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _gen():
    spec = importlib.util.spec_from_file_location(
        "gen_reference", ROOT / "docs" / "gen_reference.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _gen()


def test_everything_in_the_code_is_documented():
    assert gen.undocumented() == [], (
        "give these a docstring or help text in the code (or a line in NOTES of "
        "docs/gen_reference.py)"
    )
    assert gen.stale_notes() == [], "NOTES of docs/gen_reference.py names what no longer needs one"


def test_a_missing_meaning_is_caught(monkeypatch):
    """The check can fail: drop one note, and the key it documents is reported."""
    notes = dict(gen.NOTES)
    del notes["job:search.weights.momentum"]
    del notes["option:analysis restore --t1"]
    monkeypatch.setattr(gen, "NOTES", notes)
    assert gen.undocumented() == [
        "job key search.weights.momentum",
        "ray-nas analysis restore argument --t1",
    ]


def test_a_stale_note_is_caught(monkeypatch):
    notes = dict(gen.NOTES, **{"job:search.no_such_key": "x", "job:search.epochs": "y"})
    monkeypatch.setattr(gen, "NOTES", notes)
    # one names no key, the other a key the schema documents itself
    assert sorted(gen.stale_notes()) == ["job:search.epochs", "job:search.no_such_key"]


def _all_job_keys() -> set[str]:
    """Every dotted key of the job spec, walked here independently of the generator."""
    from ray_nas.config import schema

    keys: set[str] = set()

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            key = prefix + f.name
            keys.add(key)
            tp = schema.SearchConfig if (cls is schema.JobSpec and f.name == "search") else f.type
            sub = next(
                (
                    c
                    for c in (
                        schema.SearchConfig,
                        schema.WeightsOptim,
                        schema.AlphaOptim,
                        schema.Resources,
                        schema.RetrainConfig,
                        schema.EvaluateConfig,
                        schema.Estimate,
                    )
                    if tp is c or (isinstance(tp, str) and c.__name__ in tp)
                ),
                None,
            )
            algo = {"darts_v2", "gaea", "drnas"}
            if cls is schema.SearchConfig and f.name in algo:
                sub = type(getattr(schema.SearchConfig(), f.name))
            if sub is not None:
                walk(sub, key + ".")

    walk(schema.JobSpec, "")
    return keys - {"source"}


def test_the_pages_name_every_key_criterion_algorithm_space_and_command():
    from ray_nas import spaces
    from ray_nas.algorithms import REGISTRY
    from ray_nas.cli import build_parser
    from ray_nas.criteria.registry import CRITERIA

    pages = gen.pages()
    keys_page = pages["reference/job-keys.md"]
    documented = set(re.findall(r"^\| \**`([^`]+)`", keys_page, flags=re.M))
    assert _all_job_keys() <= documented
    assert "search.weights.lr" in documented and "evaluate.retrain.overrides" in documented

    crit = pages["reference/criteria.md"]
    for name, info in CRITERIA.items():
        assert f"## `{name}`" in crit
        for p in info.params:
            assert re.search(rf"^\| `{p}` \|", crit.split(f"## `{name}`")[1], flags=re.M), (name, p)

    algos = pages["reference/algorithms.md"]
    assert set(re.findall(r"^## `(\w+)`", algos, flags=re.M)) == set(REGISTRY)
    sp = pages["reference/spaces.md"]
    assert set(re.findall(r"^## `(\w+)`", sp, flags=re.M)) == set(spaces.NAMES)

    cmds = pages["reference/commands.md"]
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in sub.choices:
        assert f"## `ray-nas {name}`" in cmds
    assert "## `ray-nas benchmark convert-nb101`" in cmds
    assert "| `--only-1shot1` |" in cmds

    from ray_nas import api

    api_page = pages["reference/api.md"]
    public = [n for n in vars(api.Job) if not n.startswith("_")]
    for name in ["open_job", "criterion", "apply", *(f"job.{n}" for n in public)]:
        assert f"| `{name}" in api_page, name


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    """The site builds with --strict (a broken link, a missing page or anchor fails it), and the
    generated pages are in it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_MKDOCS_2_WARNING="1")
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    page = (tmp_path / "site" / "reference" / "job-keys" / "index.html").read_text()
    assert "search.weights.lr" in page
    assert (tmp_path / "site" / "cluster" / "index.html").exists()
    assert not (tmp_path / "site" / "gen_reference.py").exists()


def test_readme_is_a_landing_page():
    from ray_nas import spaces
    from ray_nas.algorithms import REGISTRY

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for name in [*REGISTRY, *spaces.NAMES]:
        assert f"`{name}`" in text, f"README does not name {name}"
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "the README links into docs/"
    for link in local:
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"
    assert ".venv/bin/" in text
