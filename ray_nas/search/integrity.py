"""What is checked about a job's store before any work, and how one trial is redone.

Both `ray-nas search` and `ray-nas sweep` apply the same checks: the store holds this job (its
`job.yaml` has the same `grid` and `search`), the store can be written, and every trial about to
run (or counted as done) has whole files. A trial whose files are damaged is never resumed over
nor skipped as complete: the command refuses, touching nothing, and names the way out:
`--redo RUN_ID`, which moves the trial's files aside (kept, never deleted) and runs it again.
"""

from __future__ import annotations

import json
import os
import shlex
import time
import uuid

import yaml

from ray_nas import store
from ray_nas.config import (
    JobSpec,
    SpecError,
    flatten,
    resolve_search,
    resolved_job_dict,
    run_id,
    to_dict,
    yaml_error_line,
    yaml_load,
)
from ray_nas.digest import sha256_hex
from ray_nas.errors import first_line

#: Job keys that define WHAT is searched: a store holding the same job name with other values is
#: a different job. criteria / evaluate / stop / display keys may change freely.
IDENTITY_KEYS = ("grid", "search")

#: Trial statuses that end a trial: it is not run again (unless redone).
FINAL_STATUSES = ("completed", "stopped", "diverged")


#: The first line of a job.yaml this version writes: the sha256 of the rest, so a cut or damaged
#: file is told from another job's file (older job.yaml files have no such line: still read).
_HEADER = "# ray-nas job.yaml sha256="


def check_job_identity(spec: JobSpec) -> None:
    """Raise SpecError if `{store}/{job}/job.yaml` describes a different grid or search defaults,
    or is damaged (empty, cut, not a job mapping: named as damaged, never as another job)."""
    path = f"{spec.job_dir}/job.yaml"
    data = store.read_bytes(path)
    if data is None:
        return
    _check_identity(spec, path, data)


def _damaged(path: str, why: str) -> SpecError:
    return SpecError(
        f"{path}: damaged job file ({why}); restore it, or move it aside to adopt this job's "
        "settings (nothing was changed)"
    )


def _check_identity(spec: JobSpec, path: str, data: bytes) -> None:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise _damaged(path, "not text") from None
    if not text.strip():
        raise _damaged(path, "empty")
    if text.startswith(_HEADER):
        head, _, body = text.partition("\n")
        if head[len(_HEADER) :].strip() != sha256_hex(body):
            raise _damaged(path, "its content does not match its checksum: cut or edited")
    try:
        old = yaml_load(text)
    except yaml.YAMLError as e:
        raise _damaged(path, f"not readable YAML: {yaml_error_line(e)}") from None
    if not isinstance(old, dict):
        raise _damaged(path, "not a job mapping")
    missing = [k for k in ("name", *IDENTITY_KEYS) if k not in old]
    if missing:
        raise _damaged(path, f"no `{missing[0]}` in it")
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
        return run_id(resolve_search(search or {}, record=True))
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


def job_yaml_bytes(spec: JobSpec) -> bytes:
    """The resolved spec as job.yaml holds it: a checksum line, then the YAML."""
    body = yaml.safe_dump(resolved_job_dict(spec), sort_keys=False)
    return f"{_HEADER}{sha256_hex(body)}\n{body}".encode()


def write_job_yaml(spec: JobSpec) -> None:
    """Claim the store for this job before its first trial starts: `{store}/{job}/job.yaml` (the
    resolved spec, what check_job_identity compares against) is created atomically, the first
    writer wins, and a job.yaml found there (written meanwhile by another search of this store)
    is checked like one found before: a different job is refused (SpecError).

    Local stores: a hard link of a complete temporary file, which fails if job.yaml exists. Object
    stores have no create-if-absent here: the file is written, then read back and compared."""
    path = f"{spec.job_dir}/job.yaml"
    data = job_yaml_bytes(spec)
    if "://" not in path:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/.job.yaml.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, os.path.abspath(path))
            return
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    elif store.read_bytes(path) is None:
        store.write_bytes(path, data)
    _check_identity(spec, path, store.read_bytes(path) or b"")


def trial_problem(job_dir: str, rid: str) -> str | None:
    """Why the trial's stored files cannot be trusted, or None when they are whole (or absent).

    A trajectory file whose metadata names another run_id is never trusted (misplaced). A finished
    trial (FINAL_STATUSES) needs both trajectory files readable and consistent (epochs 0..T once
    each, matching alphas) with T = its epochs_done. An unfinished one with a checkpoint needs both
    files readable (resuming keeps their epochs up to the checkpoint's); one without a checkpoint
    starts from scratch, so nothing it holds is relied on, unless its status is lost: recorded
    files without a status nor a checkpoint are a finished trial's (rebuild_status rebuilds the
    status of a whole, complete one; any other is refused rather than searched again over).
    """
    paths = store.trial_paths(job_dir, rid)
    status = status_row(paths["status"])
    final = status is not None and status.get("status") in FINAL_STATUSES
    present = [k for k in ("epochs", "alphas") if store.exists(paths[k])]
    for kind in present:
        try:
            owner = store.file_run_id(paths[kind])
        except Exception:  # noqa: BLE001 - unreadable: said below where it matters
            owner = None
        if owner and owner != rid:
            return (f"its {kind} file belongs to trial {owner} (ray_nas.run_id in its metadata): "
                    "misplaced")  # fmt: skip
    ckpt = store.exists(paths["checkpoint"])
    if status is None and not ckpt and present:
        return (f"its status file is {'unreadable' if store.exists(paths['status']) else 'missing'} "
                f"and it has no checkpoint, but its {' and '.join(present)} files hold a recorded "
                "search that did not end at its last epoch (stopped online, diverged or cut): "
                "its status cannot be rebuilt")  # fmt: skip
    if not final and not ckpt:
        return None
    missing = [k for k in ("epochs", "alphas") if k not in present]
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


