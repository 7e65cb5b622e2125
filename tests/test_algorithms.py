"""Search algorithms (ray_nas.algorithms): DARTS-V2's hypergradient, GAEA's step and simplex,
DrNAS's Dirichlet record and seeded sampling, ERM's batches, and every algorithm x both supernets
writing the store contract and resuming bit-identically."""

from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ray_nas import store
from ray_nas.algorithms import NAMES, algorithm_class, arch_first
from ray_nas.algorithms.darts import DartsV2
from ray_nas.algorithms.drnas import concentration
from ray_nas.algorithms.gaea import eg_update
from ray_nas.config import resolve_search, run_id, search_config, spec_from_dict
from ray_nas.search.faults import KILL_AT_ENV
from ray_nas.search.loop import BatchPlan, hessian_eigenvalue, search, seed_everything
from ray_nas.search.trial import run_trial
from ray_nas.spaces import nb201
from ray_nas.spaces.nb201.build import build_supernet
from ray_nas.training.data import load_dataset

from .conftest import TINY_SEARCH, killed_search_matches_uninterrupted

TINY = {**TINY_SEARCH, "epochs": 2, "steps_per_epoch": 2, "batch_size": 8}
#: the algorithms that run on NAS-Bench-201 (sgas: the DARTS space only; tests/test_baselines.py)
NB201_NAMES = tuple(n for n in NAMES if n != "sgas")


