"""The offline stage of NAS-Bench-1Shot1 searches: a NAS-Bench-101 record file (official format,
3 cells x 3 runs, written by tests/test_nb101_table.py's writer) converted to a table, a store of
1Shot1 trajectories evaluated with it through each trial's space (its cells' graph hash in the
table's `hash` column), the report's Figure 4 layout, and the one-line errors before any work.

One store is written through store.TrialWriter (hand-made op and connection weights whose
discretised cells are the table's three and one that is not in it), so every looked-up score is
known; another comes from a tiny real search (fake data), whose recorded cells the test then
writes into a record file of their own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tensorboardX.record_writer import RecordWriter

from ray_nas import api, cli, report, store
from ray_nas.config import config_json, expand_grid, load_spec
from ray_nas.offline.evaluate import run_evaluate
from ray_nas.spaces import get_space
from ray_nas.spaces.nb1shot1 import cell_text
from ray_nas.tables import nb101 as nb101_table
from tests.test_nb101_table import _metrics, _row

from .conftest import render

S1 = get_space("nb1shot1_s1")
#: space 1's connection weights (`connection_rows` order: output <- v0..v4, v3 <- v0..v2,
#: v4 <- v0..v3): output <- v3, v4; v3 <- v1, v2; v4 <- v2, v3, so every block feeds the output
#: and each op pattern below is its own cell
S1_CONNECTIONS = [0, 0, 0, 1, 1] + [0, 1, 1] + [0, 0, 1, 1]
#: op of each choice block (index into the space's ops: maxpool3x3, conv3x3, conv1x1)
PATTERNS = {"A": (1, 1, 1, 1), "B": (1, 0, 2, 1), "C": (2, 2, 2, 2), "D": (0, 0, 0, 0)}
#: each seed's cell per epoch 0..7; D is not in the table
SEED_CELLS = {0: "AABBCCDA", 1: "ABBCCCDC"}
#: the table's cells: (params, [(valid, test) of the 3 runs], fractions)
RUNS = {
    "A": (2_000_000, [(0.895, 0.900), (0.900, 0.905), (0.905, 0.910)]),
    "B": (3_000_000, [(0.925, 0.930), (0.930, 0.935), (0.935, 0.940)]),
    "C": (1_000_000, [(0.905, 0.910), (0.910, 0.915), (0.915, 0.920)]),
}
TEST_PCT = {k: 100 * np.mean([t for _, t in runs]) for k, (_, runs) in RUNS.items()}
CRITERIA = ["final", "oracle", {"name": "ss_eq12", "op": "conv3x3-bn-relu"}]


def _alpha(space, pattern: str, epoch: int) -> np.ndarray:
    """[steps, 3] raw op weights whose argmax per block is the pattern's op (blocks past the
    pattern's 4, space 3's fifth, take conv3x3)."""
    ops = PATTERNS[pattern] + (1,) * (space.steps - 4)
    alpha = np.full((space.steps, 3), 0.1 * epoch / 7)
    alpha[np.arange(space.steps), ops] = 2.0
    return alpha


def _connections(space) -> np.ndarray:
    """[C] raw connection weights: S1_CONNECTIONS on space 1, uniform elsewhere."""
    n = len(space.connection_rows())
    return np.array(S1_CONNECTIONS if space.name == "nb1shot1_s1" else [0.0] * n, dtype=float)


def _softmax_groups(space, raw: np.ndarray) -> np.ndarray:
    """Softmax of the raw connection weights within each (cell, edge) group, as stored."""
    out, i = np.empty_like(raw), 0
    for _cell, _edge, n in space.connection_groups():
        z = np.exp(raw[i : i + n] - raw[i : i + n].max())
        out[i : i + n] = z / z.sum()
        i += n
    return out


def _cell(space, pattern: str):
    return space.cell_of(_alpha(space, pattern, 0), _connections(space))


def write_record_file(path: Path, cells: dict[str, tuple], runs: dict[str, tuple]) -> None:
    """The official record format: each cell (pruned matrix, ops) x 3 runs at 108 epochs, runs
    interleaved as in the official file; runs[key] = (params, [(valid, test) fractions] x 3)."""
    w = RecordWriter(str(path))
    for run in range(3):
        for key, (matrix, ops) in cells.items():
            params, accs = runs[key]
            valid, test = accs[run]
            w.write(_row(matrix, ops, 108, _metrics(params, valid, test, 1000.0 + run, 108)))
    w.close()


@pytest.fixture(scope="module")
def table_path(tmp_path_factory) -> Path:
    """The three cells A, B, C of space 1, 3 runs each, in the official record format, converted
    with --only-1shot1 (space 1)."""
    tmp = tmp_path_factory.mktemp("nb101")
    record = tmp / "nasbench_tiny.tfrecord"
    cells = {k: (_cell(S1, k).pruned_matrix, _cell(S1, k).pruned_ops) for k in RUNS}
    write_record_file(record, cells, RUNS)
    out = tmp / "nb1shot1.parquet"
    df = nb101_table.convert(record, out, only_1shot1=["nb1shot1_s1"], progress=None)
    assert len(df) == 3 and df["in_s1"].all() and (df["runs"] == 3).all()
    return out


def write_job(root: Path, benchmark: str | None, grid: dict | None = None, **search) -> Path:
    job = {
        "name": "exp8_tiny", "store": str(root / "store"),
        "tracking_uri": f"sqlite:///{root}/mlflow.db",
        "search": {"space": "nb1shot1_s1", "dataset": "cifar10", "epochs": 7, **search},
        "grid": grid if grid is not None else {"space": ["nb1shot1_s1", "nb1shot1_s2"], "seed": [0, 1]},
        "criteria": CRITERIA, "evaluate": {"benchmark": benchmark, "retrain": None},
    }  # fmt: skip
    path = root / "exp8_tiny.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def write_store(spec) -> dict[str, tuple[str, int]]:
    """Each trial's trajectory (SEED_CELLS) through TrialWriter; returns run_id -> (space, seed)."""
    out = {}
    for cfg, rid, _point in expand_grid(spec):
        space = get_space(cfg.space)
        cells = SEED_CELLS[cfg.seed]
        alpha = np.stack([_alpha(space, p, t) for t, p in enumerate(cells)])
        z = np.exp(alpha - alpha.max(-1, keepdims=True))
        weights = z / z.sum(-1, keepdims=True)
        rows = [
            {"epoch": t, "train_loss": 1.0, "train_acc": 50.0, "valid_loss": 1.0,
             "valid_acc": 40.0 + t, "lr_weights": 0.025, "lr_alpha": 3e-4, "hessian_eig": None,
             "seconds": 1.0, "arch": cell_text(_cell(space, p))}
            for t, p in enumerate(cells)
        ]  # fmt: skip
        conn = np.tile(_connections(space), (len(cells), 1))
        soft = np.tile(_softmax_groups(space, _connections(space)), (len(cells), 1))
        w = store.TrialWriter(spec.job_dir, rid, space.ops, space.edges, config_json(cfg),
                                   connections=space.connection_rows())  # fmt: skip
        w.write_all(rows, alpha, weights, connections=(conn, soft))
        out[rid] = (cfg.space, cfg.seed)
    return out


