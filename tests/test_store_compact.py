"""The compacted copy of a job's trajectories (`{job}/compact/`, store.compact): read in place of
the per-trial files it matches, giving the same trials and byte-identical selections; a trial
changed since is read from its own files; a damaged or foreign copy is ignored with one note and
rewritten by `ray-nas evaluate`. (The S3 store: tests/test_s3_store.py.)"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ray_nas import store
from ray_nas.config import load_spec
from ray_nas.offline.evaluate import run_evaluate

from .nb201_golden import EPOCHS, _job, write_store
from .test_criteria_batch import same_trials
from .test_offline_results import _darts_store


def _age(job_dir: str, run_id: str = "*", seconds: float = 60) -> None:
    """Date the trial files (of `run_id`; default all) `seconds` back: as if written before this
    test (a file modified in the last store.SETTLE_S seconds is not compacted)."""
    then = time.time() - seconds
    for kind in ("epochs", "alphas"):
        for path in Path(job_dir, kind).glob(f"run_id={run_id}/*.parquet"):
            os.utime(path, (then, then))


def _golden(tmp_path) -> tuple[str, str]:
    """(job file, job folder) of the golden NAS-Bench-201 store, its files dated back."""
    write_store(str(tmp_path))
    job = _job(str(tmp_path), "job.yaml", search={"epochs": EPOCHS},
               evaluate={"benchmark": "nb201", "retrain": None})  # fmt: skip
    job_dir = f"{tmp_path}/store/golden"
    _age(job_dir)
    return job, job_dir


def _evaluate(job: str) -> tuple[bytes, str, list[str]]:
    """(selections.parquet's bytes, the summary as printed, the lines logged)."""
    lines: list[str] = []
    res = run_evaluate(load_spec(job), log=lines.append)
    data = Path(load_spec(job).job_dir, "selections.parquet").read_bytes()
    return data, res.summary_text, lines


def test_golden_store_compacted_selects_byte_identically(tmp_path):
    job, job_dir = _golden(tmp_path)
    first = store.read_job_state(job_dir)
    assert first.compacted == 0 and first.stale and first.note is None
    data, summary, lines = _evaluate(job)  # read from the trial files, then compacted
    assert any(f"compacted 6 trials into {job_dir}/compact/" in s for s in lines)
    state = store.read_job_state(job_dir)
    assert state.compacted == 6 and not state.stale and not state.problems
    same_trials(state.trials, first.trials)
    again, summary2, lines2 = _evaluate(job)  # read from the copy: nothing rewritten
    assert again == data and summary2 == summary
    assert not any(s.lstrip().startswith(("compacted ", "note:")) for s in lines2)


def test_a_darts_store_with_concentration_and_null_eigenvalues(tmp_path):
    """Two cells, DrNAS's concentration, hessian_eig null: the copy gives the trials the trial
    files give."""
    spec = load_spec(_darts_store(tmp_path, concentration=True))
    _age(spec.job_dir)
    state = store.read_job_state(spec.job_dir)
    assert store.write_compact(state) == 2
    again = store.read_job_state(spec.job_dir)
    assert again.compacted == 2
    same_trials(again.trials, store.read_job_files(spec.job_dir)[0])
    assert "concentration" in again.trials[0].extras
    assert np.isnan(again.trials[0].epochs["hessian_eig"]).all()


def test_a_trial_changed_after_compaction_is_read_from_its_own_files(tmp_path):
    job, job_dir = _golden(tmp_path)
    assert store.write_compact(store.read_job_state(job_dir)) == 6
    rid = store.list_run_ids(job_dir)[2]
    for path in (
        store.trial_paths(job_dir, rid)["epochs"],
        store.trial_paths(job_dir, rid)["alphas"],
    ):
        table = pq.read_table(path)  # resumed from epoch 3: both files rewritten
        meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
        keep = pc.less_equal(table["epoch"], 3)
        store.write_table(table.replace_schema_metadata(None).filter(keep), path, meta)
    state = store.read_job_state(job_dir)
    assert state.compacted == 5 and state.stale is False  # modified just now: not yet settled
    changed = next(t for t in state.trials if t.run_id == rid)
    assert changed.stored_shape[0] == 4
    same_trials(state.trials, sorted(store.read_job_files(job_dir)[0], key=lambda t: t.run_id))
    _age(job_dir, rid)
    state = store.read_job_state(job_dir)
    assert state.compacted == 5 and state.stale  # settled: evaluate rewrites the copy
    assert store.write_compact(state) == 6
    assert store.read_job_state(job_dir).compacted == 6


def _truncated(paths):
    data = Path(paths["alphas"]).read_bytes()
    Path(paths["alphas"]).write_bytes(data[: len(data) // 2])


def _garbage(paths):
    Path(paths["epochs"]).write_bytes(b"not a parquet file")


def _half_replaced(paths):  # epochs.parquet of an earlier build, the others of a later one
    old = Path(paths["epochs"]).read_bytes()
    job_dir = str(Path(paths["index"]).parent.parent)
    store.write_compact(store.read_job_state(job_dir))
    Path(paths["epochs"]).write_bytes(old)


def _foreign(paths):  # another job's copy put here
    job_dir = Path(paths["index"]).parent.parent
    other = job_dir.parent / "other"
    shutil.copytree(job_dir, other)
    shutil.rmtree(other / "compact")
    store.write_compact(store.read_job_state(str(other)))
    shutil.rmtree(job_dir / "compact")
    shutil.copytree(other / "compact", job_dir / "compact")


def _no_index(paths):
    Path(paths["index"]).unlink()


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (_truncated, "alphas.parquet is unreadable"),
        (_garbage, "epochs.parquet is unreadable"),
        (_half_replaced, "of different builds"),
        (_foreign, "job 'other''s copy, not 'golden''s"),
        (_no_index, "no index.parquet"),
    ],
)
def test_a_damaged_or_foreign_copy_is_ignored_and_rewritten(tmp_path, damage, fragment):
    job, job_dir = _golden(tmp_path)
    store.write_compact(store.read_job_state(job_dir))
    damage(store.compact_paths(job_dir))
    state = store.read_job_state(job_dir)
    assert state.compacted == 0 and state.stale and fragment in state.note
    same_trials(state.trials, sorted(store.read_job_files(job_dir)[0], key=lambda t: t.run_id))
    _, _, lines = _evaluate(job)
    notes = [s for s in lines if "note:" in s]
    assert len(notes) == 1 and fragment in notes[0] and "\n" not in notes[0]
    assert not any("Traceback" in s for s in lines)
    assert store.read_job_state(job_dir).compacted == 6
