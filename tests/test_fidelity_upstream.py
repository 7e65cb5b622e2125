"""The new algorithms and spaces against float64 transcriptions of their upstream codes.

Each reference below transcribes the upstream lines it names (quark0/darts, chaoji90/Selective-Stop,
xiangning-chen/DrNAS, automl/RobustDARTS, D-X-Y/AutoDL-Projects) in float64; our code is run as
the product runs it and compared with it, and each test also shows that the alternative (the
other step order, the gate, the bare pools, ...) would have failed it.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ray_nas.config import resolve_search, run_id
from ray_nas.search.loop import BatchPlan, search
from ray_nas.spaces import get_space
from ray_nas.training.data import load_dataset
from ray_nas.training.runtime import seed_everything

# --------------------------------------------------------------------------------------------
# 1. step order

DARTS_TINY = {"space": "darts", "lr_scheme": "ss_darts", "dataset": "digits", "channels": 2,
              "layers": 3, "ops": ["skip_connect", "sep_conv_3x3", "max_pool_3x3"],
              "epochs": 1, "batch_size": 8, "steps_per_epoch": 3, "hessian_every": 0,
              "alpha": {"lr": 0.05}}  # fmt: skip


def _upstream_search(cfg, arch_first: bool) -> np.ndarray:
    """One epoch of the upstream search loop in float64, from the loop's own initial state and
    batches (same seed, same draws). arch_first=True transcribes quark0/darts cnn/train_search.py
    train() (:147 architect.step, then :149-155 zero_grad, forward, backward,
    clip_grad_norm(model.parameters()), step; SS-DARTS/train_search.py:149-157 is the same);
    False transcribes AutoDL's DARTS-V1.py search_func (:52-59 the weight step, then :68-73 the
    alpha step at the new weights). The alpha step (architect.py first order): Adam(alpha,
    arch lr, betas, weight_decay=arch_weight_decay) on L_valid(w, softmax(alpha)).
    Returns alpha [E, K] after the epoch."""
    gen = seed_everything(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.data_root)
    plan = BatchPlan(cfg, data, torch.device("cpu"), gen)
    model = get_space(cfg.space).build_supernet(cfg, data.num_classes).double()
    alpha = model.alpha
    w_params = model.weight_parameters()
    w_opt = torch.optim.SGD(w_params, lr=cfg.weights.lr, momentum=cfg.weights.momentum,
                            nesterov=cfg.weights.nesterov, weight_decay=cfg.weights.weight_decay)  # fmt: skip
    a_opt = torch.optim.Adam([alpha], lr=cfg.alpha.lr, betas=cfg.alpha.betas,
                             weight_decay=cfg.alpha.weight_decay)  # fmt: skip

    def arch_step(xv, yv):
        a_opt.zero_grad()
        F.cross_entropy(model(xv, weights=F.softmax(alpha, -1)), yv).backward()
        a_opt.step()

    def weight_step(x, y):
        w_opt.zero_grad()
        F.cross_entropy(model(x, weights=F.softmax(alpha, -1).detach()), y).backward()
        torch.nn.utils.clip_grad_norm_(w_params, cfg.weights.grad_clip)
        w_opt.step()

    plan.new_epoch()
    for step in range(plan.steps()):
        (x, y), (xv, yv) = plan.batches(step)
        x, xv = x.double(), xv.double()
        if arch_first:
            arch_step(xv, yv)
            weight_step(x, y)
        else:
            weight_step(x, y)
            arch_step(xv, yv)
    return alpha.detach().numpy()


def _ours(cfg) -> np.ndarray:
    recs = []
    search(cfg, recs.append, progress=False, log=lambda s: None)
    return recs[-1].alpha.astype(np.float64)


@pytest.mark.slow
def test_darts_space_steps_the_architecture_first_as_quark0():
    cfg = resolve_search({**DARTS_TINY, "algorithm": "darts_v1"})
    assert cfg.step_order == "arch_first"  # the ss_darts preset: SS-DARTS's order
    ours = _ours(cfg)
    q0, ad = _upstream_search(cfg, True), _upstream_search(cfg, False)
    scale = np.abs(q0 - ad).max()
    assert scale > 1e-4  # the two orders differ well beyond float32 round-off
    np.testing.assert_allclose(ours, q0, rtol=0, atol=scale * 1e-2)
    # forcing the old order reproduces AutoDL's, and the old run_id with it
    old = resolve_search({**DARTS_TINY, "algorithm": "darts_v1", "step_order": "weights_first"})
    np.testing.assert_allclose(_ours(old), ad, rtol=0, atol=scale * 1e-2)
    assert run_id(old) != run_id(cfg)


@pytest.mark.slow
def test_nb201_darts_v1_steps_the_weights_first_as_autodl():
    cfg = resolve_search({"dataset": "digits", "channels": 4, "cells": 1, "epochs": 1,
                          "batch_size": 8, "steps_per_epoch": 3, "hessian_every": 0,
                          "alpha": {"lr": 0.05}})  # fmt: skip
    assert cfg.step_order == "upstream" and cfg.space == "nb201"
    ours = _ours(cfg)
    q0, ad = _upstream_search(cfg, True), _upstream_search(cfg, False)
    scale = np.abs(q0 - ad).max()
    assert scale > 1e-4
    np.testing.assert_allclose(ours, ad, rtol=0, atol=scale * 1e-2)


def test_step_order_run_ids_move_only_where_the_computation_moves():
    """The run_id leaves step_order out exactly where it computes the order the code before it
    ran (one per algorithm: DARTS-V1 weights first, the rest architecture first)."""
    nb201 = {"seed": 3, "lr_scheme": "exchange"}
    base = run_id(resolve_search(nb201))
    assert run_id(resolve_search({**nb201, "step_order": "weights_first"})) == base
    assert run_id(resolve_search({**nb201, "step_order": "arch_first"})) != base
    for algo in ("darts_v2", "gaea", "drnas"):
        a = run_id(resolve_search({**nb201, "algorithm": algo}))
        assert run_id(resolve_search({**nb201, "algorithm": algo, "step_order": "arch_first"})) == a
    # darts space: the preset's arch_first is new for darts_v1 only
    d = {"space": "darts", "lr_scheme": "ss_darts"}
    v1 = resolve_search({**d, "algorithm": "darts_v1"})
    assert run_id(v1) != run_id(resolve_search({**d, "step_order": "weights_first"}))
    v2 = run_id(resolve_search({**d, "algorithm": "darts_v2"}))
    assert v2 == run_id(resolve_search({**d, "algorithm": "darts_v2", "step_order": "upstream"}))


def test_bad_step_order_is_refused_naming_the_key():
    from ray_nas.errors import SpecError

    with pytest.raises(SpecError, match=r"search.step_order: unknown value 'arch'.*upstream"):
        resolve_search({"step_order": "arch"})


# --------------------------------------------------------------------------------------------
# 2. Table 4's selection: the paper's DARTS-space code has no gate


def _softmax64(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ss_darts_selection(alpha: np.ndarray, k: int) -> int:
    """SS-DARTS/train_search.py:102-129: after each training epoch, softmax_sum =
    softmax(alphas_normal).sum(axis=0) is appended to op_mag_list; the selection for op k is
    np.stack(op_mag_list).argmax(axis=0)[k] (first maximum) over the whole run. List index i is
    the state after epoch i+1. alpha: [T+1, 28, K] (14 normal rows, then 14 reduce)."""
    op_mag_list = [_softmax64(alpha[t, :14]).sum(axis=0) for t in range(1, len(alpha))]
    return int(np.stack(op_mag_list).argmax(axis=0)[k]) + 1


def nb201_fork_selection(alpha: np.ndarray, k: int) -> int:
    """The paper's NAS-Bench-201 fork (AutoDL-Projects_ss/exps/algos/DARTS-V1.py, the
    op_mag_list / bootstrap_flag block after each epoch): epochs before op k first leads
    (softmax_sum.argmax() == k) keep their magnitudes, and so do the epochs where it leads; after
    its first lead the others append zeros. alpha: [T+1, 6, K]."""
    op_mag_list, bootstrap_flag = [], True
    for t in range(1, len(alpha)):
        softmax_sum = _softmax64(alpha[t]).sum(axis=0)
        if softmax_sum.argmax() == k:
            op_mag_list.append(softmax_sum)
            bootstrap_flag = False
        elif bootstrap_flag:
            op_mag_list.append(softmax_sum)
        else:
            op_mag_list.append(np.zeros_like(softmax_sum))
    return int(np.stack(op_mag_list).argmax(axis=0)[k]) + 1


def _walks(rng, t: int, rows: int, k: int, n: int) -> list[np.ndarray]:
    """n random-walk alpha trajectories [t+1, rows, k] with drifts, so ops lead and fall back."""
    out = []
    for _ in range(n):
        drift = rng.normal(0, 0.05, (1, 1, k))
        steps = rng.normal(0, 0.15, (t, rows, k)) + drift
        out.append(np.concatenate([np.zeros((1, rows, k)), np.cumsum(steps, axis=0)]))
    return out


def test_table4_selection_is_ss_darts_plain_argmax_and_the_gate_is_the_nb201_forks():
    from ray_nas.criteria import Trajectory, parse_criterion
    from ray_nas.spaces import darts

    ops = darts.PAPER_OPS
    rng = np.random.default_rng(0)
    gated_differs = 0
    for alpha in _walks(rng, 30, 28, len(ops), 60):
        traj = Trajectory.from_alpha(alpha, ops=ops, space="darts")
        for k, op in enumerate(ops):
            plain = parse_criterion({"name": "ss_eq12", "op": op, "gate": False}).apply(traj)
            assert plain.epoch == ss_darts_selection(alpha, k), (op, plain.note)
            gated = parse_criterion({"name": "ss_eq12", "op": op}).apply(traj)
            gated_differs += gated.epoch != plain.epoch
    assert gated_differs > 20  # the gate would have chosen otherwise (the default's power)
    # the gate (the default) is the NAS-Bench-201 fork's, hard-coded there to nor_conv_3x3
    from ray_nas.spaces import nb201

    k = nb201.OPS.index("nor_conv_3x3")
    for alpha in _walks(rng, 50, 6, len(nb201.OPS), 200):
        traj = Trajectory.from_alpha(alpha)
        res = parse_criterion({"name": "ss_eq12", "op": "nor_conv_3x3"}).apply(traj)
        assert res.epoch == nb201_fork_selection(alpha, k)


def test_table4_job_selects_without_the_gate_and_steps_the_architecture_first():
    from pathlib import Path

    from ray_nas.config import expand_grid, load_spec
    from ray_nas.criteria import parse_criterion

    spec = load_spec(Path(__file__).parents[1] / "jobs/paper/table4_darts_space.yaml")
    ss = [parse_criterion(c) for c in spec.criteria if parse_criterion(c).name == "ss_eq12"]
    assert len(ss) == 4 and all(c.params["gate"] is False for c in ss)
    ((cfg, _rid, _point),) = expand_grid(spec)
    assert cfg.step_order == "arch_first"


# --------------------------------------------------------------------------------------------
# 3. Table 4's retraining network: DrNAS's evaluation operations


def drnas_pool_bn(kind: str, x: torch.Tensor, stride: int, rm, rv, training: bool):
    """DrNAS DARTS-space/operations.py MaxPoolBN / AvgPoolBN: nn.Sequential(pool(3, stride,
    padding=1[, count_include_pad=False]), nn.BatchNorm2d(C, affine=False)), functionally."""
    if kind == "max":
        h = F.max_pool2d(x, 3, stride, 1)
    else:
        h = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    return F.batch_norm(h, rm, rv, None, None, training=training, momentum=0.1, eps=1e-5)


def _cell_ref(cell, s0: torch.Tensor, s1: torch.Tensor, genotype_cell, training: bool):
    """quark0/DrNAS model.py Cell._compile/forward with DrNAS's pools (drop path 0), float64;
    the preprocessing and the non-pool ops are the module's own (identical in both codes)."""
    states = [cell.pre0(s0), cell.pre1(s1)]
    for i in range(4):
        s = 0
        for k in (2 * i, 2 * i + 1):
            name, j = genotype_cell[k]
            stride = 2 if cell.reduction and j < 2 else 1
            if "pool" in name:
                bn = cell.ops[k][1]  # its running statistics, updated as DrNAS's BatchNorm's
                s = s + drnas_pool_bn(name[:3], states[j], stride, bn.running_mean,
                                      bn.running_var, training)  # fmt: skip
            else:
                s = s + cell.ops[k](states[j])
        states.append(s)
    return torch.cat(states[2:], dim=1)


