"""One trial end to end: the search loop wired to the trajectory store, checkpoints and status.

Used by `ray-nas search` (in this process) and by the sweep's Ray Tune trainable alike, so a trial
behaves the same everywhere: resumable from its last checkpoint on the store, each epoch written
once, its status row kept current, the online stop (Algorithm 1) applied after every epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ray_nas import criteria, store
from ray_nas.config import JobSpec, SearchConfig, SpecError, config_json
from ray_nas.errors import CheckpointError, StoreError
from ray_nas.search.faults import maybe_fail, maybe_pause
from ray_nas.search.integrity import (
    FINAL_STATUSES,
    config_columns,
    rebuild_status,
    redo_command,
    redo_trial,
    status_row,
    trial_problem,
    write_job_yaml,
)
from ray_nas.spaces import get_space
from ray_nas.store.checkpoint import FileCheckpoint


def trial_status(job_dir: str, run_id: str) -> dict | None:
    """The trial's own status row (one small file), or None (also when it is unreadable)."""
    return status_row(store.trial_paths(job_dir, run_id)["status"])


def is_complete(job_dir: str, run_id: str) -> bool:
    """The trial ended (completed, stopped early or diverged): it is not run again."""
    st = trial_status(job_dir, run_id)
    return st is not None and st["status"] in FINAL_STATUSES


def run_trial(
    spec: JobSpec,
    cfg: SearchConfig,
    run_id: str,
    progress: bool = True,
    log: Callable[[str], None] = print,
    on_record: Callable[[object], None] | None = None,
    claim: bool = True,
) -> str:
    """Run or resume one search; returns its final status (completed | stopped | diverged | skipped).

    `on_record(record)` is called after each epoch is stored (the sweep reports to Tune there).
    `claim`: write the store's job.yaml before the first write (integrity.write_job_yaml); the
    sweep's driver claims it for its trials (which carry the job without its grid).
    Damaged files are refused before any write (integrity.trial_problem); an unreadable checkpoint
    restarts the trial from scratch, its recorded files kept under `{job}/redo/`.
    """
    job_dir = spec.job_dir
    if said := rebuild_status(job_dir, run_id):
        log(said)
    problem = trial_problem(job_dir, run_id)
    if problem:
        raise SpecError(f"trial {run_id} under {job_dir}: {problem}; nothing was changed "
                        f"(`{redo_command(spec, run_id)}` runs it again, its files moved aside)")  # fmt: skip
    if is_complete(job_dir, run_id):
        st = trial_status(job_dir, run_id) or {}
        done = "trajectory already complete" if st.get("status") == "completed" else "already ended"
        log(f"trial {run_id}: {done} under {job_dir}: {ended_text(st)}; nothing to do "
            f"(`{redo_command(spec, run_id)}` runs it again)")  # fmt: skip
        return "skipped"
    # torch: imported on use (the sweep's driver imports this module without it)
    from ray_nas.search.loop import non_finite, search
    from ray_nas.training.data import load_dataset
    from ray_nas.training.runtime import resolve_device

    resolve_device(cfg.device)
    data = load_dataset(
        cfg.dataset, cfg.data_root, cfg.split_file, cfg.download, cfg.data_split_seed
    )  # fails before any write
    if claim:  # the store is this job's before the first write (first writer wins)
        write_job_yaml(spec)
    space = get_space(cfg.space)
    rows = space.rows()
    writer = store.TrialWriter(job_dir, run_id, cfg.ops, tuple(e for _, e in rows),
                                    config_json(cfg), tuple(c for c, _ in rows),
                                    space.connection_rows(cfg))  # fmt: skip
    ckpt = _open_checkpoint(job_dir, run_id, log)
    state = ckpt.load()
    if state and state.get("run_id") not in (None, run_id):
        raise SpecError(f"trial {run_id} under {job_dir}: its checkpoint {ckpt.path} belongs to "
                        f"trial {state['run_id']} (the run_id saved in it): misplaced; nothing was "
                        f"changed (`{redo_command(spec, run_id)}` runs it again, its files moved aside)")  # fmt: skip
    writer.truncate(state["epoch"] if state else -1)
    if state and writer.last_epoch < state["epoch"]:
        raise SpecError(f"trial {run_id} under {job_dir}: its checkpoint is at epoch {state['epoch']} but "
                        f"its files end at epoch {writer.last_epoch}; nothing was changed "
                        f"(`--redo {run_id}` runs it again, its files moved aside)")  # fmt: skip
    stopper = _online_stop(spec, run_id)
    status = {"run_id": run_id, "status": "running", "epochs_done": writer.last_epoch,
              "total_epochs": cfg.total_epochs, "stop_epoch": None, "stop_reason": None,
              "diverged_epoch": None, "error": None, "started": time.time(),
              **config_columns(cfg)}  # fmt: skip

    def put_status(**changes) -> None:
        status.update(changes, updated=time.time())
        store.write_status(job_dir, run_id, status)

    def on_epoch(rec) -> bool:
        bad = non_finite(rec)
        if bad is not None:  # not stored: the trajectory keeps its last finite epoch
            put_status(status="diverged", diverged_epoch=rec.epoch, stop_reason=bad)
            log(f"trial {run_id}: diverged: {bad}; kept epochs 0..{writer.last_epoch}")
            return True
        writer.append(rec)
        stop = stopper(writer) if stopper else None
        if stop is not None:
            put_status(epochs_done=rec.epoch, stop_epoch=stop[0], stop_reason=stop[1])
            log(f"trial {run_id}: online stop at epoch {rec.epoch}: {stop[1]}")
        else:
            put_status(epochs_done=rec.epoch)
        if on_record:
            on_record(rec)
        maybe_pause(rec.epoch, log)
        maybe_fail(rec.epoch)
        return stop is not None

    put_status()
    try:
        last = search(cfg, on_epoch, checkpoint=ckpt, progress=progress, log=log, data=data)
    except BaseException as e:
        try:
            put_status(status="failed", error=f"{type(e).__name__}: {e}"[:500])
        except OSError as e2:  # the store itself failed: keep the first error, say both
            log(f"trial {run_id}: could not record the failure in the store ({e2})")
        if isinstance(e, OSError):
            raise StoreError(f"trial {run_id}: store I/O failed: {e}") from e
        raise
    if status["status"] == "diverged":
        final, last = "diverged", writer.last_epoch
    else:
        final = "stopped" if status["stop_epoch"] is not None else "completed"
    put_status(status=final, epochs_done=last)
    if not spec.keep_checkpoints:
        store.delete(ckpt.path)
    return final


