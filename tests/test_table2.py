"""The paper's Table 2 as one job: bundle axes (rows setting several search keys), stable
run_ids, the dry-run count, and the report's methods table on a tiny store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ray_nas.cli import main
from ray_nas.config import SpecError, expand_grid, load_spec, spec_from_dict
from ray_nas.report import build_report, load_report_data, methods_table
from ray_nas.search.trial import run_trial
from ray_nas.tables import load_table, lookup

from .conftest import TINY_SEARCH

REPO = Path(__file__).resolve().parents[1]
TABLE2 = REPO / "jobs/paper/table2.yaml"


def test_table2_dry_run_counts_35_trials(capsys):
    assert main(["sweep", str(TABLE2), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "35 trials" in out
    rows = [line.split()[1] for line in out[:35]]
    labels = ["DrNAS", "DARTS-V1", "DARTS-ES", "GAEA-bilevel", "EX-GAEA-bilevel", "GAEA-ERM",
              "EX-GAEA-ERM"]  # fmt: skip
    assert rows == [f"method={m}" for m in labels for _ in range(5)]
    cfgs = {
        p["method"]["label"]: c for c, _rid, p in expand_grid(load_spec(TABLE2)) if p["seed"] == 0
    }
    assert (cfgs["DrNAS"].algorithm, cfgs["DrNAS"].batch_size, cfgs["DrNAS"].channels) == (
        "drnas",
        256,
        16,
    )
    erm = cfgs["GAEA-ERM"]
    assert (erm.algorithm, erm.objective, erm.batch_size, erm.channels) == ("gaea", "erm", 160, 24)
    assert cfgs["GAEA-bilevel"].objective == "bilevel" and cfgs["EX-GAEA-ERM"].weights.lr == 3e-4
    # the paper's DARTS-ES rows: separate runs at half SS-DARTS's batch
    assert (cfgs["DARTS-ES"].batch_size, cfgs["DARTS-V1"].batch_size) == (128, 256)


def test_bundle_rows_keep_the_run_ids_of_flat_jobs():
    """The DARTS-V1 and DARTS-ES rows are the searches of table2_ss_darts.yaml (batch 256 and
    128): the same run_ids."""
    grid = expand_grid(load_spec(TABLE2))
    v1 = [rid for _c, rid, p in grid if p["method"]["label"] in ("DARTS-V1", "DARTS-ES")]
    ss = [rid for _c, rid, _p in expand_grid(load_spec(REPO / "jobs/paper/table2_ss_darts.yaml"))]
    assert sorted(v1) == sorted(ss) and len(ss) == 10
    # and they do not depend on the axis name, the labels or the row order
    spec = load_spec(TABLE2)
    rows = spec.grid["method"]
    renamed = {"name": "x", "search": spec.search, "criteria": list(spec.criteria),
               "grid": {"row": [{**r, "label": f"r{i}"} for i, r in enumerate(reversed(rows))],
                        "seed": [0]}}  # fmt: skip
    a = {rid for _c, rid, p in expand_grid(spec) if p["seed"] == 0}
    assert {rid for _c, rid, _p in expand_grid(spec_from_dict(renamed))} == a


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"m": [{"algorithm": "gaea", "bogus": 1}]}, "grid.m[0].bogus: not a search key"),
        ({"m": [{"algorithm": "nope"}]}, "algorithm: unknown value 'nope'"),
        (
            {"m": [{"label": "a", "algorithm": "gaea"}, {"label": "b", "algorithm": "gaea"}]},
            "resolve to the same search config",
        ),
        ({"m": [{"algorithm": "gaea", "criteria": ["dartsplus_sc"]}]}, "not in the job's criteria"),
        ({"m": [{"label": "a", "seed": 1}, {"label": "a", "seed": 2}]}, "labels must differ"),
        ({"m": [{"gaea": {"eta": -1.0}}]}, "gaea.eta: must be > 0"),
        ({"m": [{"drnas": {"reg": "l1"}}]}, "drnas.reg: unknown value 'l1'"),
    ],
)
def test_bundle_errors_are_one_line(grid, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("[", r"\[")) as e:
        spec_from_dict({"name": "x", "criteria": ["final"], "grid": grid})
    assert "\n" not in str(e.value)


def test_report_renders_the_methods_table_on_a_tiny_store(tmp_path):
    raw = {"name": "t2", "store": str(tmp_path / "store"),
           "search": {**TINY_SEARCH, "epochs": 2, "steps_per_epoch": 2, "batch_size": 8},
           "grid": {"method": [
               {"label": "DARTS-V1", "algorithm": "darts_v1",
                "criteria": [{"name": "dartsplus_sc", "k": 2}, "final"]},
               {"label": "GAEA-ERM", "algorithm": "gaea", "objective": "erm"}],
               "seed": [0, 1]},
           "criteria": ["final", {"name": "dartsplus_sc", "k": 2}],
           "evaluate": {"benchmark": "nb201", "retrain": None}}  # fmt: skip
    spec = spec_from_dict(raw)
    for cfg, rid, _point in expand_grid(spec):
        run_trial(spec, cfg, rid, progress=False, log=lambda s: None)
    head, rows = methods_table(load_report_data(spec))
    assert head[:4] == ["method", "search (s)", "CIFAR-10 valid", "CIFAR-10 test"]
    assert [r[0] for r in rows] == [
        "DARTS-V1 (dartsplus_sc[k=2])",
        "DARTS-V1",
        "GAEA-ERM",
        "GAEA-ERM (dartsplus_sc[k=2])",
    ]
    # GAEA-ERM's final row: the built-in table's test accuracy of each seed's last arch
    d = load_report_data(spec)
    finals = [t.epochs["arch"][-1] for t in d.trials if t.config["algorithm"] == "gaea"]
    acc = lookup(load_table("nb201"), finals)["cifar10_test"].to_numpy()
    assert rows[2][3] == f"{acc.mean():.2f} ± {acc.std():.2f}"
    assert rows[2][2] == "–"  # the built-in table has no valid columns
    assert all(np.isfinite(float(r[1])) for r in rows)
    assert "Methods (the paper&#x27;s Table 2 layout)" in build_report(spec) or (
        "Methods (the paper's Table 2 layout)" in build_report(spec)
    )
