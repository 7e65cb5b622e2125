"""Shared fixtures: tiny configs, a job file writer, and one local Ray for the `ray` tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# One intra-op thread: tests share 2 cores with Ray workers and subprocesses, and OpenMP threads
# that spin on an oversubscribed machine make tiny models 10x slower.
import torch  # noqa: E402

torch.set_num_threads(1)

TINY_SEARCH = {
    "dataset": "fake",
    "channels": 4,
    "cells": 1,
    "epochs": 3,
    "batch_size": 16,
    "steps_per_epoch": 3,
    "hessian_every": 0,
    "device": "cpu",
}


@pytest.fixture
def write_job(tmp_path):
    """write_job(**top-level keys) -> path of a job YAML whose store is inside tmp_path."""

    def _write(name: str = "tiny", search: dict | None = None, **top) -> Path:
        job = {"name": name, "store": str(tmp_path / "store"), "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
               "search": {**TINY_SEARCH, **(search or {})}, **top}  # fmt: skip
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(job, sort_keys=False))
        return path

    return _write


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs, a logical GPU) shared by every `ray`-marked test."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
