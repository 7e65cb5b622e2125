"""MLflow (the only module importing it): written by the offline stage from the Parquet store.

Layout: one experiment per job (its `name`, tagged `mlflow.experimentKind` =
`custom_model_development` so MLflow 3's UI opens it on its training runs, not its GenAI view);
one parent run for the job (resolved spec, summary table, report as artifacts; per grid group and
criterion `<group>/<criterion>.<score>_mean`, `_std`, `.stop_epoch`, `.fired`: the printed
summary's numbers); one child run per trial, named by its grid group and seed (`lr_scheme=nb201
seed=0`; the run_id is its `run_id` param and `ray_nas.run_id` tag), started and ended when its
search did (the status file's times), with its resolved config as params and only per-epoch
metrics (step=epoch), so the run's charts are its curves.

Idempotent: every run carries a deterministic key tag `ray_nas.key` (`job:<name>`,
`trial:<run_id>`). A rerun finds the runs by key; a FINISHED run only gets what is new (epochs
past its `ray_nas.epochs` tag, summary values that changed); a run left unfinished by a crash is
deleted and written again. Nothing is logged twice.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from ray_nas.errors import first_line

KEY_TAG = "ray_nas.key"
EPOCHS_TAG = "ray_nas.epochs"
RUN_ID_TAG = "ray_nas.run_id"
#: MLflow 3's UI reads this experiment tag to choose its view; this value is its training view
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
EPOCH_METRICS = (
    "train_loss",
    "train_acc",
    "valid_loss",
    "valid_acc",
    "lr_weights",
    "lr_alpha",
    "hessian_eig",
    "seconds",
)
BATCH = 1000  # MLflow's limit of metrics per log_batch


class TrackingError(RuntimeError):
    pass


class TrackingOutage(TrackingError):
    """The tracking server failed while the offline stage was logging (after selections were written)."""


#: MLflow's HTTP client retries a dead server 7 times with exponential backoff (minutes); a sweep's
#: offline stage gives up sooner unless the user set MLFLOW_HTTP_REQUEST_MAX_RETRIES.
DEFAULT_HTTP_RETRIES = "3"


def check_tracking(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any work, when the tracking backend cannot be reached or written."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
                if r.status != 200:
                    raise TrackingError(f"tracking_uri {uri}: /health answered HTTP {r.status}")
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(
                f"tracking_uri {uri}: MLflow server not reachable ({reason})"
            ) from None
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :]).resolve()
        if not db.parent.is_dir() or not os.access(db.parent, os.W_OK):
            raise TrackingError(
                f"tracking_uri {uri}: folder {db.parent} does not exist or is not writable"
            )
        if db.exists() and not _sqlite_file(db):
            raise TrackingError(
                f"tracking_uri {uri}: {db} is not an SQLite database; point tracking_uri elsewhere"
            )


def _sqlite_file(path: Path) -> bool:
    """An empty file or one that starts with SQLite's header (a folder or other bytes: False)."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(16)
    return head in (b"", b"SQLite format 3\x00")


def metric_name(label: str) -> str:
    """A criterion label as an MLflow-legal metric name: ss_eq13[exclude=[none],op=x] -> ss_eq13 exclude:none op:x."""
    m = re.match(r"^([\w.:]+)\[(.*)\]$", label)
    if not m:
        return label
    parts = re.findall(r"(\w+)=(\[[^\]]*\]|[^,]*)", m.group(2))
    return m.group(1) + " " + " ".join(f"{k}:{v.strip('[]').replace(',', '+')}" for k, v in parts)


