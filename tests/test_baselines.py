"""The baselines of the paper's Table 4/5 as algorithms: SDARTS-RS, SDARTS-ADV, GDAS, SNAS, NASP.

Each: one step at float64 against a transcription of its upstream update (written here from the
authors' code, on a copy of the same supernet and batches), its schedules, a 2-epoch search
through the CLI on both supernets (slow), and a bit-identical resume after SIGKILL (every
algorithm on NB201 in tests/test_algorithms.py; sdarts_adv and snas through the CLI here).
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from ray_nas.algorithms import algorithm_class, arch_first
from ray_nas.algorithms.gdas import tau_of
from ray_nas.algorithms.nasp import binarize
from ray_nas.algorithms.sdarts import clip_rows, epsilon
from ray_nas.algorithms.snas import temperature
from ray_nas.config import resolve_search
from ray_nas.spaces import darts, nb201
from ray_nas.spaces.nb201.build import build_supernet

from .conftest import killed_search_matches_uninterrupted

NEW = ("sdarts_rs", "sdarts_adv", "gdas", "snas", "nasp")
TOL = {"rtol": 1e-12, "atol": 1e-12}


def _setup(algorithm: str, track: bool = False, **keys):
    """(model, algo, reference copy of the model, train batch, arch batch) at float64."""
    torch.manual_seed(0)
    model = build_supernet("reference", nb201.OPS, 4, 1, 10, track).double()
    w_params = model.weight_parameters()
    w_opt = torch.optim.SGD(w_params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    cfg = resolve_search({"algorithm": algorithm, **keys})
    algo = algorithm_class(algorithm)(cfg, model, w_params, w_opt)
    with torch.no_grad():
        if algorithm in ("sdarts_rs", "sdarts_adv", "gdas"):
            model.alpha.normal_()  # far from uniform
        if algorithm == "nasp":  # distinct values in [0, 1], the bounds included
            model.alpha.copy_(torch.rand_like(model.alpha))
            model.alpha[0, 1], model.alpha[1, 2] = 0.0, 1.0
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    return model, algo, copy.deepcopy(model), (x[:8], y[:8]), (x[8:], y[8:])


def _loop_step(model, algo, train, arch, lr=0.025):
    """One search step as ray_nas.search.loop runs it (eager forward)."""

    def loss_of(x, y, w):
        return F.cross_entropy(model(x, weights=w), y)

    first = arch_first(algo.name, algo.cfg.space, algo.cfg.step_order)
    if first:
        algo.arch_step(loss_of, train, arch, lr)
    loss, _ = algo.weight_step(model, train, False)
    if not first:
        algo.arch_step(loss_of, train, arch, lr)
    return loss


def _ref_opts(ref, adam=True):
    w = ref.weight_parameters()
    w_opt = torch.optim.SGD(w, lr=0.025, momentum=0.9, weight_decay=3e-4)
    if adam:
        a_opt = torch.optim.Adam([ref.alpha], lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    else:
        a_opt = torch.optim.SGD([ref.alpha], lr=3e-4)
    return w, w_opt, a_opt


def _ref_weight_step(ref, w, w_opt, batch, weights):
    w_opt.zero_grad(set_to_none=True)
    F.cross_entropy(ref(batch[0], weights=weights), batch[1]).backward(inputs=w)
    torch.nn.utils.clip_grad_norm_(w, 5.0)
    w_opt.step()


def _assert_same(model, ref):
    torch.testing.assert_close(model.alpha, ref.alpha, **TOL)
    for a, b in zip(model.weight_parameters(), ref.weight_parameters()):
        torch.testing.assert_close(a, b, **TOL)


def test_step_order_is_upstreams():
    # SmoothDARTS and NASP: architect.step, then the weights; AutoDL's GDAS: the weights first;
    # SNAS: one joint step (its arch_step is empty)
    for space in ("nb201", "darts"):
        order = {n: arch_first(n, space) for n in NEW}
        assert order == {"sdarts_rs": True, "sdarts_adv": True, "gdas": False, "snas": False,
                         "nasp": True}  # fmt: skip


# -- SDARTS ---------------------------------------------------------------------------------------


def upstream_clip(p: torch.Tensor) -> None:
    """SmoothDARTS `model.clip()`, in place, row by row."""
    for line in p:
        max_index = line.argmax()
        line.data.clamp_(0, 1)
        if line.sum() == 0.0:
            line.data[max_index] = 1.0
        line.data.div_(line.sum())


def test_clip_rows_is_upstreams_clip_including_dead_rows():
    torch.manual_seed(1)
    p = torch.randn(6, 5, dtype=torch.float64)
    p[2] = -torch.rand(5, dtype=torch.float64)  # every entry clamps to 0: one-hot at the argmax
    p[4] = torch.tensor([2.0, -1.0, 3.0, 0.5, 0.0], dtype=torch.float64)
    ref = p.clone()
    upstream_clip(ref)
    torch.testing.assert_close(clip_rows(p), ref, **TOL)
    assert torch.equal(clip_rows(p)[2], F.one_hot(p[2].argmax(), 5).double())


def test_sdarts_epsilon_ramp_is_upstreams():
    s = resolve_search({"algorithm": "sdarts_rs"}).sdarts_rs
    # upstream: 0.03 + (epsilon_alpha - 0.03) * epoch / epochs, epoch 0-based
    for e in (0, 7, 49):
        assert epsilon(s, e + 1, 50) == pytest.approx(0.03 + (0.3 - 0.03) * e / 50)
    c = resolve_search({"algorithm": "sdarts_rs", "sdarts_rs": {"schedule": "constant"}})
    assert epsilon(c.sdarts_rs, 50, 50) == 0.03


def test_sdarts_rs_step_equals_upstream():
    model, algo, ref, train, arch = _setup("sdarts_rs")
    algo.begin_epoch(10, 20)
    eps = 0.03 + 0.27 * 9 / 20
    assert algo.eps == pytest.approx(eps)
    torch.manual_seed(7)
    _loop_step(model, algo, train, arch)

    w, w_opt, a_opt = _ref_opts(ref)
    # architect.step (first order): Adam on the valid loss mixing softmax(alpha), unperturbed
    a_opt.zero_grad()
    F.cross_entropy(ref(arch[0], weights=F.softmax(ref.alpha, -1)), arch[1]).backward(
        inputs=[ref.alpha]
    )
    a_opt.step()
    alpha_after_adam = ref.alpha.detach().clone()
    # softmax_arch_parameters + Random_alpha + clip, then the weight step mixing it directly
    torch.manual_seed(7)
    p = F.softmax(ref.alpha.detach(), -1).clone()
    p.add_(torch.zeros_like(p).uniform_(-eps, eps))
    upstream_clip(p)
    _ref_weight_step(ref, w, w_opt, train, p)
    _assert_same(model, ref)
    assert torch.equal(model.alpha, alpha_after_adam)  # the perturbation never reaches alpha


def upstream_pgd(model, a: torch.Tensor, x, y, eps: float, steps: int = 7) -> torch.Tensor:
    """SmoothDARTS `Linf_PGD_alpha` with `Linf_SGD` on an arch tensor `a` (already softmaxed)."""
    training = model.training
    if training:
        model.eval()
    a = a.clone().requires_grad_(True)
    saved = a.detach().clone()
    lr = 2 * eps / steps
    with torch.no_grad():
        loss_before = F.cross_entropy(model(x, weights=a), y)
    a.data.add_(torch.zeros_like(a).uniform_(-eps, eps))
    upstream_clip(a)
    for _ in range(steps):
        a.grad = None
        loss = -F.cross_entropy(model(x, weights=a), y)
        loss.backward(inputs=[a])
        a.data.add_(torch.sign(a.grad), alpha=-lr)  # Linf_SGD: d_p = sign(grad)
        diff = (a.detach() - saved).clamp_(-eps, eps)
        a.data.copy_(diff + saved)
        upstream_clip(a)
    with torch.no_grad():
        loss_after = F.cross_entropy(model(x, weights=a), y)
    if loss_before > loss_after:
        a.data.copy_(saved)
    if training:
        model.train()
    return a.detach()


def test_sdarts_adv_step_equals_upstream_pgd():
    # BatchNorm with running statistics: the attack runs in eval mode, buffers untouched
    model, algo, ref, train, arch = _setup("sdarts_adv", track=True)
    algo.begin_epoch(20, 20)
    eps = algo.eps
    with torch.no_grad():  # running statistics that differ from the batch's
        for n, b in model.named_buffers():
            if "running_mean" in n:
                b.normal_()
        ref.load_state_dict(model.state_dict())
    w, w_opt, a_opt = _ref_opts(ref)
    a_opt.zero_grad()
    F.cross_entropy(ref(arch[0], weights=F.softmax(ref.alpha, -1)), arch[1]).backward(
        inputs=[ref.alpha]
    )
    a_opt.step()
    torch.manual_seed(3)
    soft = F.softmax(ref.alpha.detach(), -1)
    buffers = [b.clone() for b in ref.buffers()]
    p_ref = upstream_pgd(ref, soft, *train, eps)
    assert ref.training and all(torch.equal(a, b) for a, b in zip(buffers, ref.buffers()))

    def loss_of(x, y, wts):
        return F.cross_entropy(model(x, weights=wts), y)

    algo.arch_step(loss_of, train, arch, 0.025)
    torch.manual_seed(3)
    p = algo.attack(model, train)
    assert model.training
    torch.testing.assert_close(p, p_ref, **TOL)
    assert not torch.allclose(p, soft)  # the attack did move it
    assert (p >= 0).all() and torch.allclose(p.sum(-1), torch.ones(6, dtype=p.dtype))
    model.eval()
    with torch.no_grad():
        assert F.cross_entropy(model(train[0], weights=p), train[1]) >= F.cross_entropy(
            model(train[0], weights=soft), train[1]
        )
    model.train()
    # the whole step: the weight step mixes the attacked weights
    torch.manual_seed(3)
    algo.weight_step(model, train, False)
    _ref_weight_step(ref, w, w_opt, train, p_ref)
    _assert_same(model, ref)


# -- GDAS -----------------------------------------------------------------------------------------


def upstream_gdas_sample(a: torch.Tensor, tau: float) -> torch.Tensor:
    """AutoDL-Projects `TinyNetworkGDAS.forward`'s hardwts."""
    while True:
        gumbels = -torch.empty_like(a).exponential_().log()
        logits = (a.log_softmax(dim=1) + gumbels) / tau
        probs = F.softmax(logits, dim=1)
        index = probs.max(-1, keepdim=True)[1]
        one_h = torch.zeros_like(logits).scatter_(-1, index, 1.0)
        hardwts = one_h - probs.detach() + probs
        if not (torch.isinf(gumbels).any() or torch.isinf(probs).any() or torch.isnan(probs).any()):
            return hardwts


