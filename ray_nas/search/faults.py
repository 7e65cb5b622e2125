"""Test-only fault injection: environment variables that make a trial fail, pause or die at a
chosen epoch, so the tests can exercise resume, retry and node loss on real processes.

Nothing sets them in normal use; a sweep passes them on to its trials (`FAULT_ENVS`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

#: Test-only fault injection: "DIR:EPOCH" makes a trial raise once after writing EPOCH
#: (a marker file in DIR records that it happened, so the retry succeeds).
FAIL_ONCE_ENV = "RAY_NAS_FAIL_ONCE"
#: Test-only pause: "DIR:EPOCH" makes a trial, once, after writing EPOCH (before its checkpoint;
#: a retraining: after that epoch's checkpoint), create DIR/paused and wait until DIR/go exists
#: (at most 300 s), so a test can act mid-run (remove the node, make the store unwritable).
PAUSE_ONCE_ENV = "RAY_NAS_PAUSE_ONCE"
#: Test-only kill: "EPOCH" makes the process SIGKILL itself right after writing EPOCH (before its
#: checkpoint): no exception, no cleanup, exactly what a lost node or an OOM kill leaves behind.
KILL_AT_ENV = "RAY_NAS_KILL_AT"
#: The test-only variables a sweep passes on to its trials (wherever they run).
FAULT_ENVS = (FAIL_ONCE_ENV, PAUSE_ONCE_ENV, KILL_AT_ENV)


class InjectedFailure(RuntimeError):
    pass


def maybe_fail(epoch: int) -> None:
    if os.environ.get(KILL_AT_ENV) == str(epoch):
        os.kill(os.getpid(), signal.SIGKILL)
    spec = os.environ.get(FAIL_ONCE_ENV)
    if not spec:
        return
    folder, _, at = spec.rpartition(":")
    marker = Path(folder) / "failed-once"
    if epoch == int(at) and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(epoch))
        raise InjectedFailure(f"{FAIL_ONCE_ENV}: injected failure after epoch {epoch}")


def maybe_pause(epoch: int, log: Callable[[str], None]) -> None:
    """Test-only (PAUSE_ONCE_ENV "FOLDER:EPOCH"): after `epoch`, once, write FOLDER/paused and
    wait until FOLDER/go exists (at most 300 s), so a test can kill the node mid-run. Trials
    call it after each epoch's record, retrainings after each epoch's checkpoint."""
    spec = os.environ.get(PAUSE_ONCE_ENV)
    if not spec:
        return
    folder, _, at = spec.rpartition(":")
    marker, go = Path(folder) / "paused", Path(folder) / "go"
    if epoch != int(at) or marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{epoch} {os.getpid()} {time.time()}")
    log(f"{PAUSE_ONCE_ENV}: paused after epoch {epoch} until {go} exists")
    deadline = time.time() + 300
    while not go.exists() and time.time() < deadline:
        time.sleep(0.05)
