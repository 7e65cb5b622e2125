"""The Grafana dashboard queries only metrics that exist: the trials' own (metrics.METRICS, with the
names Ray gives them in Prometheus) or Ray's, checked against the installed Ray."""

from __future__ import annotations

import json
import re
import time
import types
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ray_nas.search import metrics
from ray_nas.search.sweep import ray_metric

from .conftest import REPO

DASHBOARD = REPO / "dashboards" / "grafana" / "ray_nas_sweep.json"

#: Ray's own metrics the dashboard queries (node agent, raylet and GCS export them).
RAY_METRICS = {"ray_node_cpu_utilization", "ray_node_gpus_utilization", "ray_node_mem_used", "ray_node_gram_used",
               "ray_resources", "ray_actors"}  # fmt: skip

OURS = {metrics.prometheus_name(n): n for n in metrics.METRICS}


def panels(d: dict):
    for p in d.get("panels", []):
        yield p
        yield from panels(p)  # rows may nest panels


def queries(d: dict) -> list[str]:
    exprs = [t["expr"] for p in panels(d) for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        q = v.get("query")
        exprs.append(q["query"] if isinstance(q, dict) else q)
    return [e for e in exprs if e and e != "prometheus"]


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names) of every `metric{...}` or bare `metric` in a PromQL expression (or a
    Grafana `label_values(metric{...}, label)` query)."""
    e = re.sub(
        r"label_values\(\s*(.*),\s*\w+\s*\)\s*$", r"\1", expr
    )  # keep the metric, drop the label
    e = re.sub(r'"[^"]*"', '""', e)  # string literals: label values, $variables
    e = re.sub(r"\[[^\]]*\]", "", e)  # range selectors [2m]
    e = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", e)  # grouping label lists
    out = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\}|\()?", e):
        if m.group(2) != "(":  # not a function call
            out.append((m.group(1), set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", m.group(2) or ""))))
    return out


def test_dashboard_loads():
    d = json.loads(DASHBOARD.read_text())
    assert d["title"] and d["uid"] and d["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)) > 10
    assert all(
        t["datasource"]["uid"] == "${datasource}" for p in panels(d) for t in p.get("targets", [])
    )


def test_every_queried_metric_is_exported():
    d = json.loads(DASHBOARD.read_text())
    seen = set()
    for expr in queries(d):
        for name, labels in selectors(expr):
            seen.add(name)
            assert name in OURS or name in RAY_METRICS, (
                f"{name!r} in {expr!r} is neither ours nor a known Ray metric"
            )
            if (
                name in OURS
            ):  # only the tags the trial sets (Ray adds SessionName, NodeAddress, WorkerId)
                assert labels <= set(metrics.METRICS[OURS[name]][1]), (name, labels)
    assert set(OURS) <= seen, f"exported but never shown: {set(OURS) - seen}"
    assert RAY_METRICS <= seen


def test_ray_metrics_exist_in_installed_ray():
    """Each Ray metric name appears in the installed Ray (its exporters or its own dashboards)."""
    import ray

    root = Path(ray.__file__).parent
    text = "\n".join(p.read_text(errors="ignore") for pattern in ("dashboard/**/*.py", "dashboard/**/*.json")
                     for p in root.glob(pattern))  # fmt: skip
    for name in RAY_METRICS:
        assert re.search(rf"\b{name}\b", text), f"{name} not found under {root}"


@pytest.mark.ray
@pytest.mark.slow
def test_trial_metrics_reach_prometheus_under_these_names(ray_session):
    """A worker's TrialMetrics show up on the node's metrics endpoint as `prometheus_name(...)`."""
    ray = ray_session

    @ray.remote(num_cpus=0)
    def fake_trial(seconds: float):
        m = metrics.TrialMetrics(ray_metric, "grafana_test", "r0", ("none", "nor_conv_3x3"))
        for epoch in range(3):
            rec = types.SimpleNamespace(
                epoch=epoch, seconds=1.5, valid_acc=50.0, weights=np.full((6, 2), 0.5)
            )
            m.record(rec)
        time.sleep(seconds)  # a gauge lives as long as its process reports it
        return True

    ref = fake_trial.remote(40)
    port = ray._private.worker.global_worker.node.metrics_export_port
    want = {n for p, n in OURS.items() if "run_id" in metrics.METRICS[n][1]}
    found: set = set()
    deadline = (
        time.monotonic() + 35
    )  # metrics reach the agent every metrics_report_interval_ms (10 s)
    while time.monotonic() < deadline and found != want:
        time.sleep(2)
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        )
        found = {
            n
            for n in want
            if re.search(rf'^{metrics.prometheus_name(n)}\{{[^}}]*run_id="r0"', text, re.M)
        }
    ray.cancel(ref, force=True)
    assert found == want, f"missing on the metrics endpoint: {sorted(want - found)}"
    # the magnitudes carry their cell type (NAS-Bench-201's one: shared), as the dashboard filters
    assert re.search(r'^ray_nas_op_magnitude\{[^}]*cell="shared"[^}]*op="nor_conv_3x3"', text, re.M)
