"""`ray-nas status`: where a job's trials are, read from the store while the sweep runs.

Only the files a trial rewrites after every epoch are read: its one-row status file
(`{job}/status/run_id=<id>/part-0.parquet`: status, epochs done, stop/divergence markers, the
last update) and three columns of its epochs file (`epoch`, `valid_acc`, `seconds`).
`trials.parquet` is not read: the sweep writes it only when Tune finishes. Works on local and
S3 stores alike (`store.fs`), from any machine that reaches the store. No torch or Ray.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas as pd

from ray_nas import store
from ray_nas.config import JobSpec, expand_grid, to_dict, value_text
from ray_nas.errors import first_line
from ray_nas.offline.select import grid_group_keys, group_label

#: statuses after which a trial is not run again
FINAL = ("completed", "stopped", "diverged")
#: a running trial whose status file has not changed for this many epochs' time (and at least
#: STALE_MIN_S) is marked: its driver or node may be gone (a resubmission resumes it)
STALE_EPOCHS = 5
STALE_MIN_S = 600.0

COLUMNS = ["group", "seed", "run_id", "status", "epoch", "total_epochs", "valid_acc",
           "s_per_epoch", "eta_s", "note"]  # fmt: skip


@dataclass
class JobStatus:
    """One row per trial of the job's grid (COLUMNS), in grid order; `eta_s` of the whole job."""

    name: str
    job_dir: str
    trials: pd.DataFrame
    eta_s: float | None
    parallel: int
    read_at: float

    @property
    def finished(self) -> bool:
        """No trial is pending or running (failed ones wait for a resubmission)."""
        return not self.trials.status.isin(["pending", "running"]).any()

    def counts(self) -> dict[str, int]:
        return self.trials.status.value_counts(sort=False).to_dict()


def _epochs(job_dir: str, run_id: str) -> pd.DataFrame | None:
    path = store.trial_paths(job_dir, run_id)["epochs"]
    try:
        return store.read_frame(path, columns=["epoch", "valid_acc", "seconds"])
    except (OSError, ValueError):  # not written yet, or being replaced on a store without rename
        return None


def _seconds_per_epoch(ep: pd.DataFrame | None) -> float | None:
    """The median wall time of the trial's last (up to) five training epochs (epoch 0 only
    evaluates, and a resumed epoch's first one may include start-up)."""
    if ep is None:
        return None
    s = ep.loc[ep.epoch >= 1, "seconds"].dropna().tail(5)
    return float(s.median()) if len(s) else None


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _note(st: dict, now: float, spe: float | None) -> str:
    status = st.get("status")
    reason = st.get("stop_reason") or ""
    if status == "diverged":
        at = _num(st.get("diverged_epoch"))
        return (
            "DIVERGED"
            + (f" at epoch {int(at)}" if at is not None else "")
            + (f": {reason}" if reason else "")
        )
    if status == "failed":
        return (
            "FAILED: "
            + first_line(str(st.get("error") or "unknown error"))[:160]
            + (" (resubmit the job to resume it)")
        )
    stop = _num(st.get("stop_epoch"))
    if stop is not None:
        return f"STOPPED online at epoch {int(stop)}" + (f": {reason}" if reason else "")
    updated = _num(st.get("updated"))
    if status == "running" and updated is not None:
        quiet = now - updated
        if quiet > max(STALE_MIN_S, STALE_EPOCHS * (spe or 0.0)):
            return (f"no update for {format_duration(quiet)}: its driver or node may be gone "
                    "(resubmit the job to resume it)")  # fmt: skip
    return ""


