"""MLflow (the only module importing it): written by the offline stage from the Parquet store.

Layout: one experiment per job (its `name`, tagged `mlflow.experimentKind` =
`custom_model_development`, MLflow's own record of a training experiment; MLflow 3.17's UI picks
its GenAI or training side from its toggle or the link's `workflowType`, which the printed link
sets: cli.commands.RUNS_VIEW);
one parent run for the job (resolved spec, summary table, report as artifacts; per grid group and
criterion `<group>/<criterion>.<score>_mean`, `_std`, `.stop_epoch`, `.fired`: the printed
summary's numbers); one child run per trial, named by its grid group and seed (`lr_scheme=nb201
seed=0`; the run_id is its `run_id` param and `ray_nas.run_id` tag), started and ended when its
search did (the status file's times), with its resolved config as params and only per-epoch
metrics (step=epoch), so the run's charts are its curves.

Idempotent: every run carries a deterministic key tag `ray_nas.key` (`job:<name>`,
`trial:<run_id>`); a job's parent run also carries its store (`ray_nas.store`, the job folder), so
two stores of one job name (a quick `--set store=...` search) are two parent runs, each with its
own trials (a trial run is found under its parent); a parent from before that tag is adopted. A rerun finds the runs by key; a FINISHED run only gets what is new (epochs
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

from ray_nas.config import flatten, resolved_job_dict
from ray_nas.criteria import cell_magnitudes
from ray_nas.errors import first_line

KEY_TAG = "ray_nas.key"
EPOCHS_TAG = "ray_nas.epochs"
STORE_TAG = "ray_nas.store"
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
#: MLflow's limits on one `log_batch` call (mlflow.utils.validation): metrics, params, tags, and
#: all three together
MAX_METRICS, MAX_PARAMS, MAX_TAGS, MAX_ENTITIES = 1000, 100, 100, 1000


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


def store_key(spec) -> str:
    """The job's folder as the parent run's STORE_TAG: a URI as given, a local path absolute."""
    return spec.job_dir if "://" in spec.job_dir else os.path.abspath(spec.job_dir)


def _of_store(runs: list, key: str) -> list:
    """The parent runs of this store: tagged with it, else (none) those from before the tag."""
    mine = [r for r in runs if r.data.tags.get(STORE_TAG) == key]
    return mine or [r for r in runs if STORE_TAG not in r.data.tags]


def _get_or_create(
    client, exp_id: str, existing: dict, key: str, name: str, parent: str | None, log,
    tags: dict[str, str] | None = None, start_time: int | None = None,
    create_tags: dict[str, str] | None = None,
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
    tags = {KEY_TAG: key, EPOCHS_TAG: "0", **(tags or {}), **(create_tags or {})}
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


def log_batches(client, run_id: str, metrics=(), params=(), tags=()) -> int:
    """Everything of one run in as few `log_batch` calls as MLflow's limits allow (per call: at
    most MAX_METRICS metrics, MAX_PARAMS params, MAX_TAGS tags, MAX_ENTITIES in all; params and
    tags go with the first calls). Returns the number of calls."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    calls = 0
    while metrics or params or tags or not calls:
        p, params = params[:MAX_PARAMS], params[MAX_PARAMS:]
        t, tags = tags[:MAX_TAGS], tags[MAX_TAGS:]
        room = min(MAX_METRICS, MAX_ENTITIES - len(p) - len(t))
        m, metrics = metrics[:room], metrics[room:]
        if not (m or p or t):
            break
        client.log_batch(run_id, metrics=m, params=p, tags=t)
        calls += 1
    return calls


def _sql_store(client):
    """The client's SQL store (SQLite, PostgreSQL, MySQL backends), or None (a server, files)."""
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = client._tracking_client.store
    except (ImportError, AttributeError):
        return None
    return store if isinstance(store, SqlAlchemyStore) else None


