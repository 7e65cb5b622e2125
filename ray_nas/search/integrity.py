"""What is checked about a job's store before any work, and how one trial is redone.

Both `ray-nas search` and `ray-nas sweep` apply the same checks: the store holds this job (its
`job.yaml` has the same `grid` and `search`), the store can be written, and every trial about to
run (or counted as done) has whole files. A trial whose files are damaged is never resumed over
nor skipped as complete: the command refuses, touching nothing, and names the way out:
`--redo RUN_ID`, which moves the trial's files aside (kept, never deleted) and runs it again.
"""

from __future__ import annotations

import os
import time
import uuid

import yaml

from ray_nas import store
from ray_nas.config import (
    JobSpec,
    SpecError,
    resolve_search,
    resolved_job_dict,
    run_id,
    yaml_error_line,
    yaml_load,
)
from ray_nas.errors import first_line

#: Job keys that define WHAT is searched: a store holding the same job name with other values is
#: a different job. criteria / evaluate / stop / display keys may change freely.
IDENTITY_KEYS = ("grid", "search")

#: Trial statuses that end a trial: it is not run again (unless redone).
FINAL_STATUSES = ("completed", "stopped", "diverged")


def check_job_identity(spec: JobSpec) -> None:
    """Raise SpecError if `{store}/{job}/job.yaml` describes a different grid or search defaults."""
    path = f"{spec.job_dir}/job.yaml"
    data = store.read_bytes(path)
    if data is None:
        return
    try:
        old = yaml_load(data.decode()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        why = yaml_error_line(e) if isinstance(e, yaml.YAMLError) else "not text"
        raise SpecError(
            f"{path}: not a readable job file ({why}); restore it, or move it aside to adopt "
            "this job's settings (nothing was changed)"
        ) from None
    if not isinstance(old, dict):
        raise SpecError(
            f"{path}: not a job mapping; restore it, or move it aside to adopt this job's "
            "settings (nothing was changed)"
        )
    new = resolved_job_dict(spec)
    for key in IDENTITY_KEYS:
        same = (
            _search_identity(old.get(key)) == _search_identity(new.get(key))
            if key == "search"
            else _norm(old.get(key)) == _norm(new.get(key))
        )
        if not same:
            raise SpecError(
                f"{spec.job_dir} already holds job {spec.name!r} with a different `{key}`; "
                f"use another `name` or `store` (nothing was changed)"
            )


def _norm(v):
    return yaml.safe_load(yaml.safe_dump(v))


def _search_identity(search: dict | None):
    """The search defaults as run_id sees them: re-resolved (a field added since the job.yaml was
    written takes its default) and without where-and-how fields (data_root, device, compile, ...),
    so that a sweep resumed elsewhere or by a newer version keeps its store."""
    try:
        return run_id(resolve_search(search or {}))
    except (SpecError, AttributeError, TypeError):  # a field this version no longer knows
        return _norm(search)


def check_store_writable(spec: JobSpec) -> None:
    """SpecError when nothing can be written under `{store}/{job}/` (a file, read-only, a name too
    long, a bucket that does not exist)."""
    probe = f"{spec.job_dir}/.write-probe-{uuid.uuid4().hex}"
    made = _missing_folders(spec.job_dir)
    try:
        store.write_bytes(probe, b"ok")
        store.delete(probe)
        for folder in made:  # deepest first: the probe leaves no trace
            os.rmdir(folder)
    except Exception as e:  # noqa: BLE001 - OSError, or pyarrow's errors for object stores
        why = " ".join(str(e).split())[:200]
        raise SpecError(
            f"store {spec.store}: not writable, cannot write under {spec.job_dir} ({type(e).__name__}: {why}); "
            "set `store` to a writable folder or bucket"
        ) from None


def _missing_folders(path: str) -> list[str]:
    """The local folders on the way to `path` that do not exist yet, deepest first (URIs: none)."""
    if "://" in path:
        return []
    out, p = [], os.path.abspath(path)
    try:
        while not os.path.exists(p) and p != os.path.dirname(p):
            out.append(p)
            p = os.path.dirname(p)
    except OSError:  # a name too long: the probe reports it
        return []
    return out


def write_job_yaml(spec: JobSpec) -> None:
    """`{store}/{job}/job.yaml`: the resolved spec (what check_job_identity compares against)."""
    store.write_bytes(
        f"{spec.job_dir}/job.yaml",
        yaml.safe_dump(resolved_job_dict(spec), sort_keys=False).encode(),
    )


def trial_problem(job_dir: str, rid: str) -> str | None:
    """Why the trial's stored files cannot be trusted, or None when they are whole (or absent).

    A finished trial (FINAL_STATUSES) needs both trajectory files readable and consistent
    (epochs 0..T once each, matching alphas) with T = its epochs_done. An unfinished one with a
    checkpoint needs both files readable (resuming keeps their epochs up to the checkpoint's); one
    without a checkpoint starts from scratch, so nothing it holds is relied on.
    """
    paths = store.trial_paths(job_dir, rid)
    status = status_row(paths["status"])
    final = status is not None and status.get("status") in FINAL_STATUSES
    if not final and not store.exists(paths["checkpoint"]):
        return None
    missing = [k for k in ("epochs", "alphas") if not store.exists(paths[k])]
    if missing:
        kept = [k for k in ("epochs", "alphas", "checkpoint") if store.exists(paths[k])]
        return f"its {' and '.join(missing)} file is missing" + (
            f" (intact: {', '.join(kept)})" if kept else ""
        )
    try:
        if not final:
            for kind in ("epochs", "alphas"):
                store.read_frame(paths[kind], columns=["epoch"])
            return None
        last = len(store.read_trial(job_dir, rid).epochs["epoch"]) - 1
    except Exception as e:  # noqa: BLE001 - truncated, not Parquet, inconsistent
        return f"its trajectory is unreadable ({type(e).__name__}: {first_line(e, 200)})"
    done = status.get("epochs_done")
    if done is not None and int(done) != last:
        return f"it is marked {status['status']} at epoch {int(done)} but its files end at epoch {last}"
    return None


def status_row(path: str) -> dict | None:
    """The status file's one row, or None when it is missing or unreadable."""
    try:
        return store.read_frame(path).iloc[0].to_dict() if store.exists(path) else None
    except Exception:  # noqa: BLE001 - an unreadable status file is as good as none
        return None


def check_trials(spec: JobSpec, rids: list[str], command: str) -> None:
    """SpecError naming every damaged trial among `rids` and the command that redoes it."""
    bad = {rid: why for rid in rids if (why := trial_problem(spec.job_dir, rid))}
    if not bad:
        return
    rid, why = next(iter(bad.items()))
    more = f" (and {len(bad) - 1} more: {', '.join(list(bad)[1:])})" if len(bad) > 1 else ""
    raise SpecError(
        f"trial {rid} under {spec.job_dir}: {why}{more}; nothing was changed. Redo it with "
        f"`ray-nas {command} {spec.source} --redo {rid}` (its files are moved aside, not deleted)"
    )


def redo_trial(job_dir: str, rid: str) -> str | None:
    """Move the trial's files (trajectory, status, checkpoint) to `{job}/redo/<rid>-<stamp>/` so it
    runs again from scratch. Returns that folder, or None when the trial had no files."""
    paths = store.trial_paths(job_dir, rid)
    present = {k: p for k, p in paths.items() if store.exists(p)}
    if not present:
        return None
    folder = f"{job_dir.rstrip('/')}/redo/{rid}-{time.strftime('%Y%m%d-%H%M%S')}"
    for kind, path in present.items():
        store.move(path, f"{folder}/{kind}-{path.rsplit('/', 1)[1]}")
    return folder