@pytest.fixture(scope="module")
def evaluated(table_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("exp8")
    spec = load_spec(write_job(root, str(table_path)))
    trials = write_store(spec)
    result = run_evaluate(spec, log=lambda s: None)
    return spec, trials, result


def test_selections_carry_the_looked_up_accuracies(evaluated):
    spec, trials, result = evaluated
    sel = result.selections
    assert len(sel) == len(trials) * len(CRITERIA) and result.metric == "cifar10_test"
    for r in sel.itertuples():
        space, seed = trials[r.run_id]
        cells = SEED_CELLS[seed]
        if r.label == "final":
            assert r.stop_epoch == 7
        if r.label == "oracle" and space == "nb1shot1_s1":  # the best looked-up epoch: B's first
            assert r.stop_epoch == cells.index("B") and r.fired
        key = cells[r.stop_epoch]
        assert r.arch == cell_text(_cell(get_space(space), key))
        if space == "nb1shot1_s1" and key in RUNS:
            assert r.cifar10_test == pytest.approx(TEST_PCT[key])
            assert r.params_m == pytest.approx(RUNS[key][0] / 1e6)
        else:  # pattern D, and every space-2 cell: not in the table
            assert np.isnan(r.cifar10_test) and np.isnan(r.params_m)
        assert json.loads(r.params) is not None  # the criterion's parameters, not the table's
    # space 2's cells are not in the table: its oracle has nothing to choose
    s2 = sel[(sel.label == "oracle") & sel.run_id.map(lambda rid: trials[rid][0] == "nb1shot1_s2")]
    assert len(s2) == 2 and not s2.fired.any()
    summary = result.summary.set_index(["group", "label"])
    assert summary.loc[("space=nb1shot1_s1", "oracle"), "mean"] == pytest.approx(TEST_PCT["B"])
    final = (TEST_PCT["A"] + TEST_PCT["C"]) / 2  # seed 0 ends on A, seed 1 on C
    assert summary.loc[("space=nb1shot1_s1", "final"), "mean"] == pytest.approx(final)


def test_api_matches_evaluate(evaluated):
    spec, trials, result = evaluated
    job = api.open_job(spec)
    pd.testing.assert_frame_equal(job.selections(), result.selections)
    rid = next(r for r, (space, seed) in trials.items() if space == "nb1shot1_s1" and seed == 0)
    curve = job.trajectories()[rid].metrics["cifar10_test"]
    want = [TEST_PCT.get(k, np.nan) for k in SEED_CELLS[0]]
    np.testing.assert_allclose(curve, want)


def test_report_draws_figure4_per_space(evaluated, chromium, tmp_path):
    spec, _trials, _result = evaluated
    page = report.build_report(spec)
    fig = page[page.index('id="figure4"') : page.index("</details>", page.index('id="figure4"'))]
    titles = re.findall(r"<figcaption>([^<]*)</figcaption>", fig)
    assert titles == ["(a) nb1shot1_s1", "(b) nb1shot1_s2", "(c) nb1shot1_s1", "(d) nb1shot1_s2"]
    assert fig.count("<svg") == 3 and "± 1 std over 2 seeds" in fig
    assert "no cell of these epochs is in the benchmark table" in fig  # (b): space 2's cells
    # (a) at epoch 2 both seeds are on B; (c) the magnitudes of the three ops
    assert f"epoch 2: {TEST_PCT['B']:.2f}" in fig
    for op in S1.ops:
        assert f"{op}, epoch 0:" in fig
    path = tmp_path / "report.html"
    path.write_text(page)
    _png, console = render(chromium, path, tmp_path)
    assert console == []


def _cli(capsys, *argv) -> tuple[int, str]:
    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip()


def test_table_without_the_key_column_is_one_line_exit_2(tmp_path, capsys):
    """The built-in NAS-Bench-201 table has no `hash` column: evaluate and sweep say so before
    any work, naming the table, the column and how to make one."""
    job = write_job(tmp_path, "nb201", grid={"seed": [0]})
    for argv in (["evaluate", job], ["sweep", job]):
        rc, err = _cli(capsys, *argv)
        assert rc == 2 and "\n" not in err, err
        assert "nb201_test_accuracy.parquet is not a NAS-Bench-101 table: no 'hash' column" in err
        assert "ray-nas benchmark convert-nb101" in err
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    "search,grid,fragment",
    [
        ({"space": "darts"}, {"seed": [0]}, "search space 'darts' has no tabular benchmark"),
        ({}, {"space": ["nb201", "nb1shot1_s3"]}, "nb201: arch, nb1shot1_s3: hash"),
        ({"dataset": "cifar100"}, {"seed": [0]}, "cifar100_test (the cifar100 searches' test"),
    ],
)
def test_spaces_the_table_cannot_score_are_refused(tmp_path, capsys, search, grid, fragment):
    job = write_job(tmp_path, str(tmp_path / "t.parquet"), grid=grid, **search)
    rc, err = _cli(capsys, "sweep", job, "--dry-run")
    assert rc == 2 and fragment in err and "\n" not in err, err
    assert "evaluate.benchmark" in err or "evaluate.metric" in err


