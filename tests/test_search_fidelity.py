"""The search loop against its references (issue 17): the Hessian as R-DARTS and the paper's code
compute it, the weights' schedule as AutoDL's CosineAnnealingLR, the fixed split seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ray_nas.config import resolve_search
from ray_nas.search.loop import hessian_eigenvalue, search, weights_lr
from ray_nas.spaces.nb201.build import build_supernet
from ray_nas.training.data import Batcher, load_dataset

from .conftest import TINY_SEARCH


def direct_hessian(model, alpha, x, y, weight_decay) -> np.ndarray:
    """torch's own Hessian routine of the train-mode loss plus the alpha L2 term, [n, n] float64."""
    model.train()
    a = alpha.detach().clone()

    def loss(a):
        return F.cross_entropy(model(x, alpha=a), y) + weight_decay / 2 * (a**2).sum()

    n = a.numel()
    return torch.autograd.functional.hessian(loss, a).reshape(n, n).double().numpy()


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_hessian_equals_direct_computation_in_train_mode_with_l2(impl):
    torch.manual_seed(0)
    net = build_supernet(impl, ("none", "skip_connect", "nor_conv_3x3"), 4, 1, 10, True)
    with torch.no_grad():
        net.alpha.normal_()
    net.eval()  # the caller's mode, restored afterwards
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    before = {k: b.clone() for k, b in net.state_dict().items()}
    eig, h = hessian_eigenvalue(net, net.alpha, x, y, weight_decay=1e-3)
    assert not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN stats too
    ref = direct_hessian(net, net.alpha, x, y, 1e-3)
    assert h.shape == (18, 18)
    np.testing.assert_allclose(h, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    assert eig == pytest.approx(np.linalg.eigvalsh((ref + ref.T) / 2).max(), rel=1e-5)
    # train mode matters: the eval-mode Hessian (running statistics) is another matrix
    net.eval()
    a = net.alpha.detach().clone()
    h_eval = torch.autograd.functional.hessian(lambda a: F.cross_entropy(net(x, alpha=a), y), a)
    assert not np.allclose(h_eval.reshape(18, 18).numpy() + 1e-3 * np.eye(18), ref, rtol=1e-3)


class MemoryCheckpoint:
    """The loop's CheckpointStore protocol, in memory."""

    def __init__(self):
        self.state = None

    def load(self):
        return self.state

    def save(self, state):
        self.state = state


def test_recorded_eigenvalue_is_the_last_architecture_batch():
    """Replays the loop's data draws to get the last alpha-step batch of epoch 1, then computes
    the Hessian there directly, on the weights and alpha the loop ended the epoch with."""
    cfg = resolve_search({**TINY_SEARCH, "epochs": 1, "hessian_every": 1, "seed": 5})
    ckpt, recs = MemoryCheckpoint(), []
    search(cfg, recs.append, ckpt, progress=False, log=lambda s: None)
    assert recs[0].hessian_eig is None and recs[1].hessian_eig is not None
    data = load_dataset(cfg.dataset, seed=cfg.data_split_seed)
    train_b, valid_b = Batcher(data.search_train, data.name), Batcher(data.search_valid, data.name)
    gen, b = torch.Generator().manual_seed(cfg.seed), cfg.batch_size
    order = torch.randperm(len(train_b), generator=gen)
    for step in range(cfg.steps_per_epoch):
        train_b.get(order[step * b : (step + 1) * b], gen)
        xv, yv = valid_b.get(torch.randint(len(valid_b), (b,), generator=gen), gen)
    assert len(yv) == b  # a full batch, not the evaluation pass's remainder
    net = build_supernet(cfg.impl, cfg.ops, cfg.channels, cfg.cells, 10, cfg.track_running_stats)
    net.load_state_dict(ckpt.state["model"])
    ref = direct_hessian(net, net.alpha, xv, yv, cfg.alpha.weight_decay)
    want = np.linalg.eigvalsh((ref + ref.T) / 2).max()
    assert recs[1].hessian_eig == pytest.approx(want, rel=1e-5)


def test_hessian_leaves_the_search_unchanged_with_tracked_batchnorm():
    """Computing the eigenvalue every epoch must not touch the search: same alphas, same losses."""
    runs = []
    for every in (0, 1):
        cfg = resolve_search({**TINY_SEARCH, "epochs": 2, "steps_per_epoch": 2,
                              "track_running_stats": True, "hessian_every": every})  # fmt: skip
        recs = []
        search(cfg, recs.append, progress=False, log=lambda s: None)
        runs.append(recs)
    assert runs[1][2].hessian_eig is not None
    for a, b in zip(*runs):
        assert np.array_equal(a.alpha, b.alpha) and a.valid_loss == b.valid_loss


def autodl_lr(base: float, eta_min: float, warmup: int, epochs: int, epoch: int, it: float):
    """AutoDL-Projects lib/procedures/optimizers.py CosineAnnealingLR(warmup, epochs, T_max=epochs,
    eta_min).get_lr() after update(epoch, 0.0) and update(None, it), restated."""
    if warmup <= epoch < epochs:
        return eta_min + (base - eta_min) * (1 + math.cos(math.pi * (epoch - warmup) / epochs)) / 2
    if epoch >= epochs:
        return eta_min
    return (epoch / warmup + it / warmup) * base


@pytest.mark.parametrize("warmup", [0, 10, 30, 100])
def test_schedule_equals_autodl_scheduler(warmup):
    cfg = resolve_search({"warmup_epochs": warmup, "epochs": 50})
    steps = 7
    for epoch in range(cfg.total_epochs):
        for step in range(steps):
            want = autodl_lr(0.025, 0.001, warmup, 50, epoch, step / steps)
            assert weights_lr(cfg, epoch, step, steps) == pytest.approx(want, rel=1e-12, abs=1e-15)
    last = [weights_lr(cfg, e, 0, steps) for e in range(cfg.total_epochs)][-max(warmup, 1) :]
    assert all(lr == 0.001 for lr in last) == (warmup > 0)  # the last W epochs run at lr_min
    if warmup == 100:  # Exp.3: the frozen 100 epochs never reach the full lr
        assert max(weights_lr(cfg, e, s, steps) for e in range(150) for s in range(steps)) < 0.0125


def test_restart_rule_keeps_the_old_reading():
    cfg = resolve_search({"warmup_epochs": 10, "epochs": 50, "weights": {"warmup_rule": "restart"}})
    assert weights_lr(cfg, 5, 0, 4) == pytest.approx(0.5 * 0.025)
    assert weights_lr(cfg, 10, 0, 4) == pytest.approx(0.025)  # cosine restarted at joint epoch 0
    assert weights_lr(cfg, 59, 0, 4) > 0.001  # ends above lr_min
    bad = {"weights": {"warmup_rule": "restarted"}}
    with pytest.raises(ValueError, match="weights.warmup_rule.*restart"):
        resolve_search(bad)


def test_split_does_not_change_with_the_trial_seed():
    a, b = (load_dataset("fake", seed=resolve_search({"seed": s}).data_split_seed) for s in (0, 3))
    assert np.array_equal(a.search_valid.labels, b.search_valid.labels)
    assert resolve_search({"seed": 3, "split_seed": None}).data_split_seed == 3  # the old reading