@pytest.mark.slow
@pytest.mark.parametrize("training", [True, False])
def test_drnas_recipe_builds_drnas_pool_operations(training):
    from ray_nas.spaces.darts import genotype as G
    from ray_nas.spaces.darts import network as dn
    from ray_nas.spaces.darts.train import RECIPES, build_network

    assert RECIPES["drnas"].pool_bn and not RECIPES["darts"].pool_bn
    g = G.parse_genotype(G.PUBLISHED["SS-DARTS-SepConv5"])  # max pools in the reduction cell
    text = g.text().replace("('max_pool_3x3', 0), ('dil_conv_3x3', 1)",
                            "('avg_pool_3x3', 0), ('dil_conv_3x3', 1)")  # fmt: skip
    g = G.parse_genotype(text)
    torch.manual_seed(0)
    net = build_network(text, RECIPES["drnas"], 10).double()
    red = net.cells[len(net.cells) // 3]
    assert red.reduction
    net.train(training)
    with torch.no_grad():
        for m in net.modules():  # non-trivial running statistics for eval mode
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x0 = torch.randn(4, red.pre0[1].in_channels, 8, 8, dtype=torch.float64)
    x1 = torch.randn(4, red.pre1[1].in_channels, 8, 8, dtype=torch.float64)
    ref_cell = copy.deepcopy(red)
    ours = red(x0, x1, 0.0)
    ref = _cell_ref(ref_cell, x0, x1, g.reduce, training)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    # quark0's bare pools (the `darts` recipe): another function, the same parameter count
    bare = build_network(text, RECIPES["darts"], 10).double()
    missing, unexpected = bare.load_state_dict(net.state_dict(), strict=False)
    assert not missing and unexpected  # only the pools' BatchNorm buffers are extra
    bare.train(training)
    assert (bare.cells[len(bare.cells) // 3](x0, x1, 0.0) - ours).abs().max() > 1e-3
    assert dn.count_params_m(bare) == dn.count_params_m(net)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    n_bn_bare = sum(isinstance(m, torch.nn.BatchNorm2d) for m in bare.modules())
    n_pool_ops = sum(
        "pool" in op for c in net.cells for op, _ in (g.reduce if c.reduction else g.normal)
    )
    assert n_pool_ops > 0 and n_bn - n_bn_bare == n_pool_ops


def test_recipe_keys_of_the_bare_pool_recipes_are_unchanged():
    """The retrain cache keys of `darts` and `proxy` (bare pools) stay those from before pool_bn
    existed (hash of their fields without it); `drnas` gets a new key: its network changed."""
    import dataclasses

    from ray_nas.digest import sha256_hex
    from ray_nas.spaces.darts.train import RECIPES

    for name, rec in RECIPES.items():
        old = {k: v for k, v in dataclasses.asdict(rec).items() if k != "pool_bn"}
        same = rec.key() == sha256_hex(repr(sorted(old.items())), 12)
        assert same == (name != "drnas"), name


# --------------------------------------------------------------------------------------------
# 4. DARTS-ES: the defaults are R-DARTS as its experiments ran it


def rdarts_as_run(eig_ours, epochs=50, window=5, ev_freq=2, delta=4, factor=1.3,
                  es_start_epoch=10):  # fmt: skip
    """automl/RobustDARTS src/search/train_search.py (the epoch loop; the Hessian at the end of
    epoch e when e % report_freq_hessian == 0 or e == epochs - 1, early_stop only when
    epoch != epochs - 1) with utils.EVLocalAvg update/early_stop, float64; scripts/DARTS_search.sh
    passes --report_freq_hessian 2, args.py: window 5, es_start_epoch 10, delta 4, factor 1.3.
    eig_ours[t]: the eigenvalue after OUR epoch t (R-DARTS epoch e = t - 1).
    Returns (our epoch of the rollback genotype, our epoch where it fired) or None."""
    ev, la, la_epochs = [], [], {}
    lo, hi = 0, window
    half = int(np.ceil(window / 2))
    for e in range(epochs):
        if not (e % ev_freq == 0 or e == epochs - 1):
            continue
        ev.append(np.float64(eig_ours[e + 1]))
        if len(ev) >= half and e < epochs - 1:
            if len(ev) < window:
                la.append(np.mean(ev))
            else:
                la.append(np.mean(ev[lo:hi]))
                lo += 1
                hi += 1
            la_epochs[e] = int(e - int(ev_freq * np.floor(window / 2)))
        elif len(ev) < half:
            la_epochs[e] = -1
        if e != epochs - 1:
            if int(la_epochs[e] - ev_freq * delta) >= es_start_epoch:
                if la[-1] / la[-1 - delta] > factor:
                    return int(la_epochs[e] - ev_freq * delta) + 1, e + 1
    return None


def _eig_series(rng, n: int, T: int = 50) -> list[np.ndarray]:
    """[T+1] eigenvalue series: steps, geometric growths, random walks, ratios near 1.3."""
    out, t = [], np.arange(T + 1, dtype=float)
    for i in range(n):
        kind = i % 4
        if kind == 0:
            at, size = rng.integers(2, T), rng.uniform(1.1, 2.0)
            eig = np.where(t >= at, size, 1.0) + 0.01 * rng.normal(size=T + 1)
        elif kind == 1:
            at, r = rng.integers(1, T), rng.uniform(1.005, 1.08)
            eig = 0.3 * r ** np.maximum(t - at, 0)
        elif kind == 2:
            eig = np.exp(np.cumsum(rng.normal(0.01, 0.08, T + 1)))
        else:
            eig = 1.0 + 0.3 * (t >= rng.integers(5, T)) * rng.uniform(0.9, 1.1) * 1.0
            eig = eig * (1.3 ** ((t >= rng.integers(5, T)) * rng.uniform(0.8, 1.2)))
        eig[0] = np.nan  # epoch 0 has none
        out.append(eig)
    return out


def test_darts_es_defaults_are_rdarts_as_run_at_hessian_every_1():
    from ray_nas.criteria import Trajectory, darts_es

    rng = np.random.default_rng(1)
    fired = old_differs = 0
    for eig in _eig_series(rng, 800):
        traj = Trajectory.from_alpha(np.zeros((51, 6, 5)), hessian_eig=eig)
        want = rdarts_as_run(eig)
        r = darts_es(traj)
        assert (r.epoch, r.fired) == (want[0], True) if want else (50, False), want
        if want:
            fired += 1
            assert darts_es(traj, rollback=False).epoch == want[1]
        # the former defaults (start_epoch 10, every eigenvalue) disagree with R-DARTS
        old = darts_es(traj, start_epoch=10, ev_freq=1)
        old_differs += (old.epoch, old.fired) != ((want[0], True) if want else (50, False))
    assert 100 < fired < 700 and old_differs > 100


# --------------------------------------------------------------------------------------------
# 5. The Hessian's L2 term: only where the algorithm's update has one


@pytest.mark.slow
@pytest.mark.parametrize(
    "algorithm, keys, l2",
    [
        ("darts_v1", {}, 0.5),  # Adam(weight_decay=arch_weight_decay): RobustDARTS analyze.py
        ("darts_v2", {}, 0.5),
        ("drnas", {"drnas": {"reg": "l2", "reg_scale": 0.25}}, 0.25),  # DrNAS architect.py
        ("drnas", {"drnas": {"reg": "kl", "reg_scale": 0.25}}, 0.0),  # no weight decay
        ("gaea", {}, 0.0),  # architect_edarts.py: no L2 (its entropic term is 0 in its configs)
    ],
)
def test_recorded_hessian_adds_the_l2_of_the_algorithms_update_only(algorithm, keys, l2):
    from ray_nas.algorithms import algorithm_class
    from ray_nas.search.loop import _alpha_l2, hessian_eigenvalue
    from ray_nas.spaces import nb201
    from ray_nas.spaces.nb201.build import build_supernet

    torch.manual_seed(0)
    model = build_supernet("reference", nb201.OPS, 4, 1, 10, False).double()
    w_params = model.weight_parameters()
    w_opt = torch.optim.SGD(w_params, lr=0.025)
    cfg = resolve_search({"algorithm": algorithm, "alpha": {"weight_decay": 0.5}, **keys})
    algo = algorithm_class(algorithm)(cfg, model, w_params, w_opt)
    with torch.no_grad():
        if algorithm == "gaea":  # a point inside the simplex, off the uniform one
            model.alpha.copy_(torch.softmax(torch.randn_like(model.alpha), -1))
        else:
            model.alpha.normal_()
    x, y = torch.randn(8, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (8,))
    eig, _ = hessian_eigenvalue(model, model.alpha, x, y, _alpha_l2(algo, cfg), algo.mix)
    # the upstream objective's Hessian: CE(mix(alpha)) + l2 / 2 * ||alpha||^2 (the L2 Adam's
    # coupled weight decay differentiates), by torch's own Hessian routine
    a = model.alpha.detach().clone()
    model.train()

    def objective(a):
        return F.cross_entropy(model(x, weights=algo.mix(a)), y) + l2 / 2 * (a**2).sum()

    n = a.numel()
    h = torch.autograd.functional.hessian(objective, a).reshape(n, n).numpy()
    want = np.linalg.eigvalsh((h + h.T) / 2).max()
    assert eig == pytest.approx(want, rel=1e-9, abs=1e-12)
    if algorithm == "gaea":  # the former fallback to search.alpha.weight_decay shifted it by 0.5
        assert want + 0.5 - eig == pytest.approx(0.5, rel=1e-6)


# --------------------------------------------------------------------------------------------
# 6. Smaller items


def test_retrain_lr_is_drnas_cosine_stepped_at_the_end_of_each_epoch():
    """DrNAS DARTS-space/train.py: CosineAnnealingLR(optimizer, epochs), the epoch trained at
    get_lr(), scheduler.step() at its end (SS-DARTS/train.py the same); float64 torch."""
    from ray_nas.spaces.darts.train import RECIPES, epoch_lr

    rec = RECIPES["drnas"]
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=rec.lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, rec.epochs)
    ahead = 0
    for epoch in range(rec.epochs):
        upstream = opt.param_groups[0]["lr"]
        assert epoch_lr(rec, epoch) == pytest.approx(upstream, rel=1e-12, abs=1e-15)
        opt.step()
        sched.step()
        ahead += abs(epoch_lr(rec, epoch) - opt.param_groups[0]["lr"]) > 1e-9
    assert ahead == rec.epochs  # stepping at the start instead would run each epoch one ahead


def test_track_running_stats_false_is_refused_where_the_network_always_tracks():
    from ray_nas.errors import SpecError

    for space in ("darts", "nb1shot1_s1"):
        with pytest.raises(SpecError, match=r"search.track_running_stats: false .* always tracks"):
            resolve_search({"space": space, "track_running_stats": False})
        assert resolve_search({"space": space, "track_running_stats": True})
    assert resolve_search({"track_running_stats": False}).space == "nb201"