def _tiny_setup(impl: str, algorithm: str, dtype=torch.float64, lr=0.025, **keys):
    torch.manual_seed(0)
    model = build_supernet(impl, nb201.OPS, 4, 1, 10, False).to(dtype)
    w_params = model.weight_parameters()
    w_opt = torch.optim.SGD(w_params, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    cfg = resolve_search({"algorithm": algorithm, **keys})
    algo = algorithm_class(algorithm)(cfg, model, w_params, w_opt)
    with torch.no_grad():
        if algorithm in ("darts_v1", "darts_v2", "drnas"):
            model.alpha.normal_()  # far from uniform
    x = torch.randn(16, 3, 8, 8, dtype=dtype)
    y = torch.randint(0, 10, (16,))
    return model, algo, w_params, w_opt, (x[:8], y[:8]), (x[8:], y[8:])


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_darts_v2_finite_difference_equals_exact_hypergradient(impl):
    # radius 1e-5 (float64): at the upstream 0.01 this tiny random net's w +- R v crosses ReLU
    # kinks and the central difference is off by ~10x; from 1e-4 down it is exact to ~1e-10
    xi = 0.1
    model, algo, w_params, w_opt, train, arch = _tiny_setup(
        impl, "darts_v2", lr=xi, darts_v2={"radius": 1e-5}
    )
    for p in w_params:  # a nonzero momentum buffer enters the virtual step
        w_opt.state[p]["momentum_buffer"] = 0.01 * torch.randn_like(p)
    before = [t.detach().clone() for t in (*w_params, *model.buffers())]

    def loss_of(x, y, w):
        return F.cross_entropy(model(x, weights=w), y)

    fd = algo.hypergradient(loss_of, train, arch, xi)
    # the weights and BN buffers are exactly as before
    assert all(torch.equal(a, b) for a, b in zip(before, (*w_params, *model.buffers())))

    # exact: autograd through one virtual SGD step w' = w - xi (mu buf + dL_t/dw + wd w)
    names = [n for n, _ in model.named_parameters() if n != "alpha"]
    a = model.alpha.detach().clone().requires_grad_(True)
    lt = F.cross_entropy(model(train[0], weights=F.softmax(a, -1)), train[1])
    g = torch.autograd.grad(lt, w_params, create_graph=True)
    virtual = {
        n: p - xi * (0.9 * w_opt.state[p]["momentum_buffer"] + gp + 5e-4 * p)
        for n, p, gp in zip(names, w_params, g)
    }
    virtual["alpha"] = model.alpha
    lv = F.cross_entropy(
        functional_call(model, virtual, (arch[0],), {"weights": F.softmax(a, -1)}), arch[1]
    )
    (exact,) = torch.autograd.grad(lv, a, retain_graph=True)
    rel = (fd - exact).norm() / exact.norm()
    assert rel < 1e-4, rel
    # the second-order term is not negligible here (so the check can fail): dropping it (the
    # partial derivative at fixed w') is far from the exact hypergradient
    fixed = {n: v.detach() for n, v in virtual.items()}
    lv_fixed = F.cross_entropy(
        functional_call(model, fixed, (arch[0],), {"weights": F.softmax(a, -1)}), arch[1]
    )
    (partial,) = torch.autograd.grad(lv_fixed, a)
    assert (partial - exact).norm() / exact.norm() > 1e-3


def test_step_order_is_upstreams():
    """V1 (NAS-Bench-201's DARTS-V1) does weights first on nb201 and the alpha step first on the
    DARTS and 1Shot1 spaces (quark0/darts); DARTS-V2, GAEA and DrNAS the alpha step everywhere."""
    assert [arch_first(n, "nb201") for n in NAMES[:4]] == [False, True, True, True]
    for space in ("darts", "nb1shot1_s1", "nb1shot1_s2", "nb1shot1_s3"):
        assert [arch_first(n, space) for n in NAMES[:4]] == [True] * 4
    assert not arch_first("drnas", "darts", "weights_first")
    assert arch_first("darts_v1", "nb201", "arch_first")
    # the baselines: SDARTS and NASP step the architecture first, GDAS and SNAS the weights
    assert [arch_first(n, "darts") for n in NAMES[4:9]] == [True, True, False, False, True]
    assert arch_first("pc_darts", "nb201") and arch_first("gaea_pc_darts", "darts")
    # behaviourally: one V2 search step = its arch step at the initial weights, then the weight step
    cfg = resolve_search({**TINY, "algorithm": "darts_v2", "epochs": 1, "steps_per_epoch": 1,
                          "impl": "reference", "weights": {"grad_clip": 0.0}})  # fmt: skip
    recs = []
    search(cfg, recs.append, progress=False, log=lambda s: None)
    gen = seed_everything(cfg.seed)
    data = load_dataset("fake")
    plan = BatchPlan(cfg, data, torch.device("cpu"), gen)
    model = build_supernet("reference", cfg.ops, cfg.channels, cfg.cells, 10, False)
    w_params = model.weight_parameters()
    w_opt = torch.optim.SGD(w_params, lr=cfg.weights.lr, momentum=0.9, nesterov=True,
                            weight_decay=cfg.weights.weight_decay)  # fmt: skip
    algo = DartsV2(cfg, model, w_params, w_opt)
    plan.new_epoch()
    train, arch = plan.batches(0)

    def loss_of(x, y, w):
        return F.cross_entropy(model(x, weights=w), y)

    algo.arch_step(loss_of, train, arch, cfg.weights.lr)
    np.testing.assert_array_equal(recs[1].alpha, model.alpha.detach().numpy())


def test_gaea_step_equals_closed_form_with_clamp():
    alpha = torch.tensor([[0.5, 0.3, 0.1, 0.05, 0.05], [0.2, 0.2, 0.2, 0.2, 0.2]])
    grad = torch.tensor([[0.0, 1.0, -1.0, 200.0, 0.0], [0.0, 0.0, 0.0, 0.0, -3.0]])
    got = eg_update(alpha, grad, eta=0.1, clamp=1e-5)
    # by hand: u = alpha * e^{-0.1 g}; entry (0, 3) = 0.05 e^{-20} ~ 1e-10 is clamped to 1e-5
    u0 = np.array([0.5, 0.3 * np.exp(-0.1), 0.1 * np.exp(0.1), 1e-5, 0.05])
    u1 = np.array([0.2, 0.2, 0.2, 0.2, 0.2 * np.exp(0.3)])
    np.testing.assert_allclose(got[0].numpy(), u0 / u0.sum(), rtol=1e-6)
    np.testing.assert_allclose(got[1].numpy(), u1 / u1.sum(), rtol=1e-6)
    # the Gaea class applies exactly this to the arch batch's loss gradient, mixing alpha directly
    model, algo, w_params, _, train, arch = _tiny_setup("fast", "gaea")
    assert torch.allclose(model.alpha, torch.full((6, 5), 0.2, dtype=torch.float64))
    assert all(p is not model.alpha for p in w_params)  # no weight decay / momentum / clipping

    def loss_of(x, y, w):
        return F.cross_entropy(model(x, weights=w), y)

    a0 = model.alpha.detach().clone()
    (g,) = torch.autograd.grad(loss_of(*arch, model.alpha), [model.alpha])
    algo.arch_step(loss_of, train, arch, 0.025)
    assert torch.equal(model.alpha.detach(), eg_update(a0, g, 0.1, 1e-5))
    assert g[:, nb201.OPS.index("none")].abs().max() == 0  # none moves only by renormalising


def test_gaea_search_stays_on_simplex_without_weight_decay():
    # a large weight decay and clip: were alpha in the weights' SGD, its rows would leave the simplex
    cfg = resolve_search({**TINY, "algorithm": "gaea", "epochs": 3, "gaea": {"eta": 5.0},
                          "weights": {"weight_decay": 0.5, "grad_clip": 1e-3}})  # fmt: skip
    recs = []
    search(cfg, recs.append, progress=False, log=lambda s: None)
    w = np.stack([r.weights for r in recs])
    np.testing.assert_array_equal(w, np.stack([r.alpha for r in recs]))  # alpha mixed directly
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
    assert w.min() >= cfg.gaea.clamp * (1 - 1e-6)
    assert not np.array_equal(w[0], w[-1]) and [r.lr_alpha for r in recs[1:]] == [5.0] * 3


def _drnas_run(tmp_path, name, **over):
    raw = {"name": name, "store": str(tmp_path / "store"),
           "search": {**TINY, "algorithm": "drnas", **over}}  # fmt: skip
    spec = spec_from_dict(raw)
    cfg = search_config(spec)
    rid = run_id(cfg)
    run_trial(spec, cfg, rid, progress=False, log=lambda s: None)
    trials, _ = store.read_job(spec.job_dir)
    return trials[0]


def test_drnas_records_dirichlet_mean_and_samples_seeded(tmp_path):
    a = _drnas_run(tmp_path, "a")
    beta = a.extras["concentration"]
    np.testing.assert_allclose(beta, F.elu(torch.from_numpy(a.alpha)).numpy() + 1, rtol=1e-6)
    np.testing.assert_allclose(a.weights, beta / beta.sum(-1, keepdims=True), rtol=1e-6)
    b = _drnas_run(tmp_path, "b")
    np.testing.assert_array_equal(a.alpha, b.alpha)  # the same seed: the same samples
    c = _drnas_run(tmp_path, "c", seed=1)
    assert not np.array_equal(a.alpha[-1], c.alpha[-1])
    # the mixing weights are Dirichlet draws: different each forward, on the simplex
    _, algo, *_ = _tiny_setup("reference", "drnas")
    w1, w2 = algo.mixing_weights(), algo.mixing_weights()
    assert not torch.equal(w1, w2) and torch.allclose(w1.sum(-1), torch.ones(6, dtype=w1.dtype))
    assert torch.equal(algo.distribution(), concentration(algo.alpha) / concentration(algo.alpha).sum(-1, keepdim=True))  # fmt: skip


def test_drnas_kl_regulariser_runs(tmp_path):
    t = _drnas_run(tmp_path, "kl", drnas={"reg": "kl"})
    assert np.isfinite(t.alpha).all() and t.epochs["epoch"].tolist() == [0, 1, 2]


def _row_keys(images: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in images}


def test_erm_batches_come_from_the_whole_training_set_independently():
    cfg = resolve_search({**TINY, "objective": "erm", "batch_size": 32, "steps_per_epoch": None})
    data = load_dataset("fake")
    plan = BatchPlan(cfg, data, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert plan.train is plan.arch and len(plan.train) == len(data.train)
    # the pool is the training split, image for image (never the test split)
    pool = plan.train.images.permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(pool, data.train.images)
    plan.new_epoch()
    w_idx = torch.cat([plan.train_indices(s) for s in range(plan.steps())])
    a_idx = [plan.arch_indices() for _ in range(plan.steps())]
    assert sorted(w_idx.tolist()) == list(range(len(data.train)))  # weights: each image once
    a_all = torch.cat(a_idx)
    assert a_all.min() >= 0 and a_all.max() < len(data.train)
    assert not any(torch.equal(plan.train_indices(s), a) for s, a in enumerate(a_idx))
    # both halves of the bilevel split feed both steps
    half = _row_keys(data.search_valid.images)
    a_keys = [data.train.images[i].tobytes() in half for i in a_all.tolist()]
    w_keys = [data.train.images[i].tobytes() in half for i in w_idx.tolist()]
    assert 0 < sum(a_keys) < len(a_keys) and 0 < sum(w_keys) < len(w_keys)
    test_keys = _row_keys(data.test.images)
    assert not any(data.train.images[i].tobytes() in test_keys for i in a_all.tolist())
    # bilevel: weights on search-train, arch on search-valid
    bi = BatchPlan(resolve_search(TINY), data, torch.device("cpu"), torch.Generator())
    assert len(bi.train) == len(data.search_train) and len(bi.arch) == len(data.search_valid)


def _read(job_dir: str, rid: str):
    ep = pd.read_parquet(f"{job_dir}/epochs/run_id={rid}").sort_values("epoch", ignore_index=True)
    al = pd.read_parquet(f"{job_dir}/alphas/run_id={rid}").sort_values(
        ["epoch", "edge", "op"], ignore_index=True
    )
    return ep.drop(columns="seconds"), al


def _run_in_child_killed_at(epoch: int, run, *args, **kwargs) -> None:
    """run(*args, **kwargs) in a forked child (torch already imported: no start-up cost) that SIGKILLs itself
    right after writing `epoch` (trial.KILL_AT_ENV): no exception, no cleanup."""
    pid = os.fork()
    if pid == 0:
        os.environ[KILL_AT_ENV] = str(epoch)
        try:
            run(*args, **kwargs)
        finally:
            os._exit(3)  # reached only if the kill did not happen
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status


@pytest.mark.parametrize("impl", ["reference", "fast"])
@pytest.mark.parametrize("algorithm", NB201_NAMES)
def test_every_algorithm_writes_the_contract_and_resumes_after_sigkill(algorithm, impl, tmp_path):
    search_keys = {**TINY, "algorithm": algorithm, "impl": impl}
    runs = {}
    for name in ("ref", "killed"):
        spec = spec_from_dict(
            {"name": name, "store": str(tmp_path / "store"), "search": search_keys}
        )
        cfg = search_config(spec)
        rid = run_id(cfg)
        if name == "killed":  # SIGKILLed after writing epoch 2, before its checkpoint
            _run_in_child_killed_at(2, run_trial, spec, cfg, rid, progress=False, log=str)
        run_trial(spec, cfg, rid, progress=False, log=lambda s: None)
        runs[name] = _read(spec.job_dir, rid)
    (ep, al), (ep2, al2) = runs["ref"], runs["killed"]
    pd.testing.assert_frame_equal(al, al2)
    pd.testing.assert_frame_equal(ep, ep2)
    assert ep.epoch.tolist() == [0, 1, 2] and len(al) == 3 * 6 * 5
    sums = al.groupby(["epoch", "edge"]).weight.sum()
    assert ((sums - 1).abs() < 1e-5).all()
    assert al.concentration.notna().all() == (algorithm == "drnas")
    assert not np.array_equal(al[al.epoch == 0].alpha, al[al.epoch == 2].alpha)


def test_drnas_survives_sigkill_bit_identically(write_job):
    """`ray-nas search` SIGKILLed at an arbitrary point after 3 epochs, resumed: bit-identical."""
    search_keys = {"algorithm": "drnas", "epochs": 4, "steps_per_epoch": 2, "batch_size": 8}
    killed_search_matches_uninterrupted(write_job, search_keys, 4)


@pytest.mark.parametrize("algorithm", NB201_NAMES)
def test_hessian_is_taken_wrt_the_raw_parameter(algorithm):
    """The loop's eigenvalue: the Hessian of the loss of mix(alpha) w.r.t. alpha itself."""
    model, algo, *_, (x, y) = _tiny_setup("reference", algorithm)
    model.train()  # the Hessian is taken in train mode (issue 17), as the direct one below
    eig, h = hessian_eigenvalue(model, model.alpha, x, y, 0.0, algo.mix)  # without the L2 term
    full = torch.autograd.functional.hessian(
        lambda a: F.cross_entropy(model(x, weights=algo.mix(a)), y), model.alpha.detach().clone()
    ).reshape(30, 30)
    np.testing.assert_allclose(h, full.numpy(), atol=1e-10)
    assert eig == pytest.approx(np.linalg.eigvalsh(full.numpy()).max(), abs=1e-10)


def test_algorithms_command_lists_every_algorithm_and_its_keys(capsys):
    from ray_nas.cli import main

    assert main(["algorithms"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert f"{name}:" in out
    for key in ("search.darts_v2.radius = 0.01", "search.gaea.eta = 0.1", "search.gaea.clamp = 1e-05",
                "search.drnas.reg = 'l2'", "search.drnas.reg_scale = 0.001", "search.objective",
                "search.step_order: upstream", "step order: weights then alpha on nb201",
                "Hessian eigenvalue: d2 L_valid / d alpha2 only"):  # fmt: skip
        assert key in out


def test_new_keys_leave_default_run_ids_and_count_when_set():
    base = resolve_search({})
    assert run_id(base) == run_id(resolve_search({"objective": "bilevel", "gaea": {"eta": 0.1}}))
    ids = {run_id(resolve_search(k)) for k in ({}, {"objective": "erm"}, {"gaea": {"eta": 0.2}},
                                                {"drnas": {"reg": "kl"}}, {"darts_v2": {"radius": 0.02}},
                                                {"algorithm": "gaea"})}  # fmt: skip
    assert len(ids) == 6


def test_schema_1_stores_read_and_resume_without_concentration(tmp_path):
    """A store written before `alphas.concentration` reads (no extras) and resumes (nulls)."""
    import pyarrow as pa

    spec = spec_from_dict({"name": "old", "store": str(tmp_path / "store"), "search": TINY})
    cfg = search_config(spec)
    rid = run_id(cfg)
    run_trial(spec, cfg, rid, progress=False, log=lambda s: None)
    path = store.trial_paths(spec.job_dir, rid)["alphas"]
    old = pq.read_table(path).drop_columns(["concentration"])
    pq.write_table(
        old.replace_schema_metadata({**old.schema.metadata, b"ray_nas.schema_version": b"1"}), path
    )
    (t,), problems = store.read_job(spec.job_dir)
    assert not problems and t.extras == {} and t.alpha.shape == (3, 6, 5)
    writer = store.TrialWriter(spec.job_dir, rid, cfg.ops, nb201.EDGES, "{}")
    writer.truncate(1)
    assert writer.alphas[0].schema.field("concentration").type == pa.float32()
    assert writer.alphas[0].column("concentration").null_count == 2 * 30