def test_gdas_tau_schedule_is_upstreams():
    s = resolve_search({"algorithm": "gdas"}).gdas
    assert tau_of(s, 1, 250) == 10.0 and tau_of(s, 250, 250) == pytest.approx(0.1)
    # upstream: tau_max - (tau_max - tau_min) * epoch / (total_epoch - 1), epoch 0-based
    assert tau_of(s, 101, 250) == pytest.approx(10 - 9.9 * 100 / 249)


def test_gdas_step_equals_upstream():
    model, algo, ref, train, arch = _setup("gdas")
    algo.begin_epoch(3, 5)
    tau = 10 - 9.9 * 2 / 4
    torch.manual_seed(11)
    _loop_step(model, algo, train, arch)
    w, w_opt, a_opt = _ref_opts(ref)
    torch.manual_seed(11)
    # weights first (own sample), then Adam on alpha through a fresh straight-through sample
    _ref_weight_step(ref, w, w_opt, train, upstream_gdas_sample(ref.alpha.detach(), tau))
    a_opt.zero_grad()
    F.cross_entropy(ref(arch[0], weights=upstream_gdas_sample(ref.alpha, tau)), arch[1]).backward(
        inputs=[ref.alpha]
    )
    a_opt.step()
    _assert_same(model, ref)
    h = algo.mixing_weights()
    assert ((h == 0) | ((h - 1).abs() < 1e-12)).all() and (h.sum(-1) - 1).abs().max() < 1e-12


