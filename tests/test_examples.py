"""The example jobs under jobs/examples/, each run at a tiny size (fewer epochs and steps through
`--set`, the store and MLflow in a temporary folder): one search, the offline stage, and what each
example is for (the DARTS space's export; the 1Shot1 table lookup, with a tiny NAS-Bench-101 table
converted from a record file this test writes)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ray_nas import cli
from ray_nas.config import load_spec

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "jobs" / "examples"
TINY = ["search.epochs=2", "search.steps_per_epoch=2", "search.batch_size=16"]


def _sets(tmp_path: Path, *extra: str) -> list[str]:
    sets = [
        f"store={tmp_path}/store",
        f"tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        *TINY,
        *extra,
    ]
    return [a for s in sets for a in ("--set", s)]


def _search_and_evaluate(job: Path, args: list[str], capsys) -> pd.DataFrame:
    assert cli.main(["search", str(job), "--quiet", *args]) == 0
    assert cli.main(["evaluate", str(job), *args]) == 0
    spec = load_spec(job, [a for a in args if a != "--set"])
    out = capsys.readouterr().out
    assert "where the results are:" in out and f"{spec.job_dir}/selections.parquet" in out
    sel = pd.read_parquet(f"{spec.job_dir}/selections.parquet")
    assert set(sel.label) == {c if isinstance(c, str) else _label(c) for c in spec.criteria}
    return sel


def _label(item) -> str:
    from ray_nas.criteria import parse_criterion

    return parse_criterion(item).label


def test_every_example_is_listed_here():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == [
        "darts_space.yaml", "drnas_nb201.yaml", "gaea_nb201.yaml", "nb1shot1.yaml",
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["gaea_nb201", "drnas_nb201"])
def test_nb201_examples_search_and_retrain(name, tmp_path, capsys):
    job = EXAMPLES / f"{name}.yaml"
    retrain = ["evaluate.retrain.epochs=1", "evaluate.retrain.steps_per_epoch=2"]
    sel = _search_and_evaluate(job, _sets(tmp_path, *retrain), capsys)
    assert sel["retrain_acc"].between(0, 100).all()
    assert set(sel["criterion"]) == {"final", "best_valid", "ss_eq12"}


def test_darts_space_example_searches_retrains_and_exports(tmp_path, capsys):
    job = EXAMPLES / "darts_space.yaml"
    overrides = [
        "evaluate.retrain.overrides.epochs=1",
        "evaluate.retrain.overrides.steps_per_epoch=2",
    ]
    args = _sets(tmp_path, *overrides)
    sel = _search_and_evaluate(job, args, capsys)
    assert sel["retrain_acc"].between(0, 100).all()
    assert cli.main(["export", str(job), *args]) == 0
    spec = load_spec(job, [a for a in args if a != "--set"])
    text = Path(spec.job_dir, "genotypes.py").read_text()
    compile(text, "genotypes.py", "exec")
    assert text.count("= Genotype(") == len(sel) == 2


def test_nb1shot1_example_scores_each_epoch_with_a_converted_table(tmp_path, capsys):
    """The search first (on `fake` images: no CIFAR-10 at test time), then a NAS-Bench-101 record
    file holding exactly the cells it visited, converted with `ray-nas benchmark convert-nb101`;
    the offline stage then looks every selection up in it, retraining nothing."""
    from tensorboardX.record_writer import RecordWriter

    from ray_nas.spaces.nb1shot1.unit import parse_cell_text
    from tests.test_nb101_table import _metrics, _row

    job = EXAMPLES / "nb1shot1.yaml"
    table = tmp_path / "nb1shot1.parquet"
    args = _sets(tmp_path, "search.dataset=fake", "evaluate.metric=cifar10_test",
                 f"evaluate.benchmark={table}")  # fmt: skip
    assert cli.main(["search", str(job), "--quiet", *args]) == 0
    spec = load_spec(job, [a for a in args if a != "--set"])
    archs = list(dict.fromkeys(pd.read_parquet(f"{spec.job_dir}/epochs")["arch"]))
    record = tmp_path / "tiny.tfrecord"
    w = RecordWriter(str(record))
    test_acc = {}
    for i, arch in enumerate(archs):  # each visited cell its own accuracy, 3 runs each
        matrix, ops, key = parse_cell_text(arch)
        test_acc[arch] = 0.80 + 0.01 * i
        for run in range(3):
            metrics = _metrics(1_000_000, 0.79 + 0.01 * i, test_acc[arch], 100.0 + run, 108)
            w.write(_row(matrix, ops, 108, metrics))
    w.close()
    assert cli.main(["benchmark", "convert-nb101", str(record), "-o", str(table)]) == 0
    assert cli.main(["evaluate", str(job), *args]) == 0
    sel = pd.read_parquet(f"{spec.job_dir}/selections.parquet").set_index("label")
    assert "retrain_acc" not in sel
    for label, r in sel.iterrows():
        assert r["cifar10_test"] == pytest.approx(100 * test_acc[r["arch"]]), label
    assert sel.loc["oracle", "cifar10_test"] == pytest.approx(100 * max(test_acc.values()))
