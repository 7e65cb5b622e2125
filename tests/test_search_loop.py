import numpy as np
import pytest

from ray_nas.config import resolve_search
from ray_nas.search.loop import search, weights_lr
from ray_nas.spaces import nb201

from .conftest import TINY_SEARCH


def run(**over):
    cfg = resolve_search({**TINY_SEARCH, "impl": "reference", **over})
    records = []
    search(cfg, records.append, progress=False, log=lambda s: None)
    return cfg, records


def test_warmup_freezes_alpha_then_it_moves():
    cfg, recs = run(warmup_epochs=2, epochs=2, hessian_every=0)
    assert [r.epoch for r in recs] == [0, 1, 2, 3, 4]
    assert np.array_equal(recs[0].alpha, recs[1].alpha) and np.array_equal(
        recs[0].alpha, recs[2].alpha
    )
    assert not np.array_equal(recs[2].alpha, recs[3].alpha)
    assert recs[1].lr_alpha == 0.0 and recs[3].lr_alpha == cfg.alpha.lr
    for r in recs:
        np.testing.assert_allclose(r.weights.sum(-1), 1.0, rtol=1e-6)
        nb201.parse_arch(r.arch)


def test_lr_schedules():
    cfg = resolve_search({"warmup_epochs": 2, "epochs": 50})
    assert weights_lr(cfg, 0, 0, 10) == 0.0
    assert weights_lr(cfg, 1, 5, 10) == pytest.approx(0.75 * 0.025)
    assert weights_lr(cfg, 2, 0, 10) == pytest.approx(0.025)
    assert weights_lr(cfg, 2 + 25, 3, 10) == pytest.approx(0.001 + 0.024 * 0.5)
    cfg = resolve_search({"lr_scheme": "exchange"})
    assert weights_lr(cfg, 30, 0, 10) == 3e-4


def test_exchange_rates_are_recorded():
    _, recs = run(lr_scheme="exchange", epochs=2, hessian_every=0)
    assert all(
        r.lr_weights == pytest.approx(3e-4) and r.lr_alpha == pytest.approx(0.025) for r in recs[1:]
    )


def test_seed_fixes_everything():
    _, a = run(epochs=2, hessian_every=2)
    _, b = run(epochs=2, hessian_every=2)
    assert [r.arch for r in a] == [r.arch for r in b]
    assert all(
        np.array_equal(x.alpha, y.alpha) and x.valid_loss == y.valid_loss for x, y in zip(a, b)
    )
    assert a[1].hessian_eig is None and a[2].hessian_eig is not None
    assert a[0].hessian_eig is None  # epoch 0 has no architecture step, so no eigenvalue
