"""MLflow logging in batches (real MLflow on SQLite files): MLflow's per-call limits hold, the
SQL fast path leaves exactly the rows that the public calls leave, and reruns add nothing."""

import json

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


@pytest.mark.slow
def test_sql_fast_path_writes_what_log_batch_writes_and_reruns_add_nothing(tmp_path):
    store = write_store(str(tmp_path))
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps({"name": "golden", "store": store, "search": {"epochs": 30},
                               "criteria": ["final", "best_valid", {"name": "dartsplus_sc", "k": 2}],
                               "evaluate": {"benchmark": None, "retrain": None}}))  # fmt: skip
    spec = load_spec(job)
    result = run_evaluate(spec, log=lambda s: None)
    logged = {}
    for fast in (True, False):
        uri = f"sqlite:///{tmp_path}/{'fast' if fast else 'plain'}.db"
        s = spec.__class__(**{**spec.__dict__, "tracking_uri": uri})
        counts = tracking.log_job(s, result, log=lambda x: None, fast_sql=fast)
        assert counts["created"] == 6 and counts["epochs_logged"] == 6 * 31
        logged[fast] = _logged(uri, spec.name)
        first = count_runs(uri, spec.name)
        assert first == {"runs": 7, "valid_acc_points": 6 * 31, "duplicate_steps": 0}
        again = tracking.log_job(s, result, log=lambda x: None, fast_sql=fast)
        assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 6)
        assert count_runs(uri, spec.name) == first
    assert logged[True] == logged[False]
    status, params, tags, latest, hist = next(iter(logged[True].values()))
    assert status == "FINISHED" and tags[tracking.EPOCHS_TAG] == "31" and params["epochs"] == "30"
    assert [s for s, _v in hist["valid_acc"]] == list(range(31))  # criteria: on the parent run