def config_columns(cfg) -> dict:
    """The resolved search fields as dotted columns; lists as JSON strings (stable Parquet types)."""
    return {
        k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(to_dict(cfg)).items()
    }


def rebuild_status(job_dir: str, rid: str) -> str | None:
    """A trial whose status file is lost or unreadable, with no checkpoint (every finished trial
    under `keep_checkpoints: false`), whose whole files are its own and reach its last epoch: its
    status is rebuilt as completed (an unreadable status file moved to `{job}/redo/` first).
    Returns what was done, or None when there was nothing to rebuild. Any other such trial is
    left as it is (trial_problem refuses it)."""
    paths = store.trial_paths(job_dir, rid)
    if (
        status_row(paths["status"]) is not None
        or store.exists(paths["checkpoint"])
        or not (store.exists(paths["epochs"]) and store.exists(paths["alphas"]))
    ):
        return None
    try:
        trial = store.read_trial(job_dir, rid)
        cfg = resolve_search(trial.config, record=True)
    except Exception:  # noqa: BLE001 - unreadable or foreign: trial_problem says why
        return None
    last = int(trial.epochs["epoch"][-1])
    if trial.run_id not in ("", rid) or run_id(cfg) != rid or last != cfg.total_epochs:
        return None
    kept = ""
    if store.exists(paths["status"]):
        folder = f"{job_dir.rstrip('/')}/redo/{rid}-{time.strftime('%Y%m%d-%H%M%S')}"
        store.move(paths["status"], f"{folder}/status-{store.PART}")
        kept = f" (the unreadable one kept in {folder})"
    now = time.time()
    store.write_status(job_dir, rid, {
        "run_id": rid, "status": "completed", "epochs_done": last,
        "total_epochs": cfg.total_epochs, "stop_epoch": None, "stop_reason": None,
        "diverged_epoch": None, "error": None, "started": now, **config_columns(cfg),
        "updated": now,
    })  # fmt: skip
    return (f"trial {rid}: status file {'unreadable' if kept else 'missing'}; rebuilt as completed "
            f"from its whole files (epochs 0..{last}){kept}")  # fmt: skip


def status_row(path: str) -> dict | None:
    """The status file's one row, or None when it is missing or unreadable."""
    try:
        return store.read_frame(path).iloc[0].to_dict() if store.exists(path) else None
    except Exception:  # noqa: BLE001 - an unreadable status file is as good as none
        return None


def check_trials(spec: JobSpec, rids: list[str], command: str | None = None, log=print) -> None:
    """SpecError naming every damaged trial among `rids` and the command that redoes it (a lost
    status rebuilt first where the files allow: rebuild_status)."""
    for rid in rids:
        if said := rebuild_status(spec.job_dir, rid):
            log(said)
    bad = {rid: why for rid in rids if (why := trial_problem(spec.job_dir, rid))}
    if not bad:
        return
    rid, why = next(iter(bad.items()))
    more = f" (and {len(bad) - 1} more: {', '.join(list(bad)[1:])})" if len(bad) > 1 else ""
    raise SpecError(
        f"trial {rid} under {spec.job_dir}: {why}{more}; nothing was changed. Redo it with "
        f"`{redo_command(spec, rid, command)}` (its files are moved aside, not deleted)"
    )


#: The command line as the user typed it (`ray-nas sweep job.yaml --set ...`), set by the CLI so
#: that the `--redo` hints repeat it; None outside the CLI.
COMMAND_LINE: list[str] | None = None


def redo_command(spec: JobSpec, rid: str, command: str | None = None) -> str:
    """`ray-nas <command> JOB [--set ...] --redo RID`: the command typed (its options kept, any
    --redo it had replaced; an `evaluate`'s trials are the sweep's: its job and --set), else one
    built from the job file (command: sweep by default)."""
    line = COMMAND_LINE
    if line and len(line) > 2 and line[1] in ("sweep", "search", "evaluate"):
        typed = line[1] if line[1] != "evaluate" else "sweep"
        if command is None or command == typed:
            return f"{typed_command(spec, typed, flags=line[1] != 'evaluate')} --redo {rid}"
    return f"ray-nas {command or 'sweep'} {shlex.quote(spec.source or '<job.yaml>')} --redo {rid}"


def typed_command(spec: JobSpec, command: str, flags: bool = False) -> str:
    """`ray-nas COMMAND JOB [--set ...]`: the job and `--set` options as typed (with `flags`, the
    typed command's other options too, but never `--redo`: its files were already moved aside),
    else one built from the job file."""
    line = COMMAND_LINE
    if not (line and len(line) > 2 and line[1] in ("sweep", "search", "evaluate")):
        return f"ray-nas {command} {shlex.quote(spec.source or '<job.yaml>')}"
    args, rest, i = [line[0], command], line[2:], 0
    while i < len(rest):
        a = rest[i]
        i += 1
        if a == "--redo":  # and its RUN_ID (search's --redo may have none)
            if i < len(rest) and (line[1] == "sweep" or not rest[i].startswith("-")):
                i += 1
        elif a in ("--set", "--trial", "--trial-index"):  # the options with a value
            if i < len(rest) and (a == "--set" or flags):
                args += [a, rest[i]]
            i += 1
        elif a.startswith("--redo="):
            continue
        elif not a.startswith("-") or a.startswith("--set=") or flags:
            args.append(a)
    return shlex.join(args)


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