def write_new_runs(client, runs: list[tuple[str, list, list]]) -> bool:
    """New runs' params and metrics, and their end (FINISHED), in one transaction of multi-row
    INSERTs when the backend is an SQL database (the rows MLflow's own log_batch and
    set_terminated leave: metric history, latest value per key, params, run status); False, with
    nothing written, when it is not, and the caller uses the public calls. `runs`: (MLflow run
    id, [Metric], [Param]) of runs create_run made and nothing else wrote to.

    MLflow's SQL store builds one ORM object per metric point, updates the latest values key by
    key and commits every call on its own (params, metrics, tags, status: each a disk sync): ~1 ms
    a point, 50 minutes for 10,000 trials of 50 epochs. Names are checked by MLflow's own rules
    first, so nothing is written that log_batch would refuse; a crash before the commit leaves
    the runs as create_run made them (RUNNING), which the next log replaces."""
    store = _sql_store(client)
    if store is None:
        return False
    try:
        import sqlalchemy
        from mlflow.store.tracking.dbmodels.models import (
            SqlLatestMetric,
            SqlMetric,
            SqlParam,
            SqlRun,
        )
        from mlflow.utils.validation import _validate_metric_name, _validate_param_name
    except ImportError:  # another MLflow layout: the public calls do it
        return False
    if not runs:
        return True
    metric_rows, latest_rows, param_rows, names = [], [], [], set()
    for run_id, metrics, params, *_end in runs:
        rows, latest = {}, {}
        for m in metrics:
            row = {"run_uuid": run_id, "key": m.key, "value": float(m.value),
                   "timestamp": int(m.timestamp), "step": int(m.step), "is_nan": False}  # fmt: skip
            rows[(m.key, row["timestamp"], row["step"], row["value"])] = row  # MLflow's key
            old = latest.get(m.key)
            if old is None or (row["step"], row["timestamp"], row["value"]) > (
                old["step"],
                old["timestamp"],
                old["value"],
            ):
                latest[m.key] = row
        metric_rows.extend(rows.values())
        latest_rows.extend(latest.values())
        param_rows.extend({"run_uuid": run_id, "key": p.key, "value": p.value} for p in params)
        names.update(latest)
    for key in names:
        _validate_metric_name(key)
    for key in {p["key"] for p in param_rows}:
        _validate_param_name(key)
    run_table = SqlRun.__table__
    with store.ManagedSessionMaker(read_only=False) as session:
        for table, rows in ((SqlParam, param_rows), (SqlMetric, metric_rows),
                            (SqlLatestMetric, latest_rows)):  # fmt: skip
            if rows:
                session.execute(sqlalchemy.insert(table.__table__), rows)
        now = int(time.time() * 1000)
        ends: dict[int, list[str]] = {}  # end time (ms; the trial's own where given) -> runs
        for rid, _m, _p, *end in runs:
            ends.setdefault(end[0] if end and end[0] is not None else now, []).append(rid)
        for end_time, rids in ends.items():
            session.execute(
                sqlalchemy.update(run_table)
                .where(run_table.c.run_uuid.in_(rids))
                .values(status="FINISHED", end_time=int(end_time))
            )
    return True


#: New runs written to an SQL backend together (write_new_runs): one transaction each so many
NEW_RUNS_PER_TRANSACTION = 200


def _metric_entities(items: list[tuple[str, float, int]]) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(k, float(v), now, int(s)) for k, v, s in items if v is not None and math.isfinite(v)
    ]


def _epoch_metrics(trial, start: int) -> list[tuple[str, float, int]]:
    """Per-epoch metrics of epochs >= start, with the op magnitudes m(t, o) of Eq.11 exactly as the
    criteria read them (criteria.cell_magnitudes): `magnitude.<op>` of the cell type the criteria
    read by default (NAS-Bench-201, -1Shot1: their one; DARTS: normal), and
    `magnitude.<cell>.<op>` of each other cell type (DARTS: reduce)."""
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
    spec,
    result,
    log: Callable[[str], None] = print,
    report_path: str | None = None,
    fast_sql: bool = True,
) -> dict:
    """Write (or complete) the job's MLflow experiment from what `offline.evaluate.run_evaluate`
    computed (`result`: its trials, selections, summary and summary_text). Returns counts.

    Each trial's run takes a few calls: created with its tags, its params, metrics and epoch
    count in batches (`log_batches`), a new run's metrics in one transaction on an SQL backend
    (`write_new_runs`, many runs a transaction; `fast_sql=False` uses log_batch there too), then finished.

    Raises TrackingOutage (one line) when the backend cannot be reached or fails meanwhile; what
    was logged so far is completed, not duplicated, by the next call.
    """
    from mlflow.exceptions import MlflowException

    try:
        return _log_job(spec, result, log, report_path, fast_sql)
    except (TrackingError, MlflowException, OSError) as e:
        first = first_line(e, 300)
        raise TrackingOutage(
            f"MLflow logging to {spec.tracking_uri} failed ({type(e).__name__}: {first})"
        ) from None