# -- SNAS -----------------------------------------------------------------------------------------


def test_snas_temperature_is_upstreams():
    s = resolve_search({"algorithm": "snas", "snas": {"temp_epochs": 150}}).snas
    # Temp_Scheduler stepped before each epoch: epoch e (1-based) at (1 - e/150)(T0 - Tmin) + Tmin
    assert temperature(s, 1, 50) == pytest.approx((1 - 1 / 150) * 0.97 + 0.03)
    assert temperature(s, 150, 50) == pytest.approx(0.03)
    assert temperature(s, 200, 50) == 0.03  # clamped at temp_min
    d = resolve_search({"algorithm": "snas", "epochs": 10}).snas  # temp_epochs null: the run's
    assert temperature(d, 10, 10) == pytest.approx(0.03)


def test_snas_init_and_joint_step_equal_upstream():
    # a small clip on log-alpha's gradient, so that the clip is exercised
    model, algo, ref, train, arch = _setup("snas", snas={"arch_grad_clip": 1e-3})
    a0 = model.alpha.detach().clone()
    assert abs(a0.mean().item() - 1.0) < 0.01 and 0.003 < a0.std().item() < 0.03
    algo.begin_epoch(4, 60)  # temp_epochs null: the run's epochs (50), not warmup + joint
    temp = (1 - 4 / 50) * 0.97 + 0.03
    torch.manual_seed(5)
    _loop_step(model, algo, train, arch)
    w, w_opt, a_opt = _ref_opts(ref, adam=False)
    torch.manual_seed(5)
    # one forward on the training batch with one relaxed sample, one backward, two clips, two steps
    u = torch.zeros_like(ref.alpha).uniform_()
    z = F.softmax((ref.alpha + (-((-(u.log())).log()))) / temp, dim=-1)
    w_opt.zero_grad()
    a_opt.zero_grad()
    F.cross_entropy(ref(train[0], weights=z), train[1]).backward()
    torch.nn.utils.clip_grad_norm_(w, 5.0)
    torch.nn.utils.clip_grad_norm_([ref.alpha], 1e-3)
    w_opt.step()
    a_opt.step()
    _assert_same(model, ref)
    assert not torch.equal(model.alpha, a0)
    # alpha frozen (warmup): only the weights move
    before = model.alpha.detach().clone()
    algo.weight_step(model, train, True)
    assert torch.equal(model.alpha, before)