def job_status(spec: JobSpec, now: float | None = None) -> JobStatus:
    """Every trial of the job's grid: its status (`pending` until it writes a status file), the
    epoch reached of its total, the last `valid_acc`, seconds per epoch, its remaining time and
    a note (diverged / stopped online / failed / gone quiet)."""
    now = time.time() if now is None else now
    job_dir = spec.job_dir
    grid = expand_grid(spec)
    keys = grid_group_keys(spec)
    status = store.read_status(job_dir)
    by_id = {r["run_id"]: r for r in status.to_dict("records")}
    rows = []
    for cfg, rid, point in grid:
        st = by_id.pop(rid, None)
        row = {"group": group_label(to_dict(cfg), keys, spec), "seed": value_text(point.get("seed", cfg.seed)),
               "run_id": rid, "total_epochs": cfg.total_epochs}  # fmt: skip
        rows.append(_trial_row(job_dir, row, st, now))
    for rid, st in by_id.items():  # status files of run_ids no longer in this grid
        row = {"group": "(not in this grid)", "seed": "", "run_id": rid,
               "total_epochs": int(_num(st.get("total_epochs")) or 0)}  # fmt: skip
        rows.append(_trial_row(job_dir, row, st, now))
    df = pd.DataFrame(rows, columns=COLUMNS)
    known = df.s_per_epoch.dropna()
    typical = float(known.median()) if len(known) else None
    for i, r in df.iterrows():
        if r.status in FINAL:
            df.at[i, "eta_s"] = 0.0
            continue
        spe = r.s_per_epoch if not pd.isna(r.s_per_epoch) else typical
        left = r.total_epochs - max(r.epoch, 0) if not pd.isna(r.epoch) else r.total_epochs
        df.at[i, "eta_s"] = left * spe if spe is not None else None
    running = int((df.status == "running").sum())
    parallel = max(running, 1)
    todo = df.loc[~df.status.isin(FINAL), "eta_s"]
    eta = None if todo.isna().any() else float(todo.sum()) / parallel
    return JobStatus(spec.name, job_dir, df, eta, parallel, now)


def _trial_row(job_dir: str, row: dict, st: dict | None, now: float) -> dict:
    if st is None:
        return {**row, "status": "pending", "epoch": None, "valid_acc": None,
                "s_per_epoch": None, "eta_s": None, "note": ""}  # fmt: skip
    ep = _epochs(job_dir, row["run_id"])
    done = _num(st.get("epochs_done"))
    last = int(ep.epoch.max()) if ep is not None and len(ep) else None
    epoch = max(x for x in (done, last, -1) if x is not None)
    acc = None
    if ep is not None and len(ep):
        acc = _num(ep.sort_values("epoch").valid_acc.iloc[-1])
    spe = _seconds_per_epoch(ep)
    return {**row, "status": str(st.get("status") or "unknown"),
            "epoch": int(epoch) if epoch >= 0 else None, "valid_acc": acc,
            "s_per_epoch": spe, "eta_s": None, "note": _note(st, now, spe)}  # fmt: skip


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def format_status(js: JobStatus) -> str:
    """The table `ray-nas status` prints: a header, then each grid group and its trials."""
    counts = js.counts()
    order = ["running", "pending", "completed", "stopped", "diverged", "failed"]
    said = ", ".join(f"{counts[k]} {k}" for k in order + sorted(set(counts) - set(order))
                     if counts.get(k))  # fmt: skip
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(js.read_at))
    lines = [f"job {js.name}: {len(js.trials)} trials: {said}  ({js.job_dir}, read {stamp})"]
    head = ("run_id", "seed", "status", "epoch", "valid_acc", "s/epoch", "ETA", "")
    for group, part in js.trials.groupby("group", sort=False):
        done = part.status.isin(FINAL).sum()
        lines.append(f"{group}  ({done}/{len(part)} done)")
        table = [head]
        for r in part.itertuples():
            table.append((
                r.run_id,
                str(r.seed),
                r.status,
                "-" if pd.isna(r.epoch) else f"{int(r.epoch)}/{r.total_epochs}",
                "-" if pd.isna(r.valid_acc) else f"{r.valid_acc:.2f}",
                "-" if pd.isna(r.s_per_epoch) else f"{r.s_per_epoch:.1f}",
                "-" if pd.isna(r.eta_s) or r.status in FINAL else format_duration(r.eta_s),
                r.note,
            ))  # fmt: skip
        widths = [max(len(t[i]) for t in table) for i in range(len(head))]
        for t in table:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip())
    if js.finished:
        failed = counts.get("failed", 0)
        lines.append("every trial has ended" if not failed else
                     f"no trial is running; {failed} failed (resubmit the job to resume them)")  # fmt: skip
    elif js.eta_s is None:
        lines.append("ETA: unknown until a trial has timed an epoch")
    else:
        lines.append(f"ETA: ~{format_duration(js.eta_s)} for the unfinished trials "
                     f"(their epochs left x seconds per epoch, {js.parallel} at a time)")  # fmt: skip
    return "\n".join(lines)


__all__ = ["JobStatus", "job_status", "format_status", "format_duration"]
