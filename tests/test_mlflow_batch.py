"""MLflow logging in batches (real MLflow on SQLite files): MLflow's per-call limits hold, the
SQL fast path leaves exactly the rows that the public calls leave (every table), reruns add
nothing, a resumed trial gets only its new epochs, and another schema revision takes the API."""

import json
import shutil
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunTag

from ray_nas import tracking
from ray_nas.config import load_spec
from ray_nas.offline.evaluate import run_evaluate

from .helpers import count_runs
from .nb201_golden import write_store


class Checked:
    """MLflow's client with each log_batch first put through MLflow's own check of its limits
    (the one a tracking server applies to a request: 1,000 metrics, 100 params, 100 tags, 1,000
    in all), which the SQL store alone does not apply."""

    def __init__(self, client):
        self.client, self.calls = client, []

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        from mlflow.utils.validation import _validate_batch_log_limits

        _validate_batch_log_limits(metrics, params, tags)
        self.calls.append((len(metrics), len(params), len(tags)))
        return self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)


def test_log_batches_keeps_within_mlflows_limits(tmp_path):
    client = tracking._client(f"sqlite:///{tmp_path}/m.db")
    exp = tracking._experiment(client, "limits")
    rid = client.create_run(exp).info.run_id
    metrics = [Metric(f"m{i % 25}", float(i), 0, i // 25) for i in range(2500)]
    params = [Param(f"p{i}", str(i)) for i in range(150)]
    tags = [RunTag(f"t{i}", str(i)) for i in range(120)]
    checked = Checked(client)
    with pytest.raises(Exception, match="1000"):  # what the split avoids
        checked.log_batch(rid, metrics=metrics[:1001])
    assert tracking.log_batches(checked, rid, metrics, params, tags) == 3
    assert checked.calls == [(800, 100, 100), (930, 50, 20), (770, 0, 0)]
    run = client.get_run(rid)
    assert len(run.data.params) == 150 and sum(k.startswith("t") for k in run.data.tags) == 120
    assert [m.value for m in client.get_metric_history(rid, "m3")] == [
        float(i) for i in range(3, 2500, 25)
    ]


def _tables(db: Path, window: tuple[int, int]) -> dict[str, list]:
    """Every row of every table of an MLflow SQLite file (but the schema's alembic_version),
    sorted, with each run's uuid (wherever it occurs: run rows, tags such as mlflow.parentRunId,
    artifact URIs) replaced by its key tag and each integer within `window` (ms: when the log
    calls ran; time stamps of points, runs, experiments) replaced by "now"."""
    con = sqlite3.connect(db)
    try:
        ids = dict(con.execute("SELECT run_uuid, value FROM tags WHERE key = ?",
                               (tracking.KEY_TAG,)).fetchall())  # fmt: skip
        out = {}
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            if table == "alembic_version":
                continue
            rows = []
            for row in con.execute(f'SELECT * FROM "{table}"'):
                cells = []
                for v in row:
                    if isinstance(v, str):
                        for rid, key in ids.items():
                            v = v.replace(rid, key)
                    elif isinstance(v, int) and window[0] <= v <= window[1]:
                        v = "now"
                    cells.append(v)
                rows.append(tuple(cells))
            out[table] = sorted(rows, key=repr)
        return out
    finally:
        con.close()


def _shorter(result, epochs: int):
    """The result with every trial cut to its first `epochs` epochs (as if still searching)."""
    cut = [replace(t, epochs={k: v[:epochs] for k, v in t.epochs.items()},
                   alpha=t.alpha[:epochs], weights=t.weights[:epochs]) for t in result.trials]  # fmt: skip
    return replace(result, trials=cut)


@pytest.mark.slow
def test_sql_fast_path_writes_what_the_api_writes_reruns_add_nothing_resumes_append(
    tmp_path, monkeypatch
):
    """One evaluated store logged to copies of one new MLflow database: by the SQL fast path
    (`write_new_runs`), and twice as a resumed search (first 21 epochs, then all 31) by MLflow's
    API (create_run, log_batch, update_run, set_terminated) and by the fast path
    (`write_new_runs`, then `append_runs`): the three files hold the same rows in every table;
    a rerun changes no row. A database of another schema revision than the rows were written
    for (a newer MLflow's) takes the API, with one line saying so."""
    store = write_store(str(tmp_path))
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps({"name": "golden", "store": store, "search": {"epochs": 30},
                               "criteria": ["final", "best_valid", {"name": "dartsplus_sc", "k": 2}],
                               "evaluate": {"benchmark": None, "retrain": None}}))  # fmt: skip
    spec = load_spec(job)
    result = run_evaluate(spec, log=lambda s: None)
    empty = tmp_path / "empty.db"
    tracking._client(f"sqlite:///{empty}").search_experiments()  # MLflow's tables, once
    lines, tables = [], {}
    for how in ("fast", "api", "resumed"):
        db = tmp_path / f"{how}.db"
        shutil.copy(empty, db)
        s = replace(spec, tracking_uri=f"sqlite:///{db}")
        fast = how != "api"
        start = int(time.time() * 1000)
        if how != "fast":
            first = tracking.log_job(s, _shorter(result, 21), log=lines.append, fast_sql=fast)
            assert (first["created"], first["epochs_logged"]) == (6, 6 * 21)
        counts = tracking.log_job(s, result, log=lines.append, fast_sql=fast)
        if how != "fast":
            assert (counts["created"], counts["updated"]) == (0, 6)
            assert counts["epochs_logged"] == 6 * 10  # only the new epochs
        else:
            assert (counts["created"], counts["epochs_logged"]) == (6, 6 * 31)
        window = (start, int(time.time() * 1000) + 1)
        tables[how] = _tables(db, window)
        again = tracking.log_job(s, result, log=lines.append, fast_sql=fast)
        assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 6)
        assert _tables(db, (start, int(time.time() * 1000) + 1)) == tables[how]
        assert count_runs(s.tracking_uri, spec.name) == {
            "runs": 7,
            "valid_acc_points": 6 * 31,
            "duplicate_steps": 0,
        }
    fast = tables["fast"]
    for table in ("runs", "tags", "params", "metrics", "latest_metrics"):
        assert fast[table], table
        assert fast[table] == tables["api"][table], table
        assert fast[table] == tables["resumed"][table], table
    assert fast == tables["api"] == tables["resumed"]  # and every other table MLflow has
    assert len(fast["runs"]) == 7 and {r[6] for r in fast["runs"]} == {"FINISHED"}  # status
    assert not any("schema" in line for line in lines)
    logged = _logged(f"sqlite:///{tmp_path}/fast.db", spec.name)
    status, params, tags, latest, hist = next(iter(logged.values()))
    assert status == "FINISHED" and tags[tracking.EPOCHS_TAG] == "31" and params["epochs"] == "30"
    assert [s for s, _v in hist["valid_acc"]] == list(range(31))  # criteria: on the parent run
    client = tracking._client(f"sqlite:///{empty}")
    assert tracking.fast_store(client, log=lines.append) is not None
    monkeypatch.setattr(tracking, "SCHEMA_REVISION", "0123456789ab")
    assert tracking.fast_store(client, log=lines.append) is None
    assert "0123456789ab" in lines[-1] and "MLflow's API" in lines[-1]


def _logged(uri: str, name: str) -> dict:
    """Every trial run's params, tags (less MLflow's own), latest metrics and metric histories,
    by the trial's key tag."""
    client = tracking._client(uri)
    exp = client.get_experiment_by_name(name)
    out = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        key = run.data.tags[tracking.KEY_TAG]
        if not key.startswith("trial:"):
            assert run.info.status == "FINISHED"
            continue
        hist = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
                for k in run.data.metrics}  # fmt: skip
        tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
        out[key] = (run.info.status, run.data.params, tags, run.data.metrics, hist)
    return out