# -- NASP -----------------------------------------------------------------------------------------


def upstream_proximal_step(values: np.ndarray) -> np.ndarray:
    """NASP-codes `Network.proximal_step` of one cell type [14, K] (argmax per row, then per node
    the 2 rows whose max value is largest)."""
    values = values.copy()
    max_indexs = values.argmax(axis=1)
    m, n = values.shape
    alphas = []
    for i in range(m):
        for j in range(n):
            if j == max_indexs[i]:
                alphas.append(values[i][j].copy())
                values[i][j] = 1
            else:
                values[i][j] = 0
    step, cur = 2, 0
    while cur < m:
        cur_alphas = alphas[cur : cur + step]
        reserve_index = [
            v[0]
            for v in sorted(
                list(zip(range(len(cur_alphas)), cur_alphas)), key=lambda x: x[1], reverse=True
            )[:2]
        ]
        for index in range(cur, cur + step):
            if (index - cur) not in reserve_index:
                values[index] = np.zeros(n)
        cur = cur + step
        step += 1
    return values


def test_nasp_binarize_darts_is_upstreams_proximal_step():
    torch.manual_seed(2)
    a = torch.rand(28, 7, dtype=torch.float64)
    a[15, 3] = a[16, 0] = 2.0  # a tie between two edges of one node: the earlier one wins
    a[17] = 0.1
    b = binarize(a, "darts").numpy()
    ref = np.concatenate(
        [upstream_proximal_step(a[:14].numpy()), upstream_proximal_step(a[14:].numpy())]
    )
    np.testing.assert_array_equal(b, ref)
    assert b.sum() == 2 * 8  # 2 edges per node, 4 nodes, 2 cell types
    assert len(darts.EDGES) == 14
    nb = binarize(a[:6, :5], "nb201")
    assert torch.equal(nb, F.one_hot(a[:6, :5].argmax(-1), 5).double())


def test_nasp_step_equals_upstream():
    model, algo, ref, train, arch = _setup("nasp")
    a_init = model.alpha.detach().clone()
    _loop_step(model, algo, train, arch)
    w, w_opt, a_opt = _ref_opts(ref)
    # binarization(); loss on the binary point; restore(); Adam on the continuous alpha; clip
    b = F.one_hot(ref.alpha.detach().argmax(-1), 5).double().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(ref(arch[0], weights=b), arch[1]), [b])
    a_opt.zero_grad()
    ref.alpha.grad = g
    a_opt.step()
    with torch.no_grad():
        ref.alpha.copy_(torch.nn.Hardtanh(0, 1)(ref.alpha))
    b2 = F.one_hot(ref.alpha.detach().argmax(-1), 5).double()
    _ref_weight_step(ref, w, w_opt, train, b2)
    _assert_same(model, ref)
    assert not torch.equal(model.alpha, a_init)
    assert ((model.alpha >= 0) & (model.alpha <= 1)).all()
    m = algo.mixing_weights()
    assert set(m.unique().tolist()) <= {0.0, 1.0} and torch.equal(m, algo.evaluation_weights())
    assert torch.allclose(algo.distribution().sum(-1), torch.ones(6, dtype=m.dtype))