def _client(uri: str):
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", DEFAULT_HTTP_RETRIES)
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def _experiment(client, name: str) -> str:
    """The experiment's id, created when missing (another process creating it at the same
    moment is not an error: its experiment is used)."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, tags={KIND_TAG: KIND})
        except Exception:  # noqa: BLE001 - MlflowException: created meanwhile by another evaluate
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    if exp.tags.get(KIND_TAG) != KIND:
        client.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
    return exp.experiment_id


def _runs_by_key(client, exp_id: str) -> dict[str, list]:
    out: dict[str, list] = {}
    token = None
    while True:
        page = client.search_runs(
            [exp_id], filter_string=f"tags.`{KEY_TAG}` != ''", max_results=5000, page_token=token
        )
        for run in page:
            out.setdefault(run.data.tags.get(KEY_TAG), []).append(run)
        token = page.token
        if not token:
            return out


def _get_or_create(
    client, exp_id: str, existing: dict, key: str, name: str, parent: str | None, log,
    tags: dict[str, str] | None = None, start_time: int | None = None,
):  # fmt: skip
    """(run, fresh) for a key: a FINISHED run is reused (the caller marks it RUNNING only if it
    writes to it; renamed when `name` changed); unfinished or duplicate runs are deleted."""
    runs = existing.get(key, [])
    keep = next((r for r in runs if r.info.status == "FINISHED"), None)
    for r in runs:
        if r is not keep:
            client.delete_run(r.info.run_id)
            log(f"  mlflow: replaced the unfinished run {r.info.run_id} of {key}")
    if keep is not None:
        if keep.info.run_name != name:
            client.update_run(keep.info.run_id, name=name)
        for k, v in (tags or {}).items():
            if keep.data.tags.get(k) != v:
                client.set_tag(keep.info.run_id, k, v)
        return keep, False
    tags = {KEY_TAG: key, EPOCHS_TAG: "0", **(tags or {})}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return client.create_run(exp_id, start_time=start_time, tags=tags, run_name=name), True


def trial_run_name(group: str, config: dict) -> str:
    """A trial's MLflow run name: its grid group and seed (`lr_scheme=nb201 seed=0`; `seed=0`
    when the grid has no other key)."""
    seed = f"seed={config.get('seed', 0)}"
    return seed if group in ("", "all") else f"{group} {seed}"


def _status_times(status) -> dict[str, tuple[int | None, int | None]]:
    """run_id -> (start, end) in ms from the trials' status files (`started`, and `updated` once
    the trial is final): when its search ran, not when it was logged."""
    out: dict[str, tuple[int | None, int | None]] = {}
    if status is None or not len(status) or "run_id" not in status:
        return out
    final = {"completed", "stopped", "diverged"}
    for r in status.to_dict("records"):
        start, end = r.get("started"), r.get("updated")
        ms = lambda t: int(float(t) * 1000) if t is not None and not _isnan(t) else None  # noqa: E731
        out[r["run_id"]] = (ms(start), ms(end) if r.get("status") in final else None)
    return out


def _section(group: str) -> str:
    """A grid group label as an MLflow metric-name prefix (its chart section)."""
    text = re.sub(r"[^\w\-. :]", "_", group.replace("=", ":"))
    return text or "all"


def _log_metrics(client, run_id: str, items: list[tuple[str, float, int]]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(k, float(v), now, int(s)) for k, v, s in items if v is not None and math.isfinite(v)
    ]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])


def _epoch_metrics(trial, start: int) -> list[tuple[str, float, int]]:
    """Per-epoch metrics of epochs >= start, with the op magnitudes m(t, o) of Eq.11 exactly as the
    criteria read them (criteria.cell_magnitudes): `magnitude.<op>` of the cell type the criteria
    read by default (NAS-Bench-201, -1Shot1: their one; DARTS: normal), and
    `magnitude.<cell>.<op>` of each other cell type (DARTS: reduce)."""
    from ray_nas.criteria import cell_magnitudes

    items = []
    ep = trial.epochs
    mags = cell_magnitudes(trial.weights, trial.cells, trial.space)  # cell -> [T+1, K]
    names = {
        cell: [f"magnitude.{op}" if i == 0 else f"magnitude.{cell}.{op}" for op in trial.ops]
        for i, cell in enumerate(mags)
    }
    for t in range(start, len(ep["epoch"])):
        items.extend((name, float(ep[name][t]), t) for name in EPOCH_METRICS)
        for cell, m in mags.items():
            items.extend((name, float(v), t) for name, v in zip(names[cell], m[t]))
    return items


def log_job(
    spec, result, log: Callable[[str], None] = print, report_path: str | None = None
) -> dict:
    """Write (or complete) the job's MLflow experiment from what `offline.evaluate.run_evaluate`
    computed (`result`: its trials, selections, summary and summary_text). Returns counts.

    Raises TrackingOutage (one line) when the backend cannot be reached or fails meanwhile; what
    was logged so far is completed, not duplicated, by the next call.
    """
    from mlflow.exceptions import MlflowException

    try:
        return _log_job(spec, result, log, report_path)
    except (TrackingError, MlflowException, OSError) as e:
        first = first_line(e, 300)
        raise TrackingOutage(
            f"MLflow logging to {spec.tracking_uri} failed ({type(e).__name__}: {first})"
        ) from None


def _log_job(spec, result, log: Callable[[str], None], report_path: str | None) -> dict:
    from ray_nas.config import flatten, resolved_job_dict

    t0 = time.perf_counter()
    check_tracking(spec.tracking_uri)
    client = _client(spec.tracking_uri)
    exp_id = _experiment(client, spec.name)
    existing = _runs_by_key(client, exp_id)
    parent, parent_fresh = _get_or_create(
        client, exp_id, existing, f"job:{spec.name}", spec.name, None, log
    )
    pid = parent.info.run_id
    if not parent_fresh:
        client.update_run(pid, status="RUNNING")  # the summary artifacts are rewritten below
    counts = {"created": 0, "updated": 0, "unchanged": 0, "epochs_logged": 0}
    res = getattr(result, "results", None)
    groups = res.groups if res is not None else {}
    times = _status_times(res.status if res is not None else None)
    for trial in result.trials:
        start, end = times.get(trial.run_id, (None, None))
        name = trial_run_name(groups.get(trial.run_id, ""), trial.config)
        run, fresh = _get_or_create(
            client, exp_id, existing, f"trial:{trial.run_id}", name, pid, log,
            tags={RUN_ID_TAG: trial.run_id}, start_time=start,
        )  # fmt: skip
        rid = run.info.run_id
        done = int(run.data.tags.get(EPOCHS_TAG, "0")) if not fresh else 0
        items = _epoch_metrics(trial, done)
        if not fresh and not items:
            counts["unchanged"] += 1  # nothing new: no call at all for this run
            continue
        counts["created" if fresh else "updated"] += 1
        if fresh:
            params = {
                k: json.dumps(v) if isinstance(v, list) else str(v)
                for k, v in flatten(trial.config).items()
            }
            params["run_id"] = trial.run_id
            from mlflow.entities import Param

            client.log_batch(rid, params=[Param(k, v[:6000]) for k, v in params.items()])
        else:
            client.update_run(rid, status="RUNNING")  # a crash from here on gets the run replaced
        _log_metrics(client, rid, items)
        counts["epochs_logged"] += len(trial.epochs["epoch"]) - done
        client.set_tag(rid, EPOCHS_TAG, str(len(trial.epochs["epoch"])))
        client.set_terminated(rid, "FINISHED", end_time=end)
    latest = parent.data.metrics if not parent_fresh else {}
    _log_summary(client, pid, result.summary, getattr(result, "metric", ""), latest)
    _log_parent(client, pid, spec, result, resolved_job_dict(spec), report_path)
    client.set_terminated(pid, "FINISHED")
    log(f"mlflow: experiment {spec.name!r} at {spec.tracking_uri}: {counts['created']} trial runs created, "
        f"{counts['updated']} updated, {counts['unchanged']} unchanged, {counts['epochs_logged']} epochs logged ({time.perf_counter() - t0:.1f}s)")  # fmt: skip
    return counts


def _log_summary(client, pid: str, summary, metric: str, latest: dict) -> None:
    """The printed summary's numbers on the parent run, one chart section per grid group:
    `<group>/<criterion>.<metric>_mean|<metric>_std|stop_epoch|fired` (metric: the score column,
    e.g. retrain_acc; values that changed only)."""
    score = f"{metric}_" if metric else ""
    names = {"mean": f"{score}mean", "std": f"{score}std", "stop_epoch": "stop_epoch",
             "fired": "fired"}  # fmt: skip
    items = []
    for r in summary.to_dict("records"):
        base = f"{_section(str(r['group']))}/{metric_name(str(r['label']))}"
        for col, name in names.items():
            v = r.get(col)
            if v is None or _isnan(v):
                continue
            if latest.get(f"{base}.{name}") != float(v):
                items.append((f"{base}.{name}", float(v), 0))
    _log_metrics(client, pid, items)


def _isnan(v) -> bool:
    try:
        return math.isnan(v)
    except TypeError:
        return False


def _log_parent(client, pid: str, spec, result, job_dict: dict, report_path: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "job.yaml").write_text(yaml.safe_dump(job_dict, sort_keys=False))
        result.summary.to_csv(Path(tmp) / "summary.csv", index=False)
        (Path(tmp) / "summary.txt").write_text(result.summary_text + "\n")
        for name in ("job.yaml", "summary.csv", "summary.txt"):
            client.log_artifact(pid, str(Path(tmp) / name))
    if report_path and Path(report_path).is_file():
        client.log_artifact(pid, report_path)


def log_artifact_to_job(spec, path: str) -> None:
    """Attach a file (the HTML report) to the job's parent run, if the job was evaluated."""
    check_tracking(spec.tracking_uri)
    client = _client(spec.tracking_uri)
    exp = client.get_experiment_by_name(spec.name)
    if exp is None:
        return
    runs = _runs_by_key(client, exp.experiment_id).get(f"job:{spec.name}", [])
    if runs:
        client.log_artifact(runs[0].info.run_id, path)


#: The MLflow experiment that holds one run per set of compared jobs.
COMPARE_EXPERIMENT = "ray_nas-compare"


def log_comparison(uri: str, jobs: list[str], files: list[str], log=print) -> str:
    """Attach the comparison's files to the run keyed `compare:<job>+<job>...` of the
    COMPARE_EXPERIMENT (created once, its artifacts replaced on a rerun); returns its run id."""
    t0 = time.perf_counter()
    check_tracking(uri)
    client = _client(uri)
    exp_id = _experiment(client, COMPARE_EXPERIMENT)
    key = "compare:" + "+".join(jobs)
    run, fresh = _get_or_create(
        client, exp_id, _runs_by_key(client, exp_id), key, " vs ".join(jobs), None, log
    )
    rid = run.info.run_id
    if fresh:
        client.log_param(rid, "jobs", json.dumps(jobs)[:6000])
    else:
        client.update_run(rid, status="RUNNING")
    for path in files:
        client.log_artifact(rid, path)
    client.set_terminated(rid, "FINISHED")
    log(f"mlflow: comparison run {rid} in experiment {COMPARE_EXPERIMENT!r} at {uri} "
        f"({time.perf_counter() - t0:.1f}s)")  # fmt: skip
    return rid
