"""NAS-Bench-201 selections, report and retraining did not change with the space refactor (issue 13).

tests/data/nb201_selections_pre13.csv was made by tests/nb201_golden.py run against main before
issue 13 (commit 6c423da, `PYTHONPATH=/tmp/pre13 python tests/nb201_golden.py ...`, see that
file): a synthetic store of 6 trials x 30 epochs (4 seeds of the 5 ops, 2 of the 4 without
`none`), evaluated with the built-in NAS-Bench-201 table and the paper's 15 criteria, no MLflow.
Today's code must give every column of selections.parquet identically: run_ids, params text,
labels, decisions, stop epochs, archs, notes and the table's scores.

(The darts_es rows are the exception: its defaults were changed to R-DARTS as run since.)

tests/data/nb201_report.html: the report of that store (nb201_golden.report: under a job
whose grid names the store's two op sets, since the report at 6c423da could not chart two op
sets in one group; today's can, see the last test), normalised (store path, time written, CSS/JS and the resolved job
spec left out). Written by `python tests/nb201_golden.py report tests/data/nb201_report.html`
when the report moved to templates and fitted the magnitude charts' y axis to the data; it was
checked against the report 6c423da drew: the same but for the two magnitude charts' y ticks and
y coordinates (their legends, hover values and x coordinates unchanged), line breaks between
tags and the spelling of an escaped quote (&#39; for &#x27;). Rewritten when darts_es's defaults
became R-DARTS as run: only the darts_es rows and stop markers changed.
tests/data/nb201_retrain_pre13.csv: retrain.parquet of 2 trials on digits whose
15 selections were retrained (NAS-Bench-201's recipe, 2 epochs x 4 steps, C=4, N=1) by 6c423da.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ray_nas import store as stored
from ray_nas.config import load_spec
from ray_nas.offline.evaluate import run_evaluate

from .nb201_golden import TRIALS, report, retrain_job, selections

DATA = Path(__file__).parent / "data"
EXPECTED = DATA / "nb201_selections_pre13.csv"


def _read(text) -> pd.DataFrame:
    return pd.read_csv(text, keep_default_na=False, dtype={"run_id": str})


def test_nb201_selections_match_main_before_the_space_refactor(tmp_path):
    expected = _read(EXPECTED)
    assert len(expected) == len(TRIALS) * 15 and expected.fired.nunique() == 2
    now = _read(io.StringIO(selections(str(tmp_path)).to_csv(index=False)))
    # darts_es's defaults changed on purpose after the fixture (R-DARTS as run: start_epoch 11,
    # ev_freq 2; tests/test_fidelity_upstream.py): its rows are new, every other row as it was
    changed = expected.criterion == "darts_es"
    assert changed.sum() == len(TRIALS) and (now.criterion == "darts_es").equals(changed)
    pd.testing.assert_frame_equal(
        now[~changed].reset_index(drop=True), expected[~changed].reset_index(drop=True)
    )
    assert set(now[changed].params) == {
        '{"delta": 4, "ev_freq": 2, "factor": 1.3, "rollback": true, "start_epoch": 11, "window": 5}'
    }

    # the report of the same store: every chart, table and note as the fixture has it
    assert report(str(tmp_path)) == (DATA / "nb201_report.html").read_text()


def test_nb201_retraining_reuses_a_cache_written_before_the_refactor(tmp_path):
    """retrain.parquet as 6c423da wrote it is read as a cache (no arch retrained, the same
    accuracies, the file's layout kept), and an arch retrained now scores exactly as then."""
    old = pd.read_csv(DATA / "nb201_retrain_pre13.csv")
    spec = load_spec(retrain_job(str(tmp_path)))
    cache_path = f"{spec.job_dir}/retrain.parquet"
    fresh = old["arch"].iloc[[0, 5]].tolist()  # two archs left out of the cache: trained now
    stored.write_frame(old[~old["arch"].isin(fresh)], cache_path)
    lines: list[str] = []
    sel = run_evaluate(spec, log=lines.append).selections
    # darts_es (its defaults now R-DARTS as run) selects one arch that no criterion selected when
    # the fixture was written, and no longer one that only it selected then: 10 distinct
    # genotypes, the 2 left out and that new one trained now
    assert any("10 distinct genotypes x 1 seeds, 7 cached, 3 to train" in x for x in lines), lines
    new = sel[~sel["arch"].isin(old["arch"])]
    assert set(new["criterion"]) == {"darts_es"} and new["arch"].nunique() == 1
    sel = sel[sel["arch"].isin(old["arch"])]
    want = old.set_index("arch")["test_acc"]
    assert sel["retrain_acc"].tolist() == want.loc[sel["arch"]].tolist()
    assert "params_m" not in sel and "retrain_acc_std" not in sel  # as before: accuracy only
    cache = stored.read_frame(cache_path)
    assert list(cache.columns) == list(old.columns) and len(cache) == len(old) + 1
    got = cache.set_index("arch").loc[old["arch"]]
    assert got["settings"].tolist() == old["settings"].tolist()
    assert got["test_acc"].tolist() == old["test_acc"].tolist()  # the two fresh ones included


def test_report_charts_a_group_whose_trials_hold_two_op_sets(tmp_path):
    """A job without a grid over a store holding trials of two op sets (as after editing `ops`
    and rerunning): one group, magnitudes matched by op name (raised IndexError before)."""
    import numpy as np

    from ray_nas.report import _magnitudes, build_report

    from .nb201_golden import _job, write_store

    write_store(str(tmp_path))
    job = _job(str(tmp_path), "job.yaml", search={"epochs": 30}, evaluate={"benchmark": "nb201"})
    page = build_report(load_spec(job))
    assert page.count('id="group-') == 1 and "skip_connect" in page and ">none<" in page

    trials, _ = stored.read_job(f"{tmp_path}/store/golden")
    mags = _magnitudes(trials)
    assert list(mags) == ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    for t, none, skip in zip(trials, mags["none"], mags["skip_connect"]):
        k = t.ops.index("skip_connect")
        np.testing.assert_array_equal(skip, t.weights[:, :, k].mean(1))
        assert np.isnan(none).all() == ("none" not in t.ops)