def test_nasp_init_and_display_map():
    model, algo, *_ = _setup("nasp", nasp={"init": 0.5})
    fresh = algorithm_class("nasp")(algo.cfg, model, algo.w_params, algo.w_opt)
    assert torch.equal(fresh.alpha, torch.full_like(fresh.alpha, 0.5))
    zero = torch.zeros(2, 4, dtype=torch.float64)
    zero[1, 2] = 0.5
    assert torch.equal(fresh.mix(zero), torch.tensor([[0.25] * 4, [0, 0, 1.0, 0]]).double())


# -- config, CLI ----------------------------------------------------------------------------------


def test_new_keys_leave_old_run_ids_and_count_when_set():
    from ray_nas.config import run_id

    base = run_id(resolve_search({}))
    assert base == run_id(resolve_search({"gdas": {"tau_max": 10.0}, "nasp": {"init": 0.5}}))
    ids = {run_id(resolve_search(k)) for k in (
        {}, {"algorithm": "snas"}, {"snas": {"temp_min": 0.1}}, {"sdarts_rs": {"epsilon_max": 0.1}},
        {"sdarts_adv": {"steps": 3}}, {"gdas": {"tau_min": 1.0}}, {"nasp": {"init": 0.2}},
        {"sgas": {"criterion": 2}},
    )}  # fmt: skip
    assert len(ids) == 8
    assert base == run_id(resolve_search({"sgas": {"criterion": 1, "decision_freq": 5}}))


def test_bad_keys_are_one_line_errors_before_any_work(write_job, capsys, tmp_path):
    from ray_nas.cli import main

    for search, msg in [
        ({"algorithm": "sdarts"}, "search.algorithm: unknown value 'sdarts'"),
        ({"sdarts_rs": {"schedule": "cosine"}}, "search.sdarts_rs.schedule: unknown value 'cosine'"),
        ({"sdarts_adv": {"attack_mode": "test"}}, "search.sdarts_adv.attack_mode: unknown value"),
        ({"snas": {"arch_optimizer": "rmsprop"}}, "search.snas.arch_optimizer: unknown value"),
        ({"gdas": {"tau_min": 0}}, "search.gdas.tau_min: must be > 0"),
        ({"nasp": {"init": 2}}, "search.nasp.init: must be in [0, 1], got 2"),
        ({"nasp": {"greedy": 0.1}}, "search.nasp.greedy: unknown key"),
        ({"algorithm": "sgas"}, "search.algorithm: sgas runs on darts (lightaime/sgas has no nb201 code), not nb201"),
        ({"algorithm": "sgas", "space": "darts", "ops": ["skip_connect", "sep_conv_3x3"]}, "search.ops: sgas needs `none` among the ops"),
        ({"sgas": {"criterion": 3}}, "search.sgas.criterion: must be 1 or 2, got 3"),
        ({"sgas": {"decision_freq": 0}}, "search.sgas.decision_freq: must be > 0, got 0"),
        ({"algorithm": "sdarts_rs", "space": "nb1shot1_s1"}, "search.algorithm: sdarts_rs does not move the input/output connection weights of nb1shot1_s1 (sdarts_rs runs on nb201 and darts)"),
    ]:  # fmt: skip
        assert main(["search", str(write_job(search=search))]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "store").exists()


def test_algorithms_command_lists_keys_and_sources(capsys):
    from ray_nas.cli import main

    assert main(["algorithms"]) == 0
    out = capsys.readouterr().out
    for text in ("search.sdarts_rs.epsilon_max = 0.3", "search.sdarts_adv.steps = 7",
                 "search.gdas.tau_max = 10.0", "search.snas.temp_min = 0.03",
                 "search.nasp.init = 0.5", "SmoothDARTS@d3dbfed0", "AutoDL-Projects@f46486e2",
                 "SNAS-Series@9a43adbd", "NASP-codes@3bfb7060", "search.sgas.criterion = 1",
                 "search.sgas.warmup_dec_epoch = 9", "search.sgas.decision_freq = 5",
                 "search.sgas.history_size = 4", "lightaime/sgas@9cfff65a",
                 "nasbench-1shot1@cb0f0ec6: optimizers/gdas",
                 "nasbench-1shot1@cb0f0ec6: optimizers/pc_darts"):  # fmt: skip
        assert text in out
    assert out.count("deviations:") == len(NEW) + 1  # and sgas


