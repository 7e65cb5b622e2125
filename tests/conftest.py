"""Shared fixtures: tiny configs, a job file writer, and one local Ray for the `ray` tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# One intra-op thread: tests share 2 cores with Ray workers and subprocesses, and OpenMP threads
# that spin on an oversubscribed machine make tiny models 10x slower. The variable carries this to
# the `ray-nas` subprocesses the tests start (a 5-epoch tiny search: 32 s with it, 324 s without,
# at load average 17).
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)

TINY_SEARCH = {
    "dataset": "fake",
    "channels": 4,
    "cells": 1,
    "epochs": 3,
    "batch_size": 16,
    "steps_per_epoch": 3,
    "hessian_every": 0,
    "device": "cpu",
}


@pytest.fixture
def write_job(tmp_path):
    """write_job(**top-level keys) -> path of a job YAML whose store is inside tmp_path."""

    def _write(name: str = "tiny", search: dict | None = None, **top) -> Path:
        job = {"name": name, "store": str(tmp_path / "store"), "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
               "search": {**TINY_SEARCH, **(search or {})}, **top}  # fmt: skip
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(job, sort_keys=False))
        return path

    return _write


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs, a logical GPU) shared by every `ray`-marked test: always a new one
    (address="local"), never a cluster something else started on this machine."""
    import ray
    import ray._private.worker as ray_worker

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
                 log_to_driver=False)  # fmt: skip
    # Ray's driver prints the errors it hears of ("(raylet) A worker died ...", after the tests
    # that kill trials) from a background thread into whatever sys.stdout is at that moment: a
    # later test's captured output, which that test then parses. Send them to the real stderr.
    ray_worker.print_to_stdstream = lambda data, ignore_prefix: ray_worker.print_worker_logs(
        data, sys.__stderr__, ignore_prefix
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 (a free port, SQLite), shared by the tests that need
    one (each logs to experiments of its own names): its port. Stopped after the session."""
    import http.client
    import socket
    import time

    root = tmp_path_factory.mktemp("mlflow")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
           "--default-artifact-root", str(root / "artifacts"), "--workers", "1"]  # fmt: skip
    # no job runner: MLflow 3's server otherwise starts 8 more processes (a job runner and its huey
    # consumers, ~240 MB each) for GenAI jobs that tracking never uses
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=env)  # fmt: skip
    deadline = time.time() + 180
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None and time.time() < deadline, (root / "server.log").read_text()
        time.sleep(0.5)
    yield port
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's `chromium`, installed with apt-get when missing (needs root); skip if that fails."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    )
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("chromium is missing and cannot be installed here (needs apt-get as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=1200)
    except (subprocess.SubprocessError, OSError) as e:
        pytest.skip(
            f"chromium is missing and `apt-get install -y chromium` failed: {type(e).__name__}"
        )
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get installed chromium but no `chromium` is on PATH")
    return found


def render(chromium: str, page: Path, tmp: Path, size=(1440, 2200)) -> tuple[Path, list[str]]:
    """Screenshot `page`; returns (png, console lines). Chromium logs every console message and
    uncaught exception to stderr as `...:CONSOLE(line)] "text"` with --enable-logging=stderr."""
    png = tmp / f"{page.stem}.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", f"--window-size={size[0]},{size[1]}",
           "--hide-scrollbars", f"--screenshot={png}", "--enable-logging=stderr", "--v=0", page.as_uri()]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.exists(), f"no screenshot; chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    return png, console


def sigkill_after_epochs(cmd: list[str], epochs_file: str, rows: int = 3, env=None) -> int:
    """Start `cmd` (a search) in its own session, SIGKILL it once `epochs_file` holds `rows` epochs
    (so the checkpoint of epoch rows-2 is on the store), and return how many epochs it had written.
    Row counts come from one open handle: the file is being replaced while we poll."""
    import signal
    import time

    import pyarrow.parquet as pq

    def written() -> int:
        return pq.ParquetFile(epochs_file).metadata.num_rows if os.path.exists(epochs_file) else 0

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and written() < rows:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return written()


def forked(target, *args, output: str | None = None, cwd=None) -> int:
    """Fork this process; the child runs target(*args) (torch and ray_nas already imported: no
    interpreter start-up, 2-4 s a process here, and no global state of its own left behind in
    pytest) in `cwd`, its stdout and stderr written to `output`.out and `output`.err (None:
    discarded), and leaves through os._exit, running none of pytest's teardown: exit status
    target's int (None: 0), a SystemExit's code, 1 on an exception (its traceback on stderr).
    Returns the child's pid; the caller waits for it (os.waitpid)."""
    import io
    import traceback

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            if cwd is not None:
                os.chdir(cwd)
            if output is None:
                sys.stdout = sys.stderr = io.StringIO()
            else:
                sys.stdout, sys.stderr = open(f"{output}.out", "w"), open(f"{output}.err", "w")
            try:
                result = target(*args)
                code = result if isinstance(result, int) else 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 - the parent reads it from stderr
                traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    return pid


def call_forked(target, *args, cwd=None) -> tuple[int, str, str]:
    """target(*args) in a forked child of this process (see `forked`): (its exit status, its
    stdout, its stderr)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        output = f"{folder}/child"
        pid = forked(target, *args, output=output, cwd=cwd)
        _, status = os.waitpid(pid, 0)
        out, err = (Path(f"{output}.{ext}") for ext in ("out", "err"))
        return (os.waitstatus_to_exitcode(status), out.read_text() if out.exists() else "",
                err.read_text() if err.exists() else "")  # fmt: skip


def _run_script(script: str, argv: list[str]) -> None:
    import runpy

    sys.argv = [script, *argv]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python SCRIPT` does
    runpy.run_path(script, run_name="__main__")


def run_benchmark(script: str, *argv: str) -> str:
    """stdout of `python benchmarks/SCRIPT ARGV...` run from the repository, the script run as
    __main__ in a forked child of this process (no interpreter start-up); fails on a non-zero
    exit with its stderr. A script run in a fresh interpreter: tests/test_benchmarks_run.py."""
    rc, out, err = call_forked(_run_script, f"benchmarks/{script}", list(argv), cwd=REPO)
    assert rc == 0, f"benchmarks/{script} exited {rc}: {err[-3000:]}"
    return out


def sigkill_forked_search_after_epochs(job, epochs_file: str, rows: int = 3) -> int:
    """`ray-nas search JOB --quiet` (`ray_nas.cli.main`) in a forked child of this process,
    SIGKILLed from here once `epochs_file` holds `rows` epochs, as sigkill_after_epochs does
    with a fresh interpreter; returns how many epochs it had written."""
    import signal
    import time

    import pyarrow.parquet as pq

    from ray_nas.cli import main

    def written() -> int:
        return pq.ParquetFile(epochs_file).metadata.num_rows if os.path.exists(epochs_file) else 0

    pid = forked(main, ["search", str(job), "--quiet"])
    deadline, ended = time.time() + 240, None
    while time.time() < deadline and written() < rows:
        ended = os.waitpid(pid, os.WNOHANG)[0] == pid
        if ended:  # finished or crashed before the kill: the caller's row check says which
            break
        time.sleep(0.02)
    if not ended:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return written()


def killed_search_matches_uninterrupted(write_job, search: dict, epochs: int, **keys):
    """A search of `search` keys (job "killed": `ray-nas search` in a forked child SIGKILLed after
    3 epochs, then resumed in this process) against the same search run uninterrupted (job "ref"),
    both jobs with the top-level `keys`: asserts their stores are equal but for the seconds column
    and returns (spec of "killed", run_id, its epochs frame, its alphas frame). The SIGKILL of a
    fresh `python -m ray_nas.cli` process: tests/test_store_resume.py."""
    import contextlib
    import io

    import pandas as pd

    from ray_nas.cli import main
    from ray_nas.config import load_spec, run_id, search_config

    from .test_store_resume import _read

    ref = write_job(name="ref", search=search, **keys)
    assert main(["search", str(ref), "--quiet"]) == 0  # in-process
    job = write_job(name="killed", search=search, **keys)
    spec = load_spec(job)
    rid = run_id(search_config(spec))
    epochs_file = f"{spec.store}/{spec.name}/epochs/run_id={rid}/part-0.parquet"
    # epochs 0..2 written: the checkpoint of epoch 1 is on the store
    written = sigkill_forked_search_after_epochs(job, epochs_file)
    assert 3 <= written <= epochs, "the search finished before it was killed"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["search", str(job), "--quiet"]) == 0, err.getvalue()  # resumed in-process
    assert "resuming" in out.getvalue(), out.getvalue()
    ref_ep, ref_al = _read(spec.store, "ref", rid)
    ep, al = _read(spec.store, "killed", rid)
    assert ep.epoch.tolist() == list(range(epochs + 1))
    pd.testing.assert_frame_equal(al, ref_al)
    pd.testing.assert_frame_equal(ep.drop(columns="seconds"), ref_ep.drop(columns="seconds"))
    return spec, rid, ep, al