def test_sweep_checks_the_table_its_offline_stage_will_read(table_path, tmp_path):
    """`ray-nas sweep`'s check before any trial runs: a matching table passes (the built-in
    `nb201` name too, which the check once took for a missing file), a missing one names the
    command that makes the kind the job's spaces need."""
    from ray_nas.cli.commands import _check_benchmark
    from ray_nas.config import SpecError

    _check_benchmark(load_spec(write_job(tmp_path, str(table_path))))
    nb201_job = write_job(tmp_path, "nb201", grid={"seed": [0]}, space="nb201")
    # (its criteria without the 1Shot1 op, which an NB201 job refuses)
    _check_benchmark(load_spec(nb201_job, ["criteria=[final, oracle]"]))
    with pytest.raises(SpecError, match=r"absent.parquet not found.*convert-nb101"):
        _check_benchmark(load_spec(write_job(tmp_path, str(tmp_path / "absent.parquet"))))


def test_a_real_search_is_scored_by_its_cells_hashes(tmp_path):
    """A tiny real search on space 1 (fake data, C=4, 3 cells, 3 epochs of one step); its
    recorded cells go into a record file (distinct accuracies), converted with --only-1shot1;
    evaluate then scores every epoch by its cell's hash and the oracle picks the best one."""
    from ray_nas.cli.commands import search_command
    from ray_nas.spaces.nb1shot1 import parse_cell_text

    job = write_job(tmp_path, None, grid={}, lr_scheme="nb1shot1", dataset="fake", channels=4,
                    layers=3, epochs=3, batch_size=8, steps_per_epoch=1, hessian_every=0,
                    device="cpu")  # fmt: skip
    assert search_command(str(job), [], progress=False) == 0
    (trial,), _ = store.read_job(load_spec(job).job_dir)
    archs = list(trial.epochs["arch"])
    assert len(archs) == 4 and len(trial.connections) == len(S1.connection_rows())
    keys = list(dict.fromkeys(parse_cell_text(a)[2] for a in archs))
    cells = {parse_cell_text(a)[2]: parse_cell_text(a)[:2] for a in archs}
    runs = {h: (1000 + i, [(0.80 + i / 100, 0.81 + i / 100 + r / 1000) for r in range(3)])
            for i, h in enumerate(keys)}  # fmt: skip
    write_record_file(tmp_path / "cells.tfrecord", cells, runs)
    table = tmp_path / "cells.parquet"
    df = nb101_table.convert(
        tmp_path / "cells.tfrecord", table, only_1shot1=["nb1shot1_s1"], progress=None
    )
    assert len(df) == len(keys) and df["in_s1"].all()  # every recorded cell is a space-1 cell

    spec = load_spec(job, [f"evaluate.benchmark={table}", "evaluate.metric=cifar10_test"])
    sel = run_evaluate(spec, log=lambda s: None).selections.set_index("label")
    acc = [100 * (0.81 + keys.index(parse_cell_text(a)[2]) / 100 + 0.001) for a in archs]
    assert sel.loc["final", "cifar10_test"] == pytest.approx(acc[-1])
    assert sel.loc["oracle", "stop_epoch"] == int(np.argmax(acc))
    assert sel.loc["oracle", "cifar10_test"] == pytest.approx(max(acc))
