"""Issue 18: no traceback, no silent wrong result, no lost data.

The tables below are the cases tried (input -> expected exit code, a fragment of the one-line
message, and what must be left untouched). Most run the CLI entry function in this process;
`test_no_traceback_in_a_subprocess` runs a few through `python -m ray_nas.cli`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from ray_nas import cli
from ray_nas import store as stored
from ray_nas.config import load_spec, run_id, search_config
from tests.conftest import TINY_SEARCH

TINY = {**TINY_SEARCH, "epochs": 2, "steps_per_epoch": 2}


def _job(tmp: Path, name: str = "tiny", search: dict | None = None, **top) -> Path:
    job = {"name": name, "store": str(tmp / "store"), "tracking_uri": f"sqlite:///{tmp}/mlflow.db",
           "search": {**TINY, **(search or {})}, **top}  # fmt: skip
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root (what 'untouched' compares)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


# ------------------------------------------------------------------------------------------
# bad input: one line, exit 2, before any work (nothing written to the store)


def _text(text: str):
    def make(tmp: Path) -> list:
        p = tmp / "bad.yaml"
        p.write_text(text)
        return ["sweep", p, "--dry-run"]

    return make


def _with(cmd: str, *extra: str, search: dict | None = None, **top):
    def make(tmp: Path) -> list:
        return [cmd, _job(tmp, search=search, **top), *extra]

    return make


def _store_is_a_file(tmp: Path) -> list:
    (tmp / "afile").write_text("x")
    return ["search", _job(tmp, store=str(tmp / "afile")), "--quiet"]


def _split_file(train: list[int], valid: list[int]):
    def make(tmp: Path) -> list:
        p = tmp / "split.txt"
        p.write_text(json.dumps({"train": ["int", [str(i) for i in train]],
                                 "valid": ["int", [str(i) for i in valid]]}))  # fmt: skip
        return ["search", _job(tmp, search={"split_file": str(p)}), "--quiet"]

    return make


def _garbage_job_yaml(cmd: str):
    def make(tmp: Path) -> list:
        d = tmp / "store" / "tiny"
        d.mkdir(parents=True)
        (d / "job.yaml").write_text("name: [unclosed\n  : : :\n")
        return [cmd, _job(tmp), "--quiet"] if cmd == "search" else [cmd, _job(tmp), "--no-evaluate"]

    return make


def _report_to(where: str):
    def make(tmp: Path) -> list:
        (tmp / "afolder").mkdir()
        (tmp / "afile").write_text("x")
        return ["report", _job(tmp), "-o", tmp / where]

    return make


def _convert_not_a_benchmark(tmp: Path) -> list:
    (tmp / "notes.pth").write_text("not a benchmark")
    return ["benchmark", "convert", tmp / "notes.pth", "-o", tmp / "t.parquet"]


def _convert_to_folder(tmp: Path) -> list:
    (tmp / "notes.pth").write_text("not a benchmark")
    (tmp / "afolder").mkdir()
    return ["benchmark", "convert", tmp / "notes.pth", "-o", tmp / "afolder"]


def _sqlite_at(name: str):
    def make(tmp: Path) -> list:
        (tmp / "afolder").mkdir()
        (tmp / "afile").write_text("not a database")
        return ["evaluate", _job(tmp, tracking_uri=f"sqlite:///{tmp}/{name}")]

    return make


NO_CUDA = not __import__("torch").cuda.is_available()

#: (case, argv builder, exit code, message fragment). Every case: one line on stderr, no store.
BAD_INPUT = [
    ("nan weights.lr", _with("sweep", "--dry-run", search={"weights": {"lr": float("nan")}}), 2,
     "search.weights.lr: expected a finite number"),
    ("inf alpha.lr via --set", _with("sweep", "--dry-run", "--set", "search.alpha.lr=.inf"), 2,
     "search.alpha.lr: expected a finite number"),
    ("inf estimate", _with("sweep", "--dry-run", "--set", "estimate.gpu_seconds_per_epoch=.inf"), 2,
     "estimate.gpu_seconds_per_epoch: expected a finite number"),
    ("duplicate YAML key", _text("name: a\nsearch: {dataset: fake}\nsearch: {epochs: 2}\n"), 2,
     "key 'search' appears twice"),
    ("duplicate nested key", _text("name: a\nsearch:\n  epochs: 2\n  epochs: 3\n"), 2,
     "key 'epochs' appears twice in one mapping (lines 3 and 4); keep one)"),
    ("duplicate grid value", _with("sweep", "--dry-run", grid={"seed": [0, 0]}), 2,
     "grid.seed[1]: 0 repeats grid.seed[0]"),
    ("grid points, same search", _with("sweep", "--dry-run", grid={"ops": [["none", "skip_connect"], ["skip_connect", "none"]]}), 2,
     "resolve to the same search config"),
    ("duplicate criteria", _with("sweep", "--dry-run", criteria=["final", "final"]), 2,
     "criteria[1]: final repeats criteria[0]"),
    ("duplicate criteria with params", _with("sweep", "--dry-run", criteria=[{"name": "dartsplus_sc", "k": 3}, {"k": 3, "name": "dartsplus_sc"}]), 2,
     "criteria[1]: dartsplus_sc[k=3] repeats"),
    ("unknown evaluate.metric", _with("sweep", "--dry-run", evaluate={"metric": "cifar10_tst"}), 2,
     "evaluate.metric: unknown metric 'cifar10_tst'; did you mean 'cifar10_test'?"),
    ("tracking_uri sqlite with two slashes", _with("evaluate", tracking_uri="sqlite://mlflow.db"), 2,
     "needs three slashes"),
    ("tracking_uri unknown scheme", _with("sweep", "--dry-run", tracking_uri="htp://127.0.0.1:5000"), 2,
     "tracking_uri: unknown scheme 'htp'"),
    ("tracking_uri with no host", _with("sweep", "--dry-run", tracking_uri="http://"), 2, "names no host"),
    ("evaluate, unreachable tracking server", _with("evaluate", tracking_uri="http://127.0.0.1:9"), 2,
     "MLflow server not reachable"),
    ("evaluate, sqlite folder missing", _with("evaluate", tracking_uri="sqlite:////nonexistent/dir/m.db"), 2,
     "does not exist or is not writable"),
    ("search, store is a file", _store_is_a_file, 2, "cannot write under"),
    ("search, store name too long", _with("search", "--quiet", store="/tmp/" + "x" * 300), 2, "cannot write under"),
    ("search, empty search-train split", _split_file([], [0, 1, 2]), 2, "the search-train split is empty"),
    ("search, split file missing", _with("search", "--quiet", search={"split_file": "/nonexistent/split.txt"}), 2,
     "split_file: /nonexistent/split.txt not found"),
    ("sweep, split file missing", _with("sweep", "--no-evaluate", search={"split_file": "/nonexistent/split.txt"}), 2,
     "search.split_file: /nonexistent/split.txt not found"),
    ("search, garbage job.yaml in the store", _garbage_job_yaml("search"), 2, "damaged job file"),
    ("sweep, garbage job.yaml in the store", _garbage_job_yaml("sweep"), 2, "damaged job file"),
    ("report -o a folder", _report_to("afolder"), 2, "is a folder"),
    ("report -o under a file", _report_to("afile/report.html"), 2, "afile"),
    ("benchmark convert of a text file", _convert_not_a_benchmark, 2, "is not a NAS-Bench-201 file"),
    ("benchmark convert -o a folder", _convert_to_folder, 2, "is a folder"),
    ("analysis restore huge --t1", lambda tmp: ["analysis", "restore", "--t1", "1000000000"], 2,
     "t1 must be in 1..100000"),
    ("analysis restore nan lr", lambda tmp: ["analysis", "restore", "--lr", "nan"], 2,
     "lr must be a finite number > 0"),
    ("job file missing", lambda tmp: ["evaluate", tmp / "nope.yaml"], 2, "job file not found"),
    ("job file is a list", _text("- a\n- b\n"), 2, "must be a YAML mapping"),
    ("job file not YAML", _text("name: a\n  bad: [\n"), 2, "not valid YAML"),
    ("--set without =", _with("sweep", "--dry-run", "--set", "search.epochs"), 2, "expected key=value"),
    ("search --redo another run_id", _with("search", "--redo", "0123456789ab"), 2,
     "--redo 0123456789ab: this search is trial"),
    ("sweep --redo unknown run_id", _with("sweep", "--no-evaluate", "--redo", "0123456789ab"), 2,
     "not a trial of this grid"),
    ("evaluate, empty store", _with("evaluate"), 2, "no readable trajectory"),
    ("evaluate, sqlite path is a folder", _sqlite_at("afolder"), 2, "is not an SQLite database"),
    ("evaluate, sqlite path is another file", _sqlite_at("afile"), 2, "is not an SQLite database"),
    ("sweep, benchmark table missing", _with("sweep", evaluate={"benchmark": "/nonexistent/nb201.parquet"}), 2,
     "evaluate.benchmark: /nonexistent/nb201.parquet not found"),
    ("job file not UTF-8", lambda tmp: (tmp / "bin.yaml").write_bytes(b"name: \xff\xfe\n") and ["evaluate", tmp / "bin.yaml"], 2,
     "cannot read the job file"),
]  # fmt: skip
if NO_CUDA:
    BAD_INPUT.append(("search.device cuda without a GPU", _with("search", "--quiet", search={"device": "cuda"}), 2,
                      "search.device: cuda, but this machine has no CUDA device"))  # fmt: skip


@pytest.mark.parametrize("case,make,code,fragment", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_one_line_exit_2(tmp_path, capsys, case, make, code, fragment):
    argv = make(tmp_path)
    before = _tree(tmp_path)
    rc, out, err = _cli(capsys, *argv)
    assert rc == code, (case, out, err)
    assert fragment in err, err
    assert err.strip().count("\n") == 0, err  # one line
    assert "Traceback" not in out + err
    after = _tree(tmp_path)
    written = {k for k in after if k not in before or after[k] != before[k]}
    assert not written, f"{case}: wrote {written}"


# ------------------------------------------------------------------------------------------
# what ML people write: 3e-4 and 1e6 are numbers, in files and in --set


def test_float_literals_in_files_and_set(tmp_path, capsys):
    job = tmp_path / "j.yaml"
    job.write_text(
        "name: j\nsearch: {dataset: fake, weights: {lr: 1e-2, lr_min: 1e-3}, alpha: {lr: 3e-4}}\n"
    )
    spec = load_spec(job, ["search.weights.grad_clip=1e1", "estimate.gpu_seconds_per_epoch=2.5E2"])
    cfg = search_config(spec)
    assert (cfg.weights.lr, cfg.weights.lr_min, cfg.alpha.lr, cfg.weights.grad_clip) == (
        0.01,
        0.001,
        3e-4,
        10.0,
    )
    assert spec.estimate.gpu_seconds_per_epoch == 250.0
    # the same search written the old way keeps its run_id
    old = tmp_path / "old.yaml"
    old.write_text(
        "name: j\nsearch: {dataset: fake, weights: {lr: 0.01, lr_min: 0.001}, alpha: {lr: 3.0e-4}}\n"
    )
    assert run_id(search_config(load_spec(old, ["search.weights.grad_clip=10.0"]))) == run_id(cfg)
    rc, out, err = _cli(capsys, "sweep", job, "--dry-run", "--set", "search.alpha.lr=1e-3")
    assert rc == 0, err
    # an integer key written as a float literal: 1e3 is 1000; 1.5e0 is refused
    assert search_config(load_spec(job, ["search.epochs=1e3"])).epochs == 1000
    rc, _, err = _cli(capsys, "sweep", job, "--dry-run", "--set", "search.epochs=1.5e0")
    assert rc == 2 and "search.epochs: expected an integer, got 1.5" in err


def test_analysis_restore_reports_an_order_never_restored(capsys):
    rc, out, _ = _cli(capsys, "analysis", "restore", "--lr", "0.001", "1000")
    assert rc == 0
    assert "| 34" in out and "not restored within 10000 steps" in out


# ------------------------------------------------------------------------------------------
# damaged stores: built from one real tiny search, then damaged per case


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    """A completed 2-epoch search (its store, job file, run_id), made once for the module."""
    tmp = tmp_path_factory.mktemp("base")
    job = _job(tmp)
    assert cli.main(["search", str(job), "--quiet"]) == 0
    return tmp, run_id(search_config(load_spec(job)))


def _copy(base_store, tmp_path) -> tuple[Path, str, dict[str, Path]]:
    src, rid = base_store
    shutil.copytree(src / "store", tmp_path / "store")
    job = _job(tmp_path)
    paths = {
        k: Path(v) for k, v in stored.trial_paths(str(tmp_path / "store" / "tiny"), rid).items()
    }
    return job, rid, paths


def _set_status(paths, **changes):
    row = pq.read_table(paths["status"]).to_pylist()[0]
    row.update(changes)
    stored.write_status(str(paths["status"].parents[2]), row["run_id"], row)


def _set_file_run_id(path: Path, rid: str) -> None:
    """Rewrite a trajectory file's `ray_nas.run_id` metadata (a file that names another trial)."""
    t = pq.read_table(path)
    meta = {**(t.schema.metadata or {}), b"ray_nas.run_id": rid.encode()}
    pq.write_table(t.replace_schema_metadata(meta), path)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_last_epoch(path: Path) -> None:
    t = pq.read_table(path)
    pq.write_table(t.filter(pq.read_table(path)["epoch"].to_numpy() < 2), path)


