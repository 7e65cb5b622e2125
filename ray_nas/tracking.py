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
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

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
    create_tags: dict[str, str] | None = None, create: bool = True,
):  # fmt: skip
    """(run, fresh) for a key: a FINISHED run is reused (the caller marks it RUNNING only if it
    writes to it; renamed when `name` changed); unfinished or duplicate runs are deleted. A new
    run is created unless `create` is False: (None, True), the caller writes it whole."""
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
    if not create:
        return None, True
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


#: The MLflow database schema (its alembic revision, MLflow 3.17's) whose tables `write_new_runs`
#: writes rows for; a database of another revision is written through MLflow's API instead.
SCHEMA_REVISION = "dc11669786a5"


def fast_store(client, log: Callable[[str], None] = print):
    """The SQL store that `write_new_runs` and `_sql_runs_by_key` may use directly: the client's
    SQL backend when its schema is SCHEMA_REVISION (MLflow's tables as `write_new_runs` knows
    them); None for a server or file store, and None with one line logged for another schema
    revision (a newer or older MLflow), whose rows only MLflow's own calls may write."""
    store = _sql_store(client)
    if store is None:
        return None
    try:
        import sqlalchemy

        with store.ManagedSessionMaker() as session:
            found = session.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
            revision = found.scalar()
    except Exception as e:  # noqa: BLE001 - no such table or column: not a schema we know
        revision = f"unreadable ({type(e).__name__})"
    if revision != SCHEMA_REVISION:
        log(f"  mlflow: database schema {revision}, not {SCHEMA_REVISION} (MLflow 3.17) that "
            "ray_nas writes rows for directly: logging through MLflow's API (slower)")  # fmt: skip
        return None
    return store


def _sql_runs_by_key(store, exp_id: str) -> dict[str, list]:
    """`_runs_by_key` in one query on an SQL backend: the experiment's active runs with a key tag,
    each as (run_id, status, run_name) and the tags ray_nas reads (key, store, epochs, run_id,
    parent), not their metrics and params (MLflow's search_runs loads those: ~7 ms a run)."""
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag

    runs, tags = SqlRun.__table__, SqlTag.__table__
    wanted = (KEY_TAG, STORE_TAG, EPOCHS_TAG, RUN_ID_TAG, "mlflow.parentRunId")
    query = (
        sqlalchemy.select(runs.c.run_uuid, runs.c.status, runs.c.name, tags.c.key, tags.c.value)
        .join(tags, tags.c.run_uuid == runs.c.run_uuid)
        .where(runs.c.experiment_id == int(exp_id), runs.c.lifecycle_stage == "active",
               tags.c.key.in_(wanted))
    )  # fmt: skip
    found: dict[str, tuple] = {}
    with store.ManagedSessionMaker() as session:
        for rid, status, name, key, value in session.execute(query):
            found.setdefault(rid, (status, name, {}))[2][key] = value
    out: dict[str, list] = {}
    for rid, (status, name, run_tags) in found.items():
        if run_tags.get(KEY_TAG):
            info = SimpleNamespace(run_id=rid, status=status, run_name=name)
            run = SimpleNamespace(info=info, data=SimpleNamespace(tags=run_tags))
            out.setdefault(run_tags[KEY_TAG], []).append(run)
    return out