def _log_job(
    spec, result, log: Callable[[str], None], report_path: str | None, fast_sql: bool = True
) -> dict:
    t0 = time.perf_counter()
    check_tracking(spec.tracking_uri)
    client = _client(spec.tracking_uri)
    exp_id = _experiment(client, spec.name)
    existing = _runs_by_key(client, exp_id)
    where, key = store_key(spec), f"job:{spec.name}"
    parent, parent_fresh = _get_or_create(
        client, exp_id, {key: _of_store(existing.get(key, []), where)}, key, spec.name, None,
        log, tags={STORE_TAG: where},
    )  # fmt: skip
    pid = parent.info.run_id
    others = {  # the parent runs of other stores of this job name: their trials are not ours
        r.info.run_id
        for r in existing.get(key, [])
        if r.data.tags.get(STORE_TAG) not in (None, where)
    }
    existing = {
        k: [r for r in v if r.data.tags.get("mlflow.parentRunId") not in others]
        for k, v in existing.items()
        if k != key
    }
    if not parent_fresh:
        client.update_run(pid, status="RUNNING")  # the summary artifacts are rewritten below
    counts = {"created": 0, "updated": 0, "unchanged": 0, "epochs_logged": 0}
    res = getattr(result, "results", None)
    groups = res.groups if res is not None else {}
    times = _status_times(res.status if res is not None else None)
    sql = fast_sql and write_new_runs(client, [])  # an SQL backend (writes nothing)
    pending: list[tuple[str, list, list, int | None]] = []
    for trial in result.trials:
        n_epochs = str(len(trial.epochs["epoch"]))
        start, end = times.get(trial.run_id, (None, None))
        name = trial_run_name(groups.get(trial.run_id, ""), trial.config)
        run, fresh = _get_or_create(
            client, exp_id, existing, f"trial:{trial.run_id}", name, pid, log,
            tags={RUN_ID_TAG: trial.run_id, "mlflow.parentRunId": pid}, start_time=start,
            create_tags={EPOCHS_TAG: n_epochs},  # a new run gets every epoch below
        )  # fmt: skip
        rid = run.info.run_id
        done = int(run.data.tags.get(EPOCHS_TAG, "0")) if not fresh else 0
        items = _epoch_metrics(trial, done)
        if not fresh and not items:
            counts["unchanged"] += 1  # nothing new: no call at all for this run
            continue
        counts["created" if fresh else "updated"] += 1
        params = []
        if fresh:
            from mlflow.entities import Param

            text = {
                k: json.dumps(v) if isinstance(v, list) else str(v)
                for k, v in flatten(trial.config).items()
            }
            text["run_id"] = trial.run_id
            params = [Param(k, v[:6000]) for k, v in text.items()]
        else:
            client.update_run(rid, status="RUNNING")  # a crash from here on gets the run replaced
        from mlflow.entities import RunTag

        # a new run on an SQL backend: params, metrics and its end in one transaction;
        # otherwise its params, new metrics and epoch count in a few log_batch calls
        metrics = _metric_entities(items)
        counts["epochs_logged"] += len(trial.epochs["epoch"]) - done
        if fresh and sql:
            pending.append((rid, metrics, params, end))
            if len(pending) >= NEW_RUNS_PER_TRANSACTION:
                write_new_runs(client, pending)
                pending.clear()
            continue
        log_batches(client, rid, metrics, params, [RunTag(EPOCHS_TAG, n_epochs)])
        client.set_terminated(rid, "FINISHED", end_time=end)
    if pending:
        write_new_runs(client, pending)
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
    log_batches(client, pid, _metric_entities(items))


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
    runs = _of_store(_runs_by_key(client, exp.experiment_id).get(f"job:{spec.name}", []),
                     store_key(spec))  # fmt: skip
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


def experiment_id(uri: str, name: str) -> str | None:
    """The id of the job's MLflow experiment (for a link to its runs), or None."""
    try:
        from mlflow.tracking import MlflowClient

        exp = MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
    except Exception:  # noqa: BLE001 - only a link: the results are logged already
        return None
    return exp.experiment_id if exp is not None else None
