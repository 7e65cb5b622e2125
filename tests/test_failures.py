"""Outages during work: the MLflow server dies while evaluate logs; the store turns unwritable
while a trial runs. Nothing written is lost, the error is one clear line, a rerun completes."""

import http.client
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from ray_nas import store as stored
from ray_nas.cli import main
from ray_nas.cli.commands import sweep_command
from ray_nas.config import expand_grid, load_spec
from ray_nas.search.trial import run_trial

from .helpers import count_runs

NO_RETRAIN = {"benchmark": None, "retrain": None}


class CuttableProxy(ThreadingHTTPServer):
    """An HTTP proxy on 127.0.0.1 in front of a real MLflow server that goes dark (closes every
    connection unanswered) after `budget` requests: the server 'dies' at a known point."""

    daemon_threads = True

    def __init__(self, upstream: int, budget: int | None = None):
        self.upstream, self.budget, self.served = upstream, budget, 0
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    def _forward(self) -> None:
        srv: CuttableProxy = self.server
        if srv.budget is not None and srv.served >= srv.budget:
            self.close_connection = True  # the server is gone: no answer at all
            return
        srv.served += 1
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        conn = http.client.HTTPConnection("127.0.0.1", srv.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_mlflow_dies_during_evaluate_then_rerun_logs_once(
    mlflow_server, write_job, monkeypatch, capsys
):
    proxy = CuttableProxy(mlflow_server, budget=12)  # dies after the parent and part of a trial
    job = write_job(name="outage", search={"epochs": 2, "steps_per_epoch": 1}, grid={"seed": [0, 1]},
                    tracking_uri=proxy.url, criteria=["final", "best_valid"], evaluate=NO_RETRAIN)  # fmt: skip
    spec = load_spec(job)
    for cfg, rid, _ in expand_grid(spec):
        run_trial(spec, cfg, rid, progress=False, log=lambda s: None)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    capsys.readouterr()
    assert main(["evaluate", str(job)]) == 1
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("ray-nas evaluate: error: MLflow logging to " + proxy.url)
    assert "selections.parquet is written" in errors[0] and "rerun" in errors[0]
    sel = pd.read_parquet(f"{spec.job_dir}/selections.parquet")
    assert len(sel) == 2 * 2  # written before the outage
    server = f"http://127.0.0.1:{mlflow_server}"
    assert count_runs(server, spec.name)["runs"] >= 1  # it did log part of the job

    proxy.budget = None  # the server is back
    assert main(["evaluate", str(job)]) == 0
    counts = count_runs(server, spec.name)
    assert counts == {"runs": 3, "valid_acc_points": 2 * 3, "duplicate_steps": 0}
    proxy.shutdown()


def _lock(path: Path) -> bool:
    """Make a folder unwritable, also for root (chattr +i); False if this machine cannot."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return True
    return (
        shutil.which("chattr") is not None
        and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    )


def _unlock(path: Path) -> None:
    if os.geteuid() != 0:
        path.chmod(0o755)
    else:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.ray
def test_store_unwritable_mid_trial_then_resumed(
    ray_session, write_job, tmp_path, monkeypatch, capsys
):
    search = {"epochs": 3, "steps_per_epoch": 1}
    ref = load_spec(write_job(name="ref", search=search))
    (cfg, rid, _), = expand_grid(ref)  # fmt: skip
    run_trial(ref, cfg, rid, progress=False, log=lambda s: None)  # uninterrupted

    job = write_job(name="locked", search=search, resources={"cpu": 1, "gpu": 0}, max_failures=0,
                    evaluate=NO_RETRAIN)  # fmt: skip
    spec = load_spec(job)
    pause = tmp_path / "pause"
    monkeypatch.setenv("RAY_NAS_PAUSE_ONCE", f"{pause}:1")
    part = Path(stored.trial_paths(spec.job_dir, rid)["epochs"]).parent
    locked: list[bool] = []

    def lock_when_paused() -> None:  # while the trial waits after writing its epoch 1
        deadline = time.time() + 240
        while not (pause / "paused").exists() and time.time() < deadline:
            time.sleep(0.05)
        locked.append(_lock(part))
        (pause / "go").write_text("")

    watcher = threading.Thread(target=lock_when_paused, daemon=True)
    watcher.start()
    try:
        assert sweep_command(str(job), [], evaluate=False) == 0
        watcher.join(timeout=10)
        if not locked[0]:
            pytest.skip("cannot make a folder unwritable for root here (no chattr +i)")
        out = capsys.readouterr().out
        # `ray-nas search` on the same still-unwritable store: one line, exit 1
        assert main(["search", str(job), "--quiet"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"ray-nas search: error: trial {rid}: store I/O failed")
        assert str(part) in err and "\n" not in err
    finally:
        watcher.join(timeout=10)
        if locked and locked[0]:
            _unlock(part)
    status = stored.read_status(spec.job_dir)
    assert status.status.tolist() == ["failed"] and str(part) in status.error[0]
    said = [ln for ln in out.splitlines() if f"trial {rid} failed" in ln]
    assert said and str(part) in said[0] and "no retries left" in said[0], out[-3000:]
    assert "1 trials did not complete" in out

    monkeypatch.delenv("RAY_NAS_PAUSE_ONCE")
    assert sweep_command(str(job), [], evaluate=False) == 0  # the store is fixed: resume
    assert "0 already complete, 1 to run" in capsys.readouterr().out
    assert stored.read_status(spec.job_dir).status.tolist() == ["completed"]
    ep = stored.read_frame(stored.trial_paths(spec.job_dir, rid)["epochs"])
    assert ep.epoch.tolist() == [0, 1, 2, 3]  # nothing lost, nothing twice
    assert stored.exists(stored.trial_paths(spec.job_dir, rid)["checkpoint"])  # default: kept
    al = stored.read_frame(stored.trial_paths(spec.job_dir, rid)["alphas"])
    ref_al = stored.read_frame(stored.trial_paths(ref.job_dir, rid)["alphas"])
    pd.testing.assert_frame_equal(al, ref_al)