def write_new_runs(store, exp_id: str, runs: list[dict]) -> None:
    """New runs, whole, in one transaction of INSERTs (one statement a table) on an SQL backend
    (`fast_store`): exactly the rows MLflow's `create_run` (with tags and run_name), `log_batch` (params,
    metrics) and `set_terminated` (FINISHED) leave, in every table they write: `runs`, `tags`,
    `params`, `metrics`, `latest_metrics`. Each of `runs`: {"run_id", "name", "start", "end"
    (ms or None: now), "tags": {key: value}, "params": [(key, value)], "metrics": [(key, value,
    step)] (finite values), "timestamp" (ms, of every point)}.

    MLflow's SQL store creates a run in its own transaction (~40 ms: it reads the experiment and
    the run's inputs back), builds one ORM object per metric point and commits every call
    separately (a disk sync each): ~1 ms a point, 50 minutes for 10,000 trials of 50 epochs.
    Names and lengths are checked by MLflow's own rules first, so nothing is written that its
    calls would refuse; a crash before the commit leaves nothing of these runs."""
    import sqlalchemy
    from mlflow.entities import LifecycleStage, RunStatus, SourceType
    from mlflow.store.tracking.dbmodels.models import (
        SqlExperiment,
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
    from mlflow.utils.uri import append_to_uri_path
    from mlflow.utils.validation import (
        MAX_PARAM_VAL_LENGTH,
        _validate_metric_name,
        _validate_param,
        _validate_tag,
    )

    if not runs:
        return
    experiments = SqlExperiment.__table__
    with store.ManagedSessionMaker() as session:
        location = session.execute(
            sqlalchemy.select(experiments.c.artifact_location).where(
                experiments.c.experiment_id == int(exp_id)
            )
        ).scalar_one()
    now = int(time.time() * 1000)
    run_rows, tag_rows, param_rows, metric_rows, latest_rows = [], [], [], [], []
    names: set[str] = set()
    param_names: set[str] = set()
    for r in sorted(runs, key=lambda r: r["run_id"]):  # the indexes' order: see _insert
        rid = r["run_id"]
        run_rows.append((
            rid, r["name"], SourceType.to_string(SourceType.UNKNOWN), "", "", "unknown",
            RunStatus.to_string(RunStatus.FINISHED), r["start"] or now, r["end"] or now, None, "",
            LifecycleStage.ACTIVE, append_to_uri_path(location, rid, store.ARTIFACTS_FOLDER_NAME),
            int(exp_id),
        ))  # fmt: skip
        for k, v in {**r["tags"], MLFLOW_RUN_NAME: r["name"]}.items():
            t = _validate_tag(k, v)
            tag_rows.append((t.key, t.value, rid))
        for k, v in r["params"]:
            if k not in param_names:
                param_names.add(_validate_param(k, v).key)
            param_rows.append((k, v[:MAX_PARAM_VAL_LENGTH], rid))
        ts, latest = int(r["timestamp"]), {}
        for key, value, step in _points(r["metrics"]):
            metric_rows.append((key, value, ts, step, False, rid))
            latest[key] = (key, value, step)  # the last of its key: the highest (step, value)
        latest_rows.extend((k, v, ts, s, False, rid) for k, v, s in latest.values())
        names.update(latest)
    for key in names:
        _validate_metric_name(key)
    with store.ManagedSessionMaker(read_only=False) as session:
        conn = session.connection()
        with _sqlite_cache(conn):
            for model, rows in ((SqlRun, run_rows), (SqlTag, tag_rows), (SqlParam, param_rows),
                                (SqlMetric, metric_rows), (SqlLatestMetric, latest_rows)):  # fmt: skip
                _insert(conn, model.__table__, COLUMNS[model.__tablename__], rows)


#: SQLite's page cache (KiB) while write_new_runs inserts: its default (2 MB) made each insert
#: into the metrics indexes a page read once the file outgrew it (4x slower at 2,000 runs)
SQLITE_CACHE_KIB = 65536


@contextmanager
def _sqlite_cache(conn):
    """SQLITE_CACHE_KIB of page cache on this SQLite connection meanwhile (then its own setting
    again; a setting of the connection alone, nothing in the file); other databases: nothing."""
    if conn.dialect.name != "sqlite":
        yield
        return
    cursor = conn.connection.cursor()
    try:
        before = cursor.execute("PRAGMA cache_size").fetchone()[0]
        cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        yield
    finally:
        cursor.execute(f"PRAGMA cache_size = {int(before)}")
        cursor.close()


def _points(metrics: list[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
    """A run's (key, value, step) points once each (MLflow's primary key: one timestamp per
    call), sorted by key, step and value (see _insert)."""
    return sorted(set(metrics), key=lambda m: (m[0], m[2], m[1]))


def append_runs(store, runs: list[dict]) -> None:
    """Finished runs' new epochs (a resumed search) in one transaction on an SQL backend
    (`fast_store`): the rows MLflow's `update_run` (RUNNING), `log_batch` (the new points and
    tags) and `set_terminated` leave, `latest_metrics` by MLflow's rule (the highest step, then
    timestamp, then value, the stored one included). Each of `runs`: {"run_id", "end" (ms or
    None: now), "tags": {key: value} (set or replaced), "metrics": [(key, value, step)] (finite
    values), "timestamp" (ms, of every point)}."""
    import sqlalchemy
    from mlflow.entities import RunStatus
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun, SqlTag
    from mlflow.utils.validation import _validate_metric_name, _validate_tag

    if not runs:
        return
    now = int(time.time() * 1000)
    metric_rows, tag_rows, names = [], [], set()
    latest: dict[tuple[str, str], tuple] = {}  # (run, key) -> (key, value, timestamp, step)
    for r in sorted(runs, key=lambda r: r["run_id"]):
        rid, ts = r["run_id"], int(r["timestamp"])
        for key, value, step in _points(r["metrics"]):
            metric_rows.append((key, value, ts, step, False, rid))
            latest[(rid, key)] = (key, value, ts, step)
            names.add(key)
        for k, v in r["tags"].items():
            t = _validate_tag(k, v)
            tag_rows.append((t.key, t.value, rid))
    for key in names:
        _validate_metric_name(key)
    lm, tags, run_table = SqlLatestMetric.__table__, SqlTag.__table__, SqlRun.__table__
    ids = sorted({r["run_id"] for r in runs})
    by = sqlalchemy.bindparam
    with store.ManagedSessionMaker(read_only=False) as session:
        conn = session.connection()
        stale = []  # (run, key) of stored latest values the new points replace
        for i in range(0, len(ids), 500):
            query = sqlalchemy.select(lm.c.run_uuid, lm.c.key, lm.c.value, lm.c.timestamp,
                                      lm.c.step).where(lm.c.run_uuid.in_(ids[i : i + 500]))  # fmt: skip
            for rid, key, value, ts, step in conn.execute(query):
                new = latest.get((rid, key))
                if new is None:
                    continue
                if (new[3], new[2], new[1]) > (step, ts, value):
                    stale.append({"rid": rid, "k": key})
                else:
                    del latest[(rid, key)]  # the stored value stays the latest
        where = lambda t: t.delete().where(t.c.run_uuid == by("rid"), t.c.key == by("k"))  # noqa: E731
        if stale:
            conn.execute(where(lm), stale)
        if tag_rows:
            conn.execute(where(tags), [{"rid": rid, "k": k} for k, _v, rid in tag_rows])
        with _sqlite_cache(conn):
            _insert(conn, SqlMetric.__table__, COLUMNS["metrics"], metric_rows)
            rows = [(k, v, ts, s, False, rid) for (rid, _k), (k, v, ts, s) in latest.items()]
            _insert(conn, lm, COLUMNS["latest_metrics"], sorted(rows, key=lambda r: r[5]))
            _insert(conn, tags, COLUMNS["tags"], tag_rows)
        conn.execute(
            run_table.update()
            .where(run_table.c.run_uuid == by("rid"))
            .values(status=RunStatus.to_string(RunStatus.FINISHED), end_time=by("end_ms")),
            [{"rid": r["run_id"], "end_ms": r["end"] or now} for r in runs],
        )


#: The columns of the rows `write_new_runs` builds, table by table (MLflow's names)
COLUMNS = {
    "runs": ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id",
             "status", "start_time", "end_time", "deleted_time", "source_version",
             "lifecycle_stage", "artifact_uri", "experiment_id"),
    "tags": ("key", "value", "run_uuid"),
    "params": ("key", "value", "run_uuid"),
    "metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
    "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
}  # fmt: skip


def _insert(conn, table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Rows (tuples in `columns`' order) into `table` in one executemany; on SQLite straight to
    its driver (SQLAlchemy's per-row parameter processing was half of the time), elsewhere
    through SQLAlchemy. The rows come sorted by run, then key and step (the order of MLflow's
    run_uuid and (run_uuid, key, step) indexes: an insert lands next to the one before)."""
    import sqlalchemy

    if not rows:
        return
    if conn.dialect.name == "sqlite":
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join("?" * len(columns))
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', rows)
        finally:
            cursor.close()
        return
    conn.execute(sqlalchemy.insert(table), [dict(zip(columns, r)) for r in rows])


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

    On an SQL backend of MLflow's schema SCHEMA_REVISION (`fast_store`), new trial runs are
    written whole and resumed ones get their new epochs, many runs a transaction
    (`write_new_runs`, `append_runs`); otherwise (a server, another schema, `fast_sql=False`)
    each run takes a few calls: created with its tags, its params, metrics and epoch count in
    batches (`log_batches`), then finished.

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
    fast = fast_store(client, log) if fast_sql else None
    existing = _sql_runs_by_key(fast, exp_id) if fast else _runs_by_key(client, exp_id)
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
    pending: list[dict] = []  # new runs for write_new_runs
    updates: list[dict] = []  # finished runs' new epochs for append_runs
    for trial in result.trials:
        n_epochs = str(len(trial.epochs["epoch"]))
        start, end = times.get(trial.run_id, (None, None))
        name = trial_run_name(groups.get(trial.run_id, ""), trial.config)
        tags = {RUN_ID_TAG: trial.run_id, "mlflow.parentRunId": pid}
        run, fresh = _get_or_create(
            client, exp_id, existing, f"trial:{trial.run_id}", name, pid, log, tags=tags,
            start_time=start, create_tags={EPOCHS_TAG: n_epochs},  # a new run gets every epoch
            create=fast is None,  # on an SQL backend, a new run is written whole below
        )  # fmt: skip
        done = int(run.data.tags.get(EPOCHS_TAG, "0")) if not fresh else 0
        items = _epoch_metrics(trial, done)
        if not fresh and not items:
            counts["unchanged"] += 1  # nothing new: no call at all for this run
            continue
        counts["created" if fresh else "updated"] += 1
        counts["epochs_logged"] += len(trial.epochs["epoch"]) - done
        params = []
        if fresh:
            text = {
                k: json.dumps(v) if isinstance(v, list) else str(v)
                for k, v in flatten(trial.config).items()
            }
            text["run_id"] = trial.run_id
            params = [(k, v[:6000]) for k, v in text.items()]
        if fast and not fresh:  # its new points, epoch count and end: one transaction
            updates.append({
                "run_id": run.info.run_id, "end": end, "tags": {EPOCHS_TAG: n_epochs},
                "timestamp": int(time.time() * 1000),
                "metrics": [(k, float(v), int(s)) for k, v, s in items if math.isfinite(v)],
            })  # fmt: skip
            if len(updates) >= NEW_RUNS_PER_TRANSACTION:
                append_runs(fast, updates)
                updates.clear()
            continue
        if fresh and fast:  # the run, its tags, params, metrics and end: one transaction
            tags = {KEY_TAG: f"trial:{trial.run_id}", EPOCHS_TAG: n_epochs, **tags}
            pending.append({
                "run_id": uuid.uuid4().hex, "name": name, "start": start, "end": end,
                "tags": tags, "params": params, "timestamp": int(time.time() * 1000),
                "metrics": [(k, float(v), int(s)) for k, v, s in items if math.isfinite(v)],
            })  # fmt: skip
            if len(pending) >= NEW_RUNS_PER_TRANSACTION:
                write_new_runs(fast, exp_id, pending)
                pending.clear()
            continue
        from mlflow.entities import Param, RunTag

        # otherwise its params, new metrics and epoch count in a few log_batch calls
        rid = run.info.run_id
        if not fresh:
            client.update_run(rid, status="RUNNING")  # a crash from here on gets the run replaced
        log_batches(client, rid, _metric_entities(items), [Param(k, v) for k, v in params],
                    [RunTag(EPOCHS_TAG, n_epochs)])  # fmt: skip
        client.set_terminated(rid, "FINISHED", end_time=end)
    if pending:
        write_new_runs(fast, exp_id, pending)
    if updates:
        append_runs(fast, updates)
    latest = client.get_run(pid).data.metrics if not parent_fresh else {}
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
