"""The cluster launcher configs pass Ray's own validator, offline (no cloud calls)."""

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["cluster.yaml", "cluster-local.yaml"]
SHARED = "/mnt/shared"


def _validate(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", CONFIGS)
def test_config_passes_rays_validator(name):
    prepared = _validate(_load(name))
    assert prepared["file_mounts"] == {"~/ray_nas": "."}
    setup = " ".join(prepared["setup_commands"])
    assert "pip install -q -e ~/ray_nas" in setup
    assert "ray[default,tune]==2.60.*" in setup
    # Every node mounts the shared store at the same path before anything runs.
    init = " ".join(prepared["initialization_commands"])
    assert f"mountpoint -q {SHARED}" in init and f"{SHARED}/runs" in init
    head = " ".join(prepared["head_start_ray_commands"])
    assert "mlflow server" in head and "--host 127.0.0.1 --port 5000" in head


def test_aws_gpu_workers_autoscale_from_zero():
    prepared = _validate(_load("cluster.yaml"))
    head = prepared["available_node_types"][prepared["head_node_type"]]
    workers = [
        t for n, t in prepared["available_node_types"].items() if n != prepared["head_node_type"]
    ]
    assert head["resources"].get("GPU", 0) == 0
    assert any(t["resources"].get("GPU", 0) >= 1 and t["min_workers"] == 0 for t in workers)


def test_fractional_gpu_in_node_resources_is_rejected():
    import jsonschema

    broken = _load("cluster.yaml")
    worker = next(n for n in broken["available_node_types"] if n != broken["head_node_type"])
    broken["available_node_types"][worker]["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_rough_edges(name):
    """Auth mode explicit on every node, no hard-coded home, the MLflow server stoppable by PID,
    sudo only where the SSH user is not root, the dashboard on 127.0.0.1."""
    text = (ROOT / name).read_text()
    prepared = _validate(_load(name))
    setup = " ".join(prepared["setup_commands"])
    assert "export RAY_AUTH_MODE=disabled" in setup
    assert "/home/ubuntu" not in text
    head = " ".join(prepared["head_start_ray_commands"])
    assert "> $HOME/mlflow/server.pid" in head and "sqlite:///$HOME/mlflow/mlflow.db" in head
    assert f"ray exec {name} 'kill -- -$(cat ~/mlflow/server.pid)'" in text
    assert "--dashboard-host=0.0.0.0" not in head
    for cmd in prepared["initialization_commands"]:
        assert "sudo" not in cmd.replace("|| echo sudo)", "")  # every sudo is conditional
    assert "rsync" in text.split("cluster_name:")[0] and "6.5 GB" in text


def test_end_of_run_hint_opens_a_tracking_server():
    from ray_nas.cli.commands import mlflow_hint

    assert mlflow_hint("sqlite:///mlflow.db") == "mlflow ui --backend-store-uri sqlite:///mlflow.db"
    hint = mlflow_hint("http://127.0.0.1:5000")
    assert (
        hint.startswith("open http://127.0.0.1:5000") and "ray attach cluster.yaml -p 5000" in hint
    )
    assert "--backend-store-uri" not in hint
