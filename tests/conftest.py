"""Shared fixtures: tiny configs, a job file writer, and one local Ray for the `ray` tests."""

from __future__ import annotations

import os
import shutil
import subprocess
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

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
                 log_to_driver=False)  # fmt: skip
    yield ray
    ray.shutdown()


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


def killed_search_matches_uninterrupted(write_job, search: dict, epochs: int, **keys):
    """A search of `search` keys (job "killed", SIGKILLed after 3 epochs, then resumed) against the
    same search run uninterrupted (job "ref"), both jobs with the top-level `keys`: asserts
    their stores are equal but for the seconds column and returns (spec of "killed", run_id, its
    epochs frame, its alphas frame)."""
    import pandas as pd

    from ray_nas.cli import main
    from ray_nas.config import load_spec, run_id, search_config

    from .test_store_resume import CMD, _read, _run

    ref = write_job(name="ref", search=search, **keys)
    assert main(["search", str(ref), "--quiet"]) == 0  # in-process
    job = write_job(name="killed", search=search, **keys)
    spec = load_spec(job)
    rid = run_id(search_config(spec))
    epochs_file = f"{spec.store}/{spec.name}/epochs/run_id={rid}/part-0.parquet"
    # epochs 0..2 written: the checkpoint of epoch 1 is on the store
    written = sigkill_after_epochs([*CMD, str(job), "--quiet"], epochs_file)
    assert 3 <= written <= epochs, "the search finished before it was killed"
    r = _run(job)
    assert r.returncode == 0 and "resuming" in r.stdout, r.stderr
    ref_ep, ref_al = _read(spec.store, "ref", rid)
    ep, al = _read(spec.store, "killed", rid)
    assert ep.epoch.tolist() == list(range(epochs + 1))
    pd.testing.assert_frame_equal(al, ref_al)
    pd.testing.assert_frame_equal(ep.drop(columns="seconds"), ref_ep.drop(columns="seconds"))
    return spec, rid, ep, al
