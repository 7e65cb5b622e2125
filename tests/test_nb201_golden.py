"""NAS-Bench-201 selections did not change with the space refactor (issue 13).

tests/data/nb201_selections_pre13.csv was made by tests/nb201_golden.py run against main before
issue 13 (commit 6c423da, `PYTHONPATH=/tmp/pre13 python tests/nb201_golden.py ...`, see that
file): a synthetic store of 6 trials x 30 epochs (4 seeds of the 5 ops, 2 of the 4 without
`none`), evaluated with the built-in NAS-Bench-201 table and the paper's 15 criteria, no MLflow.
Today's code must give every column of selections.parquet identically: run_ids, params text,
labels, decisions, stop epochs, archs, notes and the table's scores.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from .nb201_golden import TRIALS, selections

EXPECTED = Path(__file__).parent / "data" / "nb201_selections_pre13.csv"


def _read(text) -> pd.DataFrame:
    return pd.read_csv(text, keep_default_na=False, dtype={"run_id": str})


def test_nb201_selections_match_main_before_the_space_refactor(tmp_path):
    expected = _read(EXPECTED)
    assert len(expected) == len(TRIALS) * 15 and expected.fired.nunique() == 2
    now = selections(str(tmp_path))
    pd.testing.assert_frame_equal(_read(io.StringIO(now.to_csv(index=False))), expected)