#: the DARTS search network is ~10x NB201's cost per step here: one step per epoch, no Hessian
def test_table4_baselines_job_rows_are_upstreams_settings():
    from ray_nas.config import expand_grid, load_spec

    from .conftest import REPO

    spec = load_spec(REPO / "jobs/paper/table4_baselines_sdarts_gdas_snas_nasp.yaml")
    rows = {}
    for cfg, _rid, point in expand_grid(spec):
        rows.setdefault(point["method"]["label"], set()).add(cfg)
    assert all(len(cfgs) == 3 for cfgs in rows.values())  # 3 seeds each
    one = {label: next(iter(cfgs)) for label, cfgs in rows.items()}
    assert sorted(c.weights.weight_decay for k, c in one.items() if k.startswith("r_darts")) == [
        3e-4,
        9e-4,
        2.7e-3,
        8.1e-3,
        2.43e-2,
    ]
    for k, c in one.items():
        assert c.space == "darts" and not c.weights.nesterov or k == "gdas"
    for k in ("sdarts_rs", "sdarts_adv", "nasp"):
        assert one[k].ops == darts.PAPER_OPS and one[k].epochs == 50 and one[k].batch_size == 64
    assert (one["snas"].objective, one["snas"].epochs, one["snas"].ops) == ("erm", 150, darts.OPS)
    g = one["gdas"]
    assert (g.epochs, g.batch_size, g.weights.weight_decay, g.weights.nesterov) == (
        250,
        256,
        5e-4,
        True,
    )


DARTS_TINY = {"space": "darts", "layers": 3, "ops": list(darts.PAPER_OPS), "steps_per_epoch": 1,
              "hessian_every": 0}  # fmt: skip


#: SGAS's decisions after every epoch from the first (its default: after epochs 10, 15, ...)
SGAS_EVERY_EPOCH = {"sgas": {"warmup_dec_epoch": 0, "decision_freq": 1}}


@pytest.mark.slow
@pytest.mark.parametrize(
    "algorithm, space",
    [(a, s) for s in ("nb201", "darts") for a in NEW] + [("sgas", "darts")],  # SGAS: darts only
)
def test_two_epoch_search_through_the_cli(algorithm, space, write_job):
    from ray_nas.cli import main
    from ray_nas.config import load_spec, run_id, search_config

    keys = {"algorithm": algorithm, "epochs": 2, "steps_per_epoch": 2, "batch_size": 8,
            "hessian_every": 1, **(DARTS_TINY if space == "darts" else {})}  # fmt: skip
    if algorithm == "sdarts_adv":
        keys["sdarts_adv"] = {"steps": 2}  # 2 PGD steps, not 7: the same code, a third the cost
    if algorithm == "sgas":
        keys |= {**SGAS_EVERY_EPOCH, "ops": list(darts.OPS)}  # needs `none`
    job = write_job(search=keys)
    assert main(["search", str(job), "--quiet"]) == 0
    spec = load_spec(job)
    rid = run_id(search_config(spec))
    ep = pd.read_parquet(f"{spec.job_dir}/epochs/run_id={rid}").sort_values("epoch")
    al = pd.read_parquet(f"{spec.job_dir}/alphas/run_id={rid}")
    assert ep.epoch.tolist() == [0, 1, 2]
    assert np.isfinite(ep.valid_loss).all()
    if space == "nb201":
        assert np.isfinite(ep.hessian_eig.iloc[1:]).all()
    rows = [c for c in ("epoch", "cell", "edge") if c in al]  # darts: normal and reduce rows
    assert len(rows) == 3 or space == "nb201"
    sums = al.groupby(rows, dropna=False).weight.sum()
    assert len(sums) == 3 * (6 if space == "nb201" else 28)
    assert ((sums - 1).abs() < 1e-5).all()
    first, last = (al[al.epoch == e].sort_values(rows + ["op"]).alpha.to_numpy() for e in (0, 2))
    assert not np.array_equal(first, last)
    if algorithm == "sgas":  # one edge per cell type decided after each epoch: one-hot rows
        hot = al[al.weight == 1.0].groupby("epoch").size()
        assert hot.get(0, 0) == 0 and hot[1] >= 2 and hot[2] >= 4