DAMAGE = {  # name -> (damage(paths), command, exit code, message fragment)
    "completed, epochs file deleted": (lambda p: p["epochs"].unlink(), "search", 2, "epochs file is missing (intact: alphas, checkpoint)"),
    "completed, alphas file deleted": (lambda p: p["alphas"].unlink(), "search", 2, "alphas file is missing"),
    "completed, alphas truncated": (lambda p: _truncate(p["alphas"]), "search", 2, "its trajectory is unreadable"),
    "completed, epochs shorter than its status": (lambda p: _drop_last_epoch(p["epochs"]), "search", 2, "its trajectory is unreadable"),
    "completed, both files one epoch short": (lambda p: (_drop_last_epoch(p["epochs"]), _drop_last_epoch(p["alphas"])), "search", 2,
                                              "marked completed at epoch 2 but its files end at epoch 1"),
    "running, epochs deleted, checkpoint intact": (lambda p: (_set_status(p, status="running"), p["epochs"].unlink()), "search", 2,
                                                   "epochs file is missing"),
    "sweep over a completed trial with its alphas deleted": (lambda p: p["alphas"].unlink(), "sweep", 2, "alphas file is missing"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_store_is_refused_untouched(base_store, tmp_path, capsys, case):
    damage, command, code, fragment = DAMAGE[case]
    job, rid, paths = _copy(base_store, tmp_path)
    damage(paths)
    before = _tree(tmp_path / "store")
    extra = ["--quiet"] if command == "search" else ["--no-evaluate"]
    rc, out, err = _cli(capsys, command, job, *extra)
    assert rc == code, (out, err)
    assert fragment in err and f"--redo {rid}" in err and "nothing was changed" in err, err
    assert err.strip().count("\n") == 0
    assert _tree(tmp_path / "store") == before  # byte for byte


def test_resume_with_missing_file_then_redo(base_store, tmp_path, capsys):
    """The issue's data-loss case: epochs file gone, alphas and checkpoint intact. The rerun
    refuses and touches nothing; `--redo` keeps the survivors byte for byte and ends whole."""
    job, rid, paths = _copy(base_store, tmp_path)
    ref_epochs = pd.read_parquet(paths["epochs"])
    ref_alphas = pd.read_parquet(paths["alphas"])
    _set_status(paths, status="running", epochs_done=1)
    paths["epochs"].unlink()
    survivors = {k: paths[k].read_bytes() for k in ("alphas", "checkpoint")}
    rc, _, err = _cli(capsys, "search", job, "--quiet")
    assert rc == 2 and "epochs file is missing" in err
    assert {k: paths[k].read_bytes() for k in survivors} == survivors
    rc, out, err = _cli(capsys, "search", job, "--quiet", "--redo")
    assert rc == 0, err
    redo = next((tmp_path / "store" / "tiny" / "redo").iterdir())
    assert (redo / "alphas-part-0.parquet").read_bytes() == survivors["alphas"]
    assert (redo / f"checkpoint-{rid}.pt").read_bytes() == survivors["checkpoint"]
    # the trial ran again from scratch: complete and whole (the same as before, seeded)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["alphas"]), ref_alphas)
    ep = pd.read_parquet(paths["epochs"])
    pd.testing.assert_frame_equal(ep.drop(columns="seconds"), ref_epochs.drop(columns="seconds"))
    assert pq.read_table(paths["status"]).to_pylist()[0]["status"] == "completed"


def test_unreadable_checkpoint_restarts_keeping_recorded_epochs(base_store, tmp_path, capsys):
    job, rid, paths = _copy(base_store, tmp_path)
    ref_alphas = pd.read_parquet(paths["alphas"])
    _set_status(paths, status="running", epochs_done=1)
    _truncate(paths["checkpoint"])
    recorded = {k: paths[k].read_bytes() for k in ("epochs", "alphas")}
    rc, out, err = _cli(capsys, "search", job, "--quiet")
    assert rc == 0, err
    assert "unreadable" in out and "restarting from scratch" in out
    redo = next((tmp_path / "store" / "tiny" / "redo").iterdir())
    assert (redo / "epochs-part-0.parquet").read_bytes() == recorded["epochs"]
    assert (redo / "alphas-part-0.parquet").read_bytes() == recorded["alphas"]
    pd.testing.assert_frame_equal(pd.read_parquet(paths["alphas"]), ref_alphas)
    assert pq.read_table(paths["status"]).to_pylist()[0]["status"] == "completed"


def test_damaged_status_file_resumes_from_the_checkpoint(base_store, tmp_path, capsys):
    job, rid, paths = _copy(base_store, tmp_path)
    kept = {k: paths[k].read_bytes() for k in ("epochs", "alphas", "checkpoint")}
    _truncate(paths["status"])
    rc, out, err = _cli(capsys, "search", job, "--quiet")
    assert rc == 0, err
    assert "resuming from the checkpoint of epoch 2" in out
    assert {k: paths[k].read_bytes() for k in kept} == kept
    assert pq.read_table(paths["status"]).to_pylist()[0]["status"] == "completed"


def test_evaluate_with_unreachable_tracking_writes_nothing(base_store, tmp_path, capsys):
    job, rid, paths = _copy(base_store, tmp_path)
    before = _tree(tmp_path / "store")
    rc, _, err = _cli(capsys, "evaluate", job, "--set", "tracking_uri=http://127.0.0.1:9")
    assert rc == 2 and "MLflow server not reachable" in err and err.count("\n") == 1
    assert _tree(tmp_path / "store") == before  # no selections.parquet, no trials.parquet rewrite


def test_search_into_a_sweeps_store_with_other_settings_is_refused(base_store, tmp_path, capsys):
    job, rid, paths = _copy(base_store, tmp_path)  # job.yaml written by the first search
    before = _tree(tmp_path / "store")
    rc, _, err = _cli(capsys, "search", job, "--quiet", "--set", "search.epochs=3")
    assert rc == 2 and "already holds job 'tiny' with a different `search`" in err
    assert _tree(tmp_path / "store") == before


def test_evaluate_names_the_redo_for_a_damaged_trial(base_store, tmp_path, capsys):
    job, rid, paths = _copy(base_store, tmp_path)
    other = tmp_path / "store" / "tiny"
    for table in ("epochs", "alphas"):  # a second, whole trial under another run_id
        shutil.copytree(other / table / f"run_id={rid}", other / table / "run_id=feedfeedfeed")
        _set_file_run_id(other / table / "run_id=feedfeedfeed" / "part-0.parquet", "feedfeedfeed")
    paths["alphas"].unlink()
    rc, out, err = _cli(capsys, "evaluate", job, "--set", "evaluate.retrain=null")
    assert rc == 0, err
    assert f"skipped trial {rid}: missing alphas file" in out and f"--redo {rid}" in out


# ------------------------------------------------------------------------------------------
# a diverging search: its own status, the epoch, the last finite epoch kept, criteria ignore it


def test_diverging_search_stops_as_diverged(tmp_path, capsys):
    job = _job(tmp_path, name="div", search={"epochs": 2, "weights": {"lr": 1e6, "grad_clip": 0}})
    rc, out, err = _cli(capsys, "search", job, "--quiet")
    assert rc == 0, err
    rid = run_id(search_config(load_spec(job)))
    st = pq.read_table(tmp_path / f"store/div/status/run_id={rid}/part-0.parquet").to_pylist()[0]
    assert st["status"] == "diverged", st
    k = st["diverged_epoch"]
    assert k >= 1 and st["epochs_done"] == k - 1 and "non-finite" in st["stop_reason"]
    ep = pd.read_parquet(tmp_path / f"store/div/epochs/run_id={rid}")
    al = pd.read_parquet(tmp_path / f"store/div/alphas/run_id={rid}")
    assert ep.epoch.tolist() == list(range(k)) and np.isfinite(al[["alpha", "weight"]]).all().all()
    assert np.isfinite(ep.valid_loss).all()
    # a rerun does not run it again; evaluate shows it
    rc, out, _ = _cli(capsys, "search", job, "--quiet")
    assert (
        rc == 0 and f"already ended under {tmp_path}/store/div: diverged at epoch {k} of 2" in out
    )
    rc, out, err = _cli(capsys, "evaluate", job, "--set", "evaluate.retrain=null")
    assert rc == 0, err
    assert "diverged: 1 trials" in out and rid in out
    sel = pd.read_parquet(tmp_path / "store/div/selections.parquet")
    assert (sel.stop_epoch <= k - 1).all()


def test_criteria_ignore_non_finite_epochs():
    from ray_nas import criteria as crit
    from ray_nas.spaces.nb201 import OPS

    rng = np.random.default_rng(0)
    alpha = rng.normal(size=(6, 6, len(OPS))).cumsum(axis=0)
    good = crit.Trajectory.from_alpha(alpha[:4], valid_acc=np.arange(4.0))
    alpha[4:] = np.nan  # epochs 4 and 5 diverged
    bad = crit.Trajectory.from_alpha(alpha, valid_acc=np.array([0, 1, 2, 3, math.nan, math.nan]))
    assert bad.finite_prefix().last_epoch == 3
    for spec in crit.default_criteria():
        r_bad, r_good = spec.apply(bad), spec.apply(good)
        assert (r_bad.epoch, r_bad.arch, r_bad.fired) == (
            r_good.epoch,
            r_good.arch,
            r_good.fired,
        ), spec.label


# ------------------------------------------------------------------------------------------
# resources no node offers (a fixed local cluster): one line, exit 2


@pytest.mark.ray
def test_resources_no_node_offers_fail_fast(ray_session, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    job = _job(tmp_path, resources={"cpu": 1, "gpu": 4})
    rc, out, err = _cli(capsys, "sweep", job, "--no-evaluate")
    assert rc == 2, (out, err)
    assert "no node of the Ray cluster offers that" in err and "gpu: 4" in err
    assert not (tmp_path / "store" / "tiny" / "status").exists()


# ------------------------------------------------------------------------------------------
# end to end: the installed entry point shows no Python traceback


SUBPROCESS_CASES = ["nan weights.lr", "duplicate YAML key", "evaluate, unreachable tracking server",
                    "search, store is a file", "analysis restore huge --t1"]  # fmt: skip


def test_no_traceback_in_a_subprocess(tmp_path):
    cases = {c[0]: c for c in BAD_INPUT}
    for name in SUBPROCESS_CASES:
        _, make, code, fragment = cases[name]
        tmp = tmp_path / name.replace(" ", "_").replace(",", "")
        tmp.mkdir()
        argv = [str(a) for a in make(tmp)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        r = subprocess.run([sys.executable, "-m", "ray_nas.cli", *argv], capture_output=True, text=True,
                           timeout=300, env=env)  # fmt: skip
        assert r.returncode == code, (name, r.stderr)
        assert "Traceback" not in r.stdout + r.stderr and fragment in r.stderr, (name, r.stderr)
        assert r.stderr.strip().count("\n") == 0, (name, r.stderr)


# ------------------------------------------------------------------------------------------
# two evaluates creating the same MLflow experiment at once


def test_experiment_created_meanwhile_by_another_evaluate(tmp_path):
    """The other process creates the experiment between our lookup and our create: ours uses it.
    (A real MLflow on SQLite; only the first lookup answers as it did before the other create.)"""
    from ray_nas import tracking

    client = tracking._client(f"sqlite:///{tmp_path}/m.db")
    theirs = client.create_experiment("shared")

    class LookupBeforeTheOtherCreate:
        def __init__(self, real):
            self.real, self.first = real, True

        def get_experiment_by_name(self, name):
            if self.first:
                self.first = False
                return None
            return self.real.get_experiment_by_name(name)

        def __getattr__(self, name):
            return getattr(self.real, name)

    assert tracking._experiment(LookupBeforeTheOtherCreate(client), "shared") == theirs
