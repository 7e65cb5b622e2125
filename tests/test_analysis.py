"""Section 2.2's numerical study: the paper's own numbers, and the trend it argues from."""

import numpy as np
import pytest

from ray_nas.analysis import format_restore_table, restore_steps


def test_reproduces_the_papers_numbers():
    # x0 = [0.001, 0.001], dl/dy = [1, -1] for 25 steps then [-1, 1], SGD momentum 0.9.
    assert restore_steps(0.001) == 34
    assert restore_steps(0.01) == 44


def test_restoring_takes_longer_as_lr_grows():
    steps = [restore_steps(lr) for lr in np.geomspace(1e-4, 0.1, 13)]
    assert steps == sorted(steps)
    assert steps[-1] > 2 * steps[0]


def test_more_momentum_takes_longer_to_restore():
    steps = [restore_steps(0.01, momentum=m) for m in (0.0, 0.5, 0.8, 0.9, 0.95)]
    assert steps == sorted(steps)
    assert steps[0] <= 26  # no momentum: phase 2 just retraces phase 1's 25 steps


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        restore_steps(0.0)
    with pytest.raises(ValueError):
        restore_steps(0.01, x0=(0.0, 0.0, 0.0))
    with pytest.raises(RuntimeError):
        restore_steps(0.1, max_steps=10)


def test_table_has_one_row_per_lr():
    table = format_restore_table([0.001, 0.01])
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2].split("|")[1].strip() == "34"
    assert lines[3].split("|")[1].strip() == "44"