@pytest.mark.slow
def test_step_cost_benchmark_prints_every_algorithm_beside_darts_v1():
    from .conftest import run_benchmark

    out = run_benchmark("algorithm_step.py", "--channels", "4", "--cells", "1", "--batch", "4",
                        "--size", "16", "--steps", "1", "--threads", "1", "--check",
                        "--algorithm", *NEW)  # fmt: skip
    rows = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()[3:] if ln.strip()}
    assert set(rows) == {"darts_v1", *NEW}
    assert rows["darts_v1"][1] == "1.00x" and all(float(r[0]) > 0 for r in rows.values())
    # --check: float32 against float64 on the device (here the CPU), forward and one step
    for name, (_ms, _ratio, fwd, step) in rows.items():
        assert 0 < float(fwd) < 1e-5, name
        stochastic = name in ("sdarts_rs", "sdarts_adv", "gdas", "snas")
        assert step == "draws" if stochastic else 0 < float(step) < 1e-5, name


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["sdarts_adv", "snas", "sgas"])
def test_cli_search_resumes_bit_identically_after_sigkill(algorithm, write_job):
    search = {"algorithm": algorithm, "epochs": 5, "steps_per_epoch": 2, "batch_size": 8}
    if algorithm == "sdarts_adv":
        search["sdarts_adv"] = {"steps": 2}
    if algorithm == "sgas":  # decisions before and after the kill: they come from the checkpoint
        search |= {**DARTS_TINY, **SGAS_EVERY_EPOCH, "ops": list(darts.OPS), "batch_size": 4,
                   "steps_per_epoch": 1}  # fmt: skip
    _spec, _rid, _ep, al = killed_search_matches_uninterrupted(write_job, search, 5)
    if algorithm == "sgas":
        assert (al[al.epoch == 5].weight == 1.0).sum() >= 10  # 5 decisions per cell type


# -- SGAS -----------------------------------------------------------------------------------------


def _sgas_setup(criterion: int = 1):
    """(model, algo, reference copy, train, arch) on a tiny DARTS search network at float64."""
    from ray_nas.spaces.darts.network import SearchNetwork

    torch.manual_seed(0)
    model = SearchNetwork(darts.OPS, channels=4, layers=3).double()  # a normal cell, 2 reduce
    w_params = model.weight_parameters()
    w_opt = torch.optim.SGD(w_params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    cfg = resolve_search({"space": "darts", "algorithm": "sgas", "sgas": {"criterion": criterion}})
    algo = algorithm_class("sgas")(cfg, model, w_params, w_opt)
    with torch.no_grad():
        model.alpha.normal_()  # far from uniform
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    return model, algo, copy.deepcopy(model), (x[:8], y[:8]), (x[8:], y[8:])


def upstream_sgas_forward(net, x, alphas, selected):
    """lightaime/sgas `Network.forward` / `Cell.forward` on our modules: per row j of the cell type
    softmax(alphas[j]); an undecided edge (-1) mixes, a pruned one (`none`, index 0) is skipped, a
    decided one runs its op alone."""
    n = len(darts.EDGES)
    s0 = s1 = net.stem(x)
    for cell in net.cells:
        off = n if cell.reduction else 0
        states = [cell.pre0(s0), cell.pre1(s1)]
        offset = 0
        for _ in range(darts.STEPS):
            o_list = []
            for j, h in enumerate(states):
                sel = int(selected[off + offset + j])
                mixed = cell.edges[offset + j]
                if sel == -1:
                    w = F.softmax(alphas[off + offset + j], dim=-1)
                    o_list.append(sum(wk * op(h) for wk, op in zip(w, mixed.ops)))
                elif sel == 0:
                    continue
                else:
                    o_list.append(mixed.ops[sel](h))
            offset += len(states)
            states.append(sum(o_list))
        s0, s1 = s1, torch.cat(states[-4:], dim=1)
    return net.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1))


def upstream_edge_decision(alphas, selected, flags, history, epoch, criterion, steps=4):
    """lightaime/sgas train_search.py `edge_decision` (+ `Network.check_edges`) for one cell type,
    warmup_dec_epoch 9, decision_freq 5, history_size 4; returns (selected, flags)."""
    import math

    import numpy as np

    def normalize(v):
        min_v = torch.min(v)
        range_v = torch.max(v) - min_v
        return (v - min_v) / range_v if range_v > 0 else torch.zeros(v.size(), dtype=v.dtype)

    def histogram_intersection(a, b):
        return torch.from_numpy(np.minimum(a.numpy(), b.numpy())).sum(dim=1)

    mat = F.softmax(torch.stack(alphas, dim=0), dim=-1).detach()
    importance = torch.sum(mat[:, 1:], dim=-1)
    probs = mat[:, 1:] / importance[:, None]
    entropy = torch.distributions.Categorical(probs=probs).entropy() / math.log(probs.size()[1])
    if criterion == 2:
        inter = torch.zeros(probs.shape[0], dtype=probs.dtype)
        for hist in history:
            inter += histogram_intersection(hist, probs)
        if history:
            inter /= len(history)
        history.append(probs)
        if len(history) > 4:
            history.pop(0)
        score = normalize(importance) * normalize(1 - entropy) * normalize(inter)
    else:
        score = normalize(importance) * normalize(1 - entropy)
    if torch.sum(flags.int()) > 0 and epoch >= 9 and (epoch - 9) % 5 == 0:
        masked_score = torch.min(score, (2 * flags.to(score.dtype) - 1) * np.inf)
        e = torch.argmax(masked_score)
        selected[e] = torch.argmax(probs[e]) + 1
        flags[e] = False
        n, start = 2, 0
        for _ in range(steps):  # check_edges
            end = start + n
            if torch.sum(1 - flags[start:end].int()) >= 2:
                for j in range(start, end):
                    if flags[j]:
                        flags[j] = False
                        selected[j] = 0
            start, n = end, n + 1
    return selected, flags


