"""What was added since the first robustness pass, probed the same way: no hang, no lost data, no
silently wrong result. One table-driven test per kind; every damaged store is built here from a
real tiny search. The cases tried, and what they did before and after, are in docs/robustness.md.
"""

from __future__ import annotations

import http.server
import math
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from ray_nas import cli
from ray_nas.config import SpecError, load_spec
from tests.test_robustness import (
    _cli,
    _copy,
    _job,
    _set_file_run_id,
    _set_status,
    _tree,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A completed 2-epoch search (its store, job file, run_id), made once for the module."""
    from ray_nas.config import run_id, search_config

    tmp = tmp_path_factory.mktemp("base")
    job = _job(tmp)
    assert cli.main(["search", str(job), "--quiet"]) == 0
    return tmp, run_id(search_config(load_spec(job)))


def _bounded(fn, seconds: float):
    """fn() in a thread; the test fails (instead of hanging) when it has not returned in time."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds}s: a hang"
    if "error" in box:
        raise box["error"]
    return box.get("value"), time.monotonic() - t0


# ------------------------------------------------------------------------------------------
# hangs: a RAY_ADDRESS where something other than Ray listens fails within seconds, one line


class _Listener:
    """127.0.0.1:<port> that accepts connections (the kernel's backlog) and never answers."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc):
        self.sock.close()


class _Http:
    """An HTTP/1 server on 127.0.0.1:<port> (404 for every path): a web service, not Ray."""

    def __enter__(self):
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), http.server.BaseHTTPRequestHandler
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


NOT_RAY = [  # (case, server, RAY_ADDRESS template, message fragment)
    ("listener that never answers, host:port", _Listener, "{}", "nothing answered within 2s"),
    ("listener that never answers, ray://", _Listener, "ray://{}", "nothing answered within 2s"),
    ("listener that never answers, http://", _Listener, "http://{}", "nothing answered within 2s"),
    ("HTTP service, host:port", _Http, "{}", "an HTTP server answered"),
    ("HTTP service, http:// (no /api/version)", _Http, "http://{}", "answered HTTP"),
]  # fmt: skip


@pytest.mark.parametrize("case,server,template,fragment", NOT_RAY, ids=[c[0] for c in NOT_RAY])
def test_ray_address_that_is_not_ray_fails_within_seconds(monkeypatch, case, server, template, fragment):  # fmt: skip
    from ray_nas.search.sweep import check_ray_address

    with server() as hostport:
        monkeypatch.setenv("RAY_ADDRESS", template.format(hostport))
        with pytest.raises(SpecError, match="not a Ray cluster") as e:
            _bounded(lambda: check_ray_address(timeout=2), 20)
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_sweep_with_a_ray_address_that_is_not_ray_exits_2_in_seconds(tmp_path):
    """End to end, the installed CLI in its own process (ray.init ignored SIGTERM for minutes)."""
    job = _job(tmp_path)
    with _Listener() as hostport:
        env = {**os.environ, "RAY_ADDRESS": hostport, "PYTHONPATH": str(REPO)}
        t0 = time.monotonic()
        try:
            r = subprocess.run(
                [sys.executable, "-m", "ray_nas.cli", "sweep", str(job), "--no-evaluate"],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail("ray-nas sweep with a RAY_ADDRESS that is not Ray still runs after 120 s")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "not a Ray cluster (nothing answered within 5s)" in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert not (tmp_path / "store").exists()
    print(f"refused in {time.monotonic() - t0:.1f}s")


@pytest.mark.ray
def test_a_real_ray_address_passes_the_check(ray_session, monkeypatch):
    from ray_nas.search.sweep import check_ray_address

    monkeypatch.setenv("RAY_ADDRESS", ray_session.get_runtime_context().gcs_address)
    _bounded(lambda: check_ray_address(timeout=5), 20)


# ------------------------------------------------------------------------------------------
# hangs: retraining resources no node offers, refused before any trial (fixed local cluster)

RETRAIN_INFEASIBLE = [  # (case, evaluate.retrain, --no-evaluate?, exit code, fragment)
    ("retrain cpu 64 on a 2-CPU cluster", {"cpu": 64}, False, 2, "evaluate.retrain {cpu: 64, gpu: 0}"),
    ("the README's retrain {gpu: 1, cpu: 4}", {"gpu": 1, "cpu": 4}, False, 2, "evaluate.retrain {cpu: 4, gpu: 1}"),
    ("retrain gpu 2 (the cluster has 1)", {"gpu": 2}, False, 2, "(the largest: 2 CPUs, 1 GPUs)"),
]  # fmt: skip


@pytest.mark.ray
@pytest.mark.parametrize("case,retrain,no_eval,code,fragment", RETRAIN_INFEASIBLE,
                         ids=[c[0] for c in RETRAIN_INFEASIBLE])  # fmt: skip
def test_infeasible_retraining_is_refused_before_any_trial(ray_session, tmp_path, capsys, monkeypatch,
                                                           case, retrain, no_eval, code, fragment):  # fmt: skip
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    job = _job(tmp_path, evaluate={"retrain": retrain})
    argv = ["sweep", job, *(["--no-evaluate"] if no_eval else [])]
    (rc, out, err), _ = _bounded(lambda: _cli(capsys, *argv), 120)
    assert rc == code, (out, err)
    assert fragment in err and "no node of the Ray cluster offers that" in err
    assert "--no-evaluate" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "store" / "tiny" / "status").exists()  # no trial ran


# ------------------------------------------------------------------------------------------
# the store's identity: job.yaml claimed before the first write, damaged named as damaged


def _write_job_yaml(text: str):
    def damage(store_dir: Path) -> None:
        store_dir.mkdir(parents=True, exist_ok=True)
        (store_dir / "job.yaml").write_text(text)

    return damage


def _cut_job_yaml(keep: float):
    """The job.yaml this version writes (of the job itself), cut to `keep` of its bytes."""

    def damage(store_dir: Path) -> None:
        from ray_nas.search.integrity import job_yaml_bytes

        data = job_yaml_bytes(load_spec(str(store_dir.parents[1] / "tiny.yaml")))
        store_dir.mkdir(parents=True, exist_ok=True)
        (store_dir / "job.yaml").write_bytes(data[: int(len(data) * keep)])

    return damage


def _edited_job_yaml(store_dir: Path) -> None:
    from ray_nas.search.integrity import job_yaml_bytes

    data = job_yaml_bytes(load_spec(str(store_dir.parents[1] / "tiny.yaml")))
    store_dir.mkdir(parents=True, exist_ok=True)
    (store_dir / "job.yaml").write_bytes(data.replace(b"batch_size: 16", b"batch_size: 17"))


JOB_YAML = [  # (case, damage(store/tiny), fragment)
    ("empty job.yaml", _write_job_yaml(""), "damaged job file (empty)"),
    ("whitespace job.yaml", _write_job_yaml("\n  \n"), "damaged job file (empty)"),
    ("job.yaml cut to its first line", _cut_job_yaml(0.05), "does not match its checksum"),
    ("job.yaml cut in half", _cut_job_yaml(0.5), "does not match its checksum"),
    ("job.yaml one byte short", _cut_job_yaml(0.999), "does not match its checksum"),
    ("job.yaml edited under its checksum", _edited_job_yaml, "does not match its checksum"),
    ("job.yaml without a checksum, cut before `search`", _write_job_yaml("name: tiny\ngrid: {}\n"), "no `search` in it"),
    ("job.yaml a list", _write_job_yaml("- a\n- b\n"), "not a job mapping"),
    ("job.yaml binary", lambda d: (d.mkdir(parents=True), (d / "job.yaml").write_bytes(b"\xff\xfe\x00"))[0], "not text"),
    ("job.yaml another job (other grid)", _write_job_yaml("name: tiny\ngrid: {seed: [5]}\nsearch: {}\n"), "with a different `grid`"),
]  # fmt: skip


@pytest.mark.parametrize("case,damage,fragment", JOB_YAML, ids=[c[0] for c in JOB_YAML])
def test_damaged_job_yaml_is_named_as_damaged(tmp_path, capsys, case, damage, fragment):
    job = _job(tmp_path)
    damage(tmp_path / "store" / "tiny")
    before = _tree(tmp_path)
    rc, out, err = _cli(capsys, "search", job, "--quiet")
    assert rc == 2, (case, out, err)
    assert fragment in err and err.strip().count("\n") == 0, err
    if "different" not in fragment:
        assert "damaged job file" in err and "a different job" not in err
    assert _tree(tmp_path) == before


@pytest.mark.slow
def test_a_failed_first_search_still_claims_the_store(tmp_path, capsys, monkeypatch):
    """The first search dies after its first epoch; a search with other settings is then refused,
    and the first one resumes in its own store."""
    job = _job(tmp_path)
    monkeypatch.setenv("RAY_NAS_FAIL_ONCE", f"{tmp_path}:0")
    rc, out, err = _cli(capsys, "search", job, "--quiet")
    assert rc == 1 and "InjectedFailure" in err, (out, err)
    assert (tmp_path / "store" / "tiny" / "job.yaml").exists()
    rc, out, err = _cli(capsys, "search", job, "--quiet", "--set", "search.weights.lr=0.1")
    assert rc == 2 and "with a different `search`" in err, (out, err)
    rc, out, err = _cli(capsys, "search", job, "--quiet")
    assert rc == 0, err


def test_two_different_jobs_claiming_a_new_store_together(tmp_path):
    """Started together on a new store: exactly one claims it, the other is refused; never both."""
    from ray_nas.search.integrity import write_job_yaml

    job = str(_job(tmp_path))  # written once: two threads writing it would race on the file
    specs = [load_spec(job, [f"search.weights.lr={lr}"]) for lr in (0.1, 0.2)]
    for attempt in range(20):
        store_dir = tmp_path / f"store{attempt}"
        barrier, results = threading.Barrier(2), [None, None]

        def claim(i, store_dir=store_dir, barrier=barrier, results=results):
            spec = load_spec(job, [f"search.weights.lr={0.1 * (i + 1)}", f"store={store_dir}"])
            barrier.wait()
            try:
                write_job_yaml(spec)
                results[i] = "claimed"
            except SpecError as e:
                results[i] = str(e)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(r == "claimed" for r in results) == [False, True], results
        assert "with a different `search`" in next(r for r in results if r != "claimed")
    assert specs[0].name == specs[1].name


# ------------------------------------------------------------------------------------------
# each trial file checked against its trial (run_id in the metadata, checkpoint included)


def _foreign(kind: str):
    def damage(p):
        _set_file_run_id(p[kind], "feedfeedfeed")

    return damage


def _foreign_checkpoint(p):
    import torch

    state = torch.load(p["checkpoint"], weights_only=False)
    state["run_id"] = "feedfeedfeed"
    torch.save(state, p["checkpoint"])
    _set_status(p, status="running", epochs_done=state["epoch"])


MISPLACED = [  # (case, damage(paths), command, exit code, fragment)
    ("completed, another trial's epochs file", _foreign("epochs"), "search", 2, "its epochs file belongs to trial feedfeedfeed"),
    ("completed, another trial's alphas file", _foreign("alphas"), "search", 2, "its alphas file belongs to trial feedfeedfeed"),
    ("running, another trial's checkpoint", _foreign_checkpoint, "search", 2,
     "belongs to trial feedfeedfeed (the run_id saved in it): misplaced"),
    ("evaluate, another trial's alphas file", _foreign("alphas"), "evaluate", 2,
     "misplaced: its epochs file is trial {rid}'s but its alphas file is trial feedfeedfeed's"),
    ("evaluate, another trial's epochs and alphas files", lambda p: (_foreign("alphas")(p), _foreign("epochs")(p)),
     "evaluate", 2, "its files belong to trial feedfeedfeed (ray_nas.run_id in their metadata): misplaced"),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,damage,command,code,fragment", MISPLACED, ids=[c[0] for c in MISPLACED]
)
def test_a_file_of_another_trial_is_never_used(base, tmp_path, capsys, case, damage, command, code, fragment):  # fmt: skip
    job, rid, paths = _copy(base, tmp_path)
    damage(paths)
    before = _tree(tmp_path / "store")
    extra = ["--quiet"] if command == "search" else ["--set", "evaluate.retrain=null"]
    rc, out, err = _cli(capsys, command, job, *extra)
    assert rc == code, (out, err)
    assert fragment.format(rid=rid) in out + err, (out, err)
    if command == "evaluate":  # the only trial skipped: nothing to evaluate, said so
        assert f"1 trial skipped; trial {rid}:" in err and "no readable trajectory" in err
    assert _tree(tmp_path / "store") == before


# ------------------------------------------------------------------------------------------
# a completed trial whose status is lost: rebuilt from its whole files, or refused


def _drop(p, *kinds):
    for k in kinds:
        p[k].unlink()


def _cut_to_epoch_1(p):
    for k in ("epochs", "alphas"):
        t = pq.read_table(p[k])
        pq.write_table(t.filter(t["epoch"].to_numpy() <= 1), p[k])


LOST_STATUS = [  # (case, damage(paths), exit code, fragment, status after)
    ("completed, status and checkpoint deleted", lambda p: _drop(p, "status", "checkpoint"), 0,
     "status file missing; rebuilt as completed from its whole files (epochs 0..2)", "completed"),
    ("completed, status truncated, checkpoint deleted",
     lambda p: (p["status"].write_bytes(b"PAR1"), _drop(p, "checkpoint")), 0,
     "status file unreadable; rebuilt as completed", "completed"),
    ("stopped online at epoch 1 of 2, status and checkpoint deleted",
     lambda p: (_cut_to_epoch_1(p), _drop(p, "status", "checkpoint")), 2,
     "its status file is missing and it has no checkpoint", None),
    ("completed, status deleted, checkpoint and epochs file deleted",
     lambda p: _drop(p, "status", "checkpoint", "epochs"), 2, "its status file is missing", None),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,damage,code,fragment,after", LOST_STATUS, ids=[c[0] for c in LOST_STATUS]
)
def test_a_lost_status_is_rebuilt_or_refused_never_searched_over(base, tmp_path, capsys, case, damage, code, fragment, after):  # fmt: skip
    job, rid, paths = _copy(base, tmp_path)
    damage(paths)
    trajectory = {k: paths[k].read_bytes() for k in ("epochs", "alphas") if paths[k].exists()}
    before = _tree(tmp_path / "store")
    rc, out, err = _cli(capsys, "search", job, "--quiet")
    assert rc == code, (out, err)
    assert fragment in out + err, (out, err)
    for k, data in trajectory.items():  # the recorded trajectory is never searched over
        assert paths[k].read_bytes() == data, k
    if after is None:
        assert _tree(tmp_path / "store") == before
        assert "--redo" in err
        return
    assert pq.read_table(paths["status"]).to_pylist()[0]["status"] == after
    assert "trajectory already complete" in out and "nothing to do" in out
    if "unreadable" in case or "truncated" in case:
        assert list((tmp_path / "store" / "tiny" / "redo").glob(f"{rid}-*/status-part-0.parquet"))


# ------------------------------------------------------------------------------------------
# the --redo hint repeats the command as typed (its --set options too)


@pytest.mark.slow
def test_redo_hint_repeats_the_command_typed(base, tmp_path, capsys):
    src, rid = base
    other = tmp_path / "elsewhere"
    job, _, _ = _copy(base, tmp_path)  # the job file's own store: healthy
    import shutil

    shutil.copytree(src / "store", other)
    (other / "tiny" / "alphas" / f"run_id={rid}" / "part-0.parquet").unlink()
    healthy = _tree(tmp_path / "store")
    argv = ["search", str(job), "--quiet", "--set", f"store={other}", "--set", "search.epochs=2"]
    rc, out, err = _cli(capsys, *argv)
    assert rc == 2, (out, err)
    hint = err.split("Redo it with `", 1)[1].split("`", 1)[0]
    assert hint == shlex.join(["ray-nas", *argv, "--redo", rid])
    rc, out, err = _cli(capsys, *shlex.split(hint)[1:])  # run verbatim
    assert rc == 0, err
    assert _tree(tmp_path / "store") == healthy  # the job file's default store untouched
    assert list((other / "tiny" / "redo").glob(f"{rid}-*/epochs-part-0.parquet"))


# ------------------------------------------------------------------------------------------
# status words that say what happened

ENDED = [  # (status row, text)
    ({"status": "completed", "epochs_done": 3, "total_epochs": 3}, "completed (epochs 0..3)"),
    ({"status": "stopped", "epochs_done": 1, "total_epochs": 3, "stop_epoch": 1,
      "stop_reason": "ss_eq12 fired (selected epoch 1)"}, "stopped at epoch 1 of 3 by ss_eq12"),
    ({"status": "stopped", "epochs_done": 2, "total_epochs": 3, "stop_epoch": 1,
      "stop_reason": "final fired (selected epoch 1)"}, "stopped at epoch 1 of 3 by final, ran to epoch 2"),
    ({"status": "diverged", "epochs_done": 0, "total_epochs": 2, "diverged_epoch": 1,
      "stop_reason": "non-finite train_loss"}, "diverged at epoch 1 of 2 (non-finite train_loss), epochs 0..0 kept"),
    ({"status": "diverged", "epochs_done": 0, "total_epochs": 2, "diverged_epoch": math.nan,
      "stop_reason": None}, "diverged at an unknown epoch of 2 (a non-finite value), epochs 0..0 kept"),
]  # fmt: skip


@pytest.mark.parametrize("row,text", ENDED, ids=[t for _, t in ENDED])
def test_status_words(row, text):
    from ray_nas.search.trial import ended_text

    assert ended_text(row) == text


def test_a_stopped_trial_says_so_on_rerun(base, tmp_path, capsys):
    job, rid, paths = _copy(base, tmp_path)
    _set_status(paths, status="stopped", stop_epoch=1, epochs_done=2,
                stop_reason="ss_eq12 fired (selected epoch 1)")  # fmt: skip
    rc, out, err = _cli(capsys, "search", job, "--quiet")
    assert rc == 0, err
    assert "already ended under" in out and "stopped at epoch 1 of 2 by ss_eq12" in out
    assert "trajectory already complete" not in out


# ------------------------------------------------------------------------------------------
# compare lists skipped and diverged trials as evaluate does

COMPARE = [  # (case, damage(job folder, rid, paths), note fragment)
    ("a trial with its alphas deleted", lambda d, rid, p: p["alphas"].unlink(), "skipped trial {rid}: missing alphas file"),
    ("a trial with another trial's alphas", lambda d, rid, p: _set_file_run_id(p["alphas"], "feedfeedfeed"),
     "skipped trial {rid}: misplaced: its epochs file is trial {rid}'s but its alphas file is trial feedfeedfeed's"),
    ("a diverged trial", lambda d, rid, p: _set_status(p, status="diverged", diverged_epoch=3,
                                                         stop_reason="non-finite train_loss"),
     "{rid}: non-finite train_loss; kept epochs 0..2"),
]  # fmt: skip


@pytest.mark.parametrize("case,damage,fragment", COMPARE, ids=[c[0] for c in COMPARE])
def test_compare_lists_skipped_and_diverged_trials(base, tmp_path, case, damage, fragment):
    from ray_nas.offline import compare
    from ray_nas.offline.results import JobResults

    job, rid, paths = _copy(base, tmp_path)
    d = tmp_path / "store" / "tiny"
    good = "0123abcd0123"
    for table in ("epochs", "alphas"):  # a second, whole trial (its files name it)
        (d / table / f"run_id={good}").mkdir()
        data = paths[table].read_bytes()
        (d / table / f"run_id={good}" / "part-0.parquet").write_bytes(data)
        _set_file_run_id(d / table / f"run_id={good}" / "part-0.parquet", good)
    damage(d, rid, paths)
    spec = load_spec(str(job), ["evaluate.retrain=null"])
    result = compare.compare_jobs([JobResults(spec)])
    text = compare.format_comparison(result)
    assert f"note: tiny: {fragment.format(rid=rid)}" in text, text


# ------------------------------------------------------------------------------------------
# MLflow: two stores of one job name are two parent runs, each with its own trials


@pytest.mark.slow
def test_two_stores_of_one_job_name_are_kept_apart_in_mlflow(base, tmp_path, capsys):
    import shutil

    from mlflow.tracking import MlflowClient

    job, rid, _ = _copy(base, tmp_path)
    shutil.copytree(tmp_path / "store", tmp_path / "quick")
    for extra in ([], ["--set", f"store={tmp_path / 'quick'}"], []):  # the first again: idempotent
        rc, out, err = _cli(capsys, "evaluate", job, "--set", "evaluate.retrain=null", *extra)
        assert rc == 0, err
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    parents = {
        r.data.tags["ray_nas.store"]: r for r in runs if r.data.tags["ray_nas.key"] == "job:tiny"
    }
    assert sorted(parents) == sorted(
        [str(tmp_path / "store" / "tiny"), str(tmp_path / "quick" / "tiny")]
    )
    for p in parents.values():
        kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
        assert [k.data.tags["ray_nas.key"] for k in kids] == [f"trial:{rid}"]
    assert len(runs) == 4


# ------------------------------------------------------------------------------------------
# the NB101 converter validates each record and counts what it rejects


def _bad_records(kind: str):
    from tests.test_nb101_table import CELLS, RUNS, _metrics, _row

    matrix, ops = CELLS["C"]
    params, runs = RUNS["C"]
    if kind == "hash of another cell":
        row = _row(*CELLS["A"], 108, _metrics(params, 0.8, 0.8, 1.0, 108))
        other = _row(matrix, ops, 108, _metrics(params, 0.8, 0.8, 1.0, 108))
        import json

        a, b = json.loads(row), json.loads(other)
        a[0] = b[0]
        return json.dumps(a).encode()
    if kind == "disconnected cell":
        cut = [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
        import json

        r = json.loads(_row(matrix, ops, 108, _metrics(params, 0.8, 0.8, 1.0, 108)))
        from ray_nas.spaces import nb101

        r[1], r[2] = 108, nb101.to_adjacency_string(cut)
        return json.dumps(r).encode()
    acc = {"accuracy 500%": 5.0, "accuracy -50%": -0.5, "accuracy NaN": math.nan}[kind]
    return _row(matrix, ops, 108, _metrics(params, acc, 0.8, 1.0, 108))


NB101 = [
    "hash of another cell",
    "disconnected cell",
    "accuracy 500%",
    "accuracy -50%",
    "accuracy NaN",
]


@pytest.mark.parametrize("kind", NB101)
def test_nb101_converter_rejects_wrong_records(tmp_path, kind):
    from tensorboardX.record_writer import RecordWriter

    from ray_nas.tables import nb101 as table
    from tests.test_nb101_table import CELLS, RUNS, _metrics, _row

    path = tmp_path / "mixed.tfrecord"
    w = RecordWriter(str(path))
    for run in range(3):
        for key in ("A", "B"):
            params, runs = RUNS[key]
            w.write(_row(*CELLS[key], 108, _metrics(params, *runs[run], 108)))
    w.write(_bad_records(kind))
    w.close()
    lines: list[str] = []
    df = table.convert(path, tmp_path / "t.parquet", progress=lines.append)
    assert len(df) == 2 and df["runs"].tolist() == [3, 3]
    assert df[["valid_accuracy", "test_accuracy"]].apply(lambda c: c.between(0, 100)).all().all()
    warn = [ln for ln in lines if "rejected" in ln]
    assert len(warn) == 1 and "1 records rejected" in warn[0], lines
    assert pd.read_parquet(tmp_path / "t.parquet")["hash"].tolist() == df["hash"].tolist()


# ------------------------------------------------------------------------------------------
# a user criterion that calls sys.exit or raises KeyboardInterrupt: one line, exit 2

CRITERION_EXITS = [("sys.exit(3)", "exits", "called sys.exit(3)"),
                   ("KeyboardInterrupt", "interrupts", "was interrupted (KeyboardInterrupt)")]  # fmt: skip


@pytest.mark.parametrize("case,fn,fragment", CRITERION_EXITS, ids=[c[0] for c in CRITERION_EXITS])
def test_a_criterion_that_exits_is_one_line(base, tmp_path, capsys, case, fn, fragment):
    job, _, _ = _copy(base, tmp_path)
    before = _tree(tmp_path / "store")
    rc, out, err = _cli(capsys, "evaluate", job, "--set", "evaluate.retrain=null",
                        "--set", f"criteria=[tests.bad_stops:{fn}]")  # fmt: skip
    assert rc == 2, (out, err)
    assert fragment in err and "tests.bad_stops" in err and err.strip().count("\n") == 0
    # every file as it was, none added; the compacted copy (a cache of the trajectories just read,
    # written once the trial files are 2 s old, whatever the criteria then do) may be new
    after = {k: v for k, v in _tree(tmp_path / "store").items() if "/compact/" not in k}
    assert after == before


def test_job_yaml_is_yaml_with_a_checksum_line(tmp_path):
    from ray_nas.search.integrity import job_yaml_bytes

    text = job_yaml_bytes(load_spec(str(_job(tmp_path)))).decode()
    assert text.startswith("# ray-nas job.yaml sha256=")
    assert yaml.safe_load(text)["name"] == "tiny"
