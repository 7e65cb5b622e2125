"""Helpers shared by tests (not part of the package)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from ray_nas.tracking import KEY_TAG


def count_runs(uri: str, name: str) -> dict[str, int]:
    """What a job logged to the MLflow server at `uri` under experiment `name`: {'runs': n} plus,
    over its trial runs, 'valid_acc_points' (logged points) and 'duplicate_steps' (points logged
    twice at one epoch)."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return {"runs": 0}
    runs = client.search_runs([exp.experiment_id], max_results=50000)
    out = {"runs": len(runs)}
    for r in runs:
        if r.data.tags.get(KEY_TAG, "").startswith("trial:"):
            hist = client.get_metric_history(r.info.run_id, "valid_acc")
            out["valid_acc_points"] = out.get("valid_acc_points", 0) + len(hist)
            steps = [m.step for m in hist]
            out["duplicate_steps"] = out.get("duplicate_steps", 0) + len(steps) - len(set(steps))
    return out