@pytest.mark.parametrize("criterion", [1, 2])
def test_sgas_decisions_equal_upstream(criterion):
    """Upstream epochs 0..49 of edge_decision (normal, then reduce) on moving alphas: our
    decisions, pruning and criterion 2's window against the transcription; 8 edges decided per
    cell type by the end of upstream's 50-epoch schedule, the rest pruned."""
    model, algo, *_ = _sgas_setup(criterion)
    n = len(darts.EDGES)
    sel = {c: -torch.ones(n, dtype=torch.long) for c in ("normal", "reduce")}
    flags = {c: torch.ones(n, dtype=torch.bool) for c in ("normal", "reduce")}
    hist = {"normal": [], "reduce": []}
    g = torch.Generator().manual_seed(3)
    for e in range(50):
        with torch.no_grad():  # the undecided rows move, as the architecture steps would move them
            step = 0.3 * torch.randn(model.alpha.shape, generator=g, dtype=torch.float64)
            model.alpha.add_(torch.where(algo.decided()[:, None], 0.0, step))
        rows = [model.alpha[i].detach().clone() for i in range(2 * n)]
        for c, off in (("normal", 0), ("reduce", n)):
            sel[c], flags[c] = upstream_edge_decision(
                rows[off : off + n], sel[c], flags[c], hist[c], e, criterion
            )
        algo.end_epoch(e + 1, 50)
        assert algo.selected.tolist() == sel["normal"].tolist() + sel["reduce"].tolist(), e
    decided = [(s != -1).sum().item() for s in sel.values()]
    assert decided == [14, 14] and [(s > 0).sum().item() for s in sel.values()] == [8, 8]
    assert len(algo.decisions) == 28
    if criterion == 2:
        assert len(algo.history["normal"]) == 4


def test_sgas_step_equals_upstream_with_decided_edges():
    """One SGAS step (architecture first, first order, then the weights) with decided and pruned
    edges against upstream's forward (decided op alone, pruned edge skipped) and Architect (one
    Adam over the per-edge alphas, decided ones without gradient). The ops that a decided edge no
    longer uses are the one documented difference (ours: zero gradient, moved by weight decay)."""
    model, algo, ref, train, arch = _sgas_setup()
    selected = -torch.ones(28, dtype=torch.long)
    selected[[0, 1, 15]] = torch.tensor([4, 6, 5])  # node 0 of normal decided; a reduce edge
    selected[[2, 3]] = torch.tensor([0, 0])  # pruned
    algo.selected = selected.clone()
    _loop_step(model, algo, train, arch)

    alphas = [
        ref.alpha[i].detach().clone().requires_grad_(int(selected[i]) == -1) for i in range(28)
    ]
    a_opt = torch.optim.Adam(alphas, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    a_opt.zero_grad()
    F.cross_entropy(upstream_sgas_forward(ref, arch[0], alphas, selected), arch[1]).backward()
    for a in alphas:
        if not a.requires_grad:
            a.grad = None
    a_opt.step()
    w = ref.weight_parameters()
    w_opt = torch.optim.SGD(w, lr=0.025, momentum=0.9, weight_decay=3e-4)
    w_opt.zero_grad(set_to_none=True)
    F.cross_entropy(upstream_sgas_forward(ref, train[0], alphas, selected), train[1]).backward()
    torch.nn.utils.clip_grad_norm_([p for p in w if p.grad is not None], 5.0)
    w_opt.step()
    torch.testing.assert_close(model.alpha, torch.stack(alphas).detach(), **TOL)
    used = [p.grad is not None for p in w]
    assert 0 < sum(used) < len(w)  # the decided edges' other ops got no gradient upstream
    for a, b, u in zip(model.weight_parameters(), w, used):
        if u:
            torch.testing.assert_close(a, b, **TOL)
    wts = algo.distribution()
    assert (wts[0] == F.one_hot(torch.tensor(4), 8)).all() and wts[2, 0] == 1