def ended_text(st: dict) -> str:
    """How a finished trial ended, from its status row: `completed (epochs 0..T)`, `stopped at
    epoch k of T by <criterion>`, `diverged at epoch k of T (<why>)`."""
    total, done = st.get("total_epochs"), st.get("epochs_done")
    of = f" of {int(total)}" if _num(total) else ""
    if st.get("status") == "diverged":
        at = st.get("diverged_epoch")
        at = f"epoch {int(at)}" if _num(at) else "an unknown epoch"
        kept = f", epochs 0..{int(done)} kept" if _num(done) else ""
        return f"diverged at {at}{of} ({st.get('stop_reason') or 'a non-finite value'}){kept}"
    if st.get("status") == "stopped":
        at = int(st["stop_epoch"]) if _num(st.get("stop_epoch")) else None
        why = str(st.get("stop_reason") or "the online stop").split(" fired")[0]
        ran = f", ran to epoch {int(done)}" if _num(done) and done != at else ""
        return f"stopped at epoch {at}{of} by {why}{ran}"
    return f"completed (epochs 0..{int(done)})" if _num(done) else "completed"


def _num(v) -> bool:
    try:
        return v is not None and float(v) == float(v)
    except (TypeError, ValueError):
        return False


def _open_checkpoint(job_dir: str, run_id: str, log: Callable[[str], None]) -> FileCheckpoint:
    """The trial's checkpoint; an unreadable one (and the files it would resume) is moved to
    `{job}/redo/` and the trial restarts from scratch, its recorded epochs kept there."""
    ckpt = FileCheckpoint(store.trial_paths(job_dir, run_id)["checkpoint"], run_id)
    try:
        ckpt.load()
    except CheckpointError as e:
        folder = redo_trial(job_dir, run_id)
        log(f"trial {run_id}: checkpoint {ckpt.path} unreadable ({e}); restarting from scratch, "
            f"its files (recorded epochs included) kept in {folder}")  # fmt: skip
        ckpt.forget()
    return ckpt


def _online_stop(spec: JobSpec, run_id: str):
    """A function(writer) -> (stop_epoch, reason) | None for the job's `stop`, or None.
    A criterion that breaks the shared rules fails the trial (CriterionError naming it)."""
    if spec.stop is None:
        return None
    crit = criteria.parse_criterion(spec.stop)

    def check(writer: store.TrialWriter):
        traj = criteria.from_trial(writer.trial_data())
        try:
            res = crit.apply(traj)
        except criteria.CriterionError as e:
            raise criteria.CriterionError(f"trial {run_id}: online stop: {e}") from e
        if res.fired:
            return res.epoch, f"{crit.label} fired (selected epoch {res.epoch})"
        return None

    return check
