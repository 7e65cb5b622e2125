"""PC-DARTS and GAEA+PC-DARTS: the partial-channel mixed op, edge normalisation, the genotype rule
with edge weights and one search step, each against a float64 transcription of the authors' code
(yuhuixu1993/PC-DARTS @ b74702f model_search.py / architect.py; liamcli/gaea_release @ 1604615
cnn/architect/architect_edarts.py); the config keys; CLI searches on both spaces and a resume
after SIGKILL."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ray_nas.algorithms import algorithm_class, arch_first
from ray_nas.config import resolve_search, run_id
from ray_nas.search.loop import weight_step, weights_lr
from ray_nas.spaces import darts, get_space
from ray_nas.spaces.darts import network as dn
from ray_nas.spaces.nb201 import supernet as nb

from .conftest import killed_search_matches_uninterrupted

CPU = torch.device("cpu")


# -- transcriptions of the upstream code (plain functions over our modules' submodules) --------


def up_channel_shuffle(x, groups):
    batchsize, num_channels, height, width = x.data.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, -1, height, width)


def up_mixed_op(ops, k, x, weights):
    """PC-DARTS MixedOp.forward (mp = MaxPool2d(2, 2))."""
    dim_2 = x.shape[1]
    xtemp = x[:, : dim_2 // k, :, :]
    xtemp2 = x[:, dim_2 // k :, :, :]
    temp1 = sum(w * op(xtemp) for w, op in zip(weights, ops))
    if temp1.shape[2] == x.shape[2]:
        ans = torch.cat([temp1, xtemp2], dim=1)
    else:
        ans = torch.cat([temp1, torch.nn.MaxPool2d(2, 2)(xtemp2)], dim=1)
    return up_channel_shuffle(ans, k)


def up_weights2(betas, steps=4):
    """PC-DARTS Network.forward's per-node softmax of one cell type's betas [14]."""
    n, start = 3, 2
    weights2 = F.softmax(betas[0:2], dim=-1)
    for _ in range(steps - 1):
        end = start + n
        weights2 = torch.cat([weights2, F.softmax(betas[start:end], dim=-1)], dim=0)
        start, n = end, n + 1
    return weights2


def up_network(net, x, a_n, a_r, w2_n, w2_r, k):
    """PC-DARTS Network.forward + Cell.forward on `net`'s modules; a_*: the op weights [14, K]
    each cell type mixes with, w2_*: the edge weights [14]."""
    s0 = s1 = net.stem(x)
    for cell in net.cells:
        weights, weights2 = (a_r, w2_r) if cell.reduction else (a_n, w2_n)
        states, offset = [cell.pre0(s0), cell.pre1(s1)], 0
        for _ in range(4):
            s = sum(
                weights2[offset + j] * up_mixed_op(cell.edges[offset + j].ops, k, h, weights[offset + j])
                for j, h in enumerate(states)
            )  # fmt: skip
            offset += len(states)
            states.append(s)
        s0, s1 = s1, torch.cat(states[-4:], dim=1)
    out = F.adaptive_avg_pool2d(s1, 1)
    return net.classifier(out.view(out.size(0), -1))


def up_parse(weights, weights2, primitives, steps=4):
    """PC-DARTS Network.genotype()'s _parse."""
    gene, n, start = [], 2, 0
    none = primitives.index("none")
    for i in range(steps):
        end = start + n
        W = weights[start:end].copy()
        W2 = weights2[start:end].copy()
        for j in range(n):
            W[j, :] = W[j, :] * W2[j]
        edges = sorted(range(i + 2), key=lambda x: -max(W[x][k] for k in range(len(W[x])) if k != none))[:2]  # fmt: skip
        for j in edges:
            k_best = None
            for k in range(len(W[j])):
                if k != none and (k_best is None or W[j][k] > W[j][k_best]):
                    k_best = k
            gene.append((primitives[k_best], j))
        start = end
        n += 1
    return gene


def up_normalize(x, dim, min_v=1e-5):
    x = torch.clamp(x, min=min_v)
    return x / x.sum(dim=dim, keepdim=True)


def up_edge_normalize(p, n_nodes=4, n_inputs=2):
    """architect_edarts.py's edge branch: divide by the node's sum (no clamp)."""
    node_weights = torch.zeros_like(p)
    offset = 0
    for _ in range(n_nodes):
        node_weights[offset : offset + n_inputs] = sum(p[offset : offset + n_inputs])
        offset += n_inputs
        n_inputs += 1
    return p / node_weights


# -- helpers ------------------------------------------------------------------------------------

TINY_DARTS = {"space": "darts", "channels": 4, "layers": 3, "device": "cpu"}


def _setup(algorithm: str, **keys):
    torch.manual_seed(0)
    cfg = resolve_search({**TINY_DARTS, "algorithm": algorithm, "partial_channels": 4,
                          "edge_normalization": True, **keys})  # fmt: skip
    net = get_space("darts").build_supernet(cfg, 10).double()
    w_params = net.weight_parameters()
    w_opt = torch.optim.SGD(w_params, lr=0.1, momentum=0.9, weight_decay=3e-4, nesterov=False)
    algo = algorithm_class(algorithm)(cfg, net, w_params, w_opt)
    return cfg, net, w_params, w_opt, algo


def _batches(b=6, size=16):
    g = torch.Generator().manual_seed(1)
    mk = lambda: (torch.randn(b, 3, size, size, generator=g, dtype=torch.float64),  # noqa: E731
                  torch.randint(0, 10, (b,), generator=g))  # fmt: skip
    return mk(), mk()


def _loss_of(net):
    return lambda x, y, w: F.cross_entropy(net(x, weights=w), y)


# -- the supernet -------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channel_mixed_op_equals_upstream(stride):
    torch.manual_seed(0)
    c, k = 16, 4
    op = dn.MixedOp(darts.OPS, c, stride, partial=k).double()
    for m in op.ops:  # ops on c // k channels; pools followed by a non-affine BN of c // k
        convs = [p for p in m.modules() if isinstance(p, torch.nn.Conv2d)]
        assert convs == [] or all(p.in_channels == c // k for p in convs)
    assert [isinstance(m, torch.nn.Sequential) and isinstance(m[-1], torch.nn.BatchNorm2d)
            for m in op.ops[1:3]] == [True, True]  # fmt: skip
    x = torch.randn(3, c, 8, 8, dtype=torch.float64)
    w = torch.softmax(torch.randn(len(darts.OPS), dtype=torch.float64), 0)
    out = op(x, w)
    assert out.shape == (3, c, 8 // stride, 8 // stride)
    assert torch.allclose(out, up_mixed_op(op.ops, k, x, w), rtol=0, atol=1e-12)
    y = torch.arange(16.0).view(1, 16, 1, 1)  # the shuffle: channel g*4+i -> i*4+g
    assert dn.channel_shuffle(y, 4).flatten().tolist() == [
        float(g * 4 + i) for i in range(4) for g in range(4)
    ]


def test_nb201_partial_channels_and_edge_normalisation_equal_the_transcription():
    torch.manual_seed(0)
    net = nb.Supernet(("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"),
                      channels=8, cells=1, partial_channels=4, edge_normalization=True).double()  # fmt: skip
    with torch.no_grad():
        net.betas.copy_(torch.randn(6, dtype=torch.float64))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w = torch.softmax(net.alpha, -1)
    ew = torch.cat([F.softmax(net.betas[a:b], -1) for a, b in ((0, 1), (1, 3), (3, 6))])
    h = net.stem(x)
    for layer in net.layers:
        if isinstance(layer, nb.SearchCell):
            nodes = [h]
            for i in range(1, 4):
                nodes.append(sum(ew[e] * up_mixed_op(layer.edges[e].ops, 4, nodes[j], w[e])
                                 for e, (t, j) in enumerate(nb.nb201.EDGE_PAIRS) if t == i))  # fmt: skip
            h = nodes[-1]
        else:
            h = layer(h)
    ref = net.classifier(torch.flatten(F.adaptive_avg_pool2d(net.lastact(h), 1), 1))
    assert torch.allclose(net(x), ref, rtol=0, atol=1e-12)
    assert ew[0] == 1.0 and torch.allclose(net.connection_weights(), ew)


# -- one search step ------------------------------------------------------------------------------


def test_pc_darts_one_step_equals_upstream_architect_and_weight_step():
    cfg, net, w_params, w_opt, algo = _setup("pc_darts", lr_scheme="pc_darts")
    assert (cfg.alpha.lr, cfg.batch_size, cfg.warmup_epochs) == (6e-4, 256, 15)
    assert arch_first("pc_darts", cfg.space) and algo.arch_parameters == [net.alpha, net.betas]
    net.train()
    up = copy.deepcopy(net)
    b0 = net.betas.detach().clone()
    train, arch = _batches()
    # ours: the loop's order for an arch-first algorithm
    algo.arch_step(_loss_of(net), train, arch, 0.1)
    weight_step(net, algo, w_opt, w_params, cfg, CPU, train)
    # upstream: Architect.step (first order) then the weight step of train_search.py
    a_n, a_r = (
        up.alpha[s].detach().clone().requires_grad_() for s in (slice(0, 14), slice(14, 28))
    )
    b_n, b_r = (
        up.betas[s].detach().clone().requires_grad_() for s in (slice(0, 14), slice(14, 28))
    )
    arch_params = [a_n, a_r, b_n, b_r]
    opt = torch.optim.Adam(arch_params, lr=6e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    logits = up_network(up, arch[0], F.softmax(a_n, -1), F.softmax(a_r, -1), up_weights2(b_n),
                        up_weights2(b_r), 4)  # fmt: skip
    F.cross_entropy(logits, arch[1]).backward()
    opt.step()
    params = up.weight_parameters()
    sgd = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=3e-4)
    sgd.zero_grad()
    with torch.no_grad():
        w = [F.softmax(a, -1) for a in (a_n, a_r)] + [up_weights2(b) for b in (b_n, b_r)]
    F.cross_entropy(up_network(up, train[0], *w, 4), train[1]).backward(inputs=params)
    torch.nn.utils.clip_grad_norm_(params, 5.0)
    sgd.step()
    assert torch.allclose(net.alpha, torch.cat([a_n, a_r]), rtol=0, atol=1e-15)
    assert torch.allclose(net.betas, torch.cat([b_n, b_r]), rtol=0, atol=1e-15)
    assert not torch.equal(net.betas, b0)  # moved
    diff = max((p - q).abs().max().item() for p, q in zip(w_params, params))
    assert diff < 1e-12, diff


def test_gaea_pc_darts_one_step_equals_upstream_architect_edarts():
    cfg0, *_ = _setup("gaea_pc_darts")
    # edge_eta large enough that an edge weight falls below 1e-5: upstream does not clamp edges
    cfg, net, w_params, w_opt, algo = _setup("gaea_pc_darts",
                                             gaea_pc_darts={"edge_eta": 400.0})  # fmt: skip
    assert cfg0.gaea_pc_darts.edge_eta == 0.1 and cfg0.gaea_pc_darts.eta == 0.1
    K = len(darts.OPS)
    init_edges = torch.tensor(
        [1 / 2] * 2 + [1 / 3] * 3 + [1 / 4] * 4 + [1 / 5] * 5, dtype=torch.float64
    )
    assert torch.equal(net.alpha, torch.full((28, K), 1 / K, dtype=torch.float64))
    assert torch.allclose(net.betas, torch.cat([init_edges, init_edges]), rtol=0, atol=0)
    net.train()
    up = copy.deepcopy(net)
    train, arch = _batches()
    algo.arch_step(_loss_of(net), train, arch, 0.1)
    weight_step(net, algo, w_opt, w_params, cfg, CPU, train)
    # upstream: alphas and edges used directly; one backward; EG on both
    a_n, a_r, e_n, e_r = (t.detach().clone().requires_grad_() for t in
                          (up.alpha[:14], up.alpha[14:], up.betas[:14], up.betas[14:]))  # fmt: skip
    F.cross_entropy(up_network(up, arch[0], a_n, a_r, e_n, e_r, 4), arch[1]).backward()
    with torch.no_grad():
        new_a = [up_normalize(p * torch.exp(-0.1 * p.grad), -1) for p in (a_n, a_r)]
        new_e = [up_edge_normalize(p * torch.exp(-400.0 * p.grad)) for p in (e_n, e_r)]
    assert max((400.0 * p.grad).abs().max().item() for p in (e_n, e_r)) < 60  # below our cap
    assert min(e.min().item() for e in new_e) < 1e-5  # no clamp on the edges
    params = up.weight_parameters()
    sgd = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=3e-4)
    sgd.zero_grad()
    F.cross_entropy(up_network(up, train[0], *new_a, *new_e, 4), train[1]).backward(inputs=params)
    torch.nn.utils.clip_grad_norm_(params, 5.0)
    sgd.step()
    assert torch.allclose(net.alpha, torch.cat(new_a), rtol=0, atol=1e-15)
    assert torch.allclose(net.betas, torch.cat(new_e), rtol=0, atol=1e-15)
    assert torch.equal(net.connection_weights(), net.betas)  # mixed directly
    diff = max((p - q).abs().max().item() for p, q in zip(w_params, params))
    assert diff < 1e-12, diff


# -- the genotype rule ----------------------------------------------------------------------------


def test_genotype_with_edge_weights_equals_upstream_parse():
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(30):
        alpha = rng.normal(size=(28, len(darts.OPS)))
        betas = torch.tensor(rng.normal(scale=2.0, size=28))
        soft = torch.softmax(torch.tensor(alpha), -1).numpy()
        ew = torch.cat([up_weights2(betas[:14]), up_weights2(betas[14:])]).numpy()
        g = darts.derive_genotype(soft, darts.OPS, ew)
        assert list(g.normal) == up_parse(soft[:14], ew[:14], list(darts.OPS))
        assert list(g.reduce) == up_parse(soft[14:], ew[14:], list(darts.OPS))
        changed += g != darts.derive_genotype(soft, darts.OPS)
    assert changed > 0  # the betas decide kept edges in some cases
    # by hand: node 2's edges ranked by weight x beta; the op on a kept edge is unchanged
    w = np.full((28, 8), 1 / 8)
    w[0, 7], w[1, 4] = 0.5, 0.3  # edge 2<-0 strongest by op weight
    ew = np.ones(28)
    ew[0:2] = [0.2, 0.8]  # but 2<-1 carries 4x the edge weight
    g = darts.derive_genotype(w, darts.OPS, ew)
    assert g.normal[:2] == (("sep_conv_3x3", 1), ("dil_conv_5x5", 0))
    assert darts.derive_genotype(w, darts.OPS).normal[:2] == (
        ("dil_conv_5x5", 0),
        ("sep_conv_3x3", 1),
    )


# -- config ---------------------------------------------------------------------------------------


def test_keys_presets_run_ids_and_the_frozen_lr_rule():
    base = resolve_search({})
    assert (base.partial_channels, base.edge_normalization) == (1, False)
    assert run_id(resolve_search({"partial_channels": 1, "edge_normalization": False})) == run_id(
        base
    )
    pc = resolve_search({"partial_channels": 4, "impl": "reference"})
    assert run_id(pc) != run_id(resolve_search({"impl": "reference"}))
    g = resolve_search(
        {"space": "darts", "algorithm": "gaea_pc_darts", "lr_scheme": "gaea_pc_darts"}
    )
    assert (g.partial_channels, g.edge_normalization, g.epochs, g.warmup_epochs) == (4, True, 50, 0)
    assert (g.weights.lr, g.weights.lr_min, g.weights.nesterov, g.batch_size) == (
        0.1,
        0.0,
        False,
        256,
    )
    p = resolve_search({"space": "darts", "algorithm": "pc_darts", "lr_scheme": "pc_darts"})
    assert (p.warmup_epochs, p.epochs, p.weights.warmup_rule, p.alpha.lr) == (
        15,
        35,
        "frozen",
        6e-4,
    )
    # frozen: no ramp, one cosine 0.1 -> 0 over all 50 epochs from epoch 0
    for e in (0, 7, 15, 49):
        assert weights_lr(p, e, 3, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi * e / 50)))


def test_bad_pc_darts_keys_are_refused_before_any_work(write_job, capsys, tmp_path):
    from ray_nas.cli import main

    for search, msg in [
        ({"partial_channels": 4}, "search.impl: fast has no PC-DARTS options (partial_channels > 1, edge_normalization); set impl: reference"),
        ({"space": "darts", "partial_channels": 3}, "search.partial_channels: must divide channels (4), got 3"),
        ({"space": "darts", "partial_channels": 0}, "search.partial_channels: must be > 0, got 0"),
        ({"space": "nb1shot1_s1", "edge_normalization": True}, "search.edge_normalization: PC-DARTS's edge normalisation exists on nb201 and darts, not nb1shot1_s1"),
        ({"space": "nb1shot1_s1", "partial_channels": 3}, "search.partial_channels: must divide channels (4), got 3"),
        ({"space": "darts", "algorithm": "gdas", "edge_normalization": True}, "search.algorithm: gdas moves NAS-Bench-1Shot1's connection weights, not the edge-normalisation betas"),
        ({"space": "darts", "algorithm": "gaea", "edge_normalization": True}, "search.algorithm: gaea does not move the edge-normalisation betas (edge_normalization: true); valid there: darts_v1, darts_v2, pc_darts, gaea_pc_darts"),
        ({"space": "nb1shot1_s2", "algorithm": "gaea"}, "valid there: darts_v1, darts_v2"),
        ({"space": "nb1shot1_s3", "algorithm": "gaea_pc_darts"}, "search.algorithm: gaea_pc_darts runs on nb201 and darts (PC-DARTS's supernet), not nb1shot1_s3"),
    ]:  # fmt: skip
        assert main(["search", str(write_job(search=search))]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "store").exists()  # nothing written


# -- through the CLI ------------------------------------------------------------------------------


def _store_frames(spec):
    from ray_nas import store
    from ray_nas.config import search_config

    rid = run_id(search_config(spec))
    return rid, store.read_trial(f"{spec.store}/{spec.name}", rid)


@pytest.mark.slow
@pytest.mark.parametrize(
    "search",
    [
        {"space": "darts", "algorithm": "pc_darts", "layers": 3},
        {"space": "darts", "algorithm": "gaea_pc_darts", "layers": 3},
        {"space": "nb201", "algorithm": "pc_darts", "impl": "reference"},
    ],
    ids=["darts-pc_darts", "darts-gaea_pc_darts", "nb201-pc_darts"],
)
def test_two_epoch_cli_search_records_the_betas_and_the_genotype_rule(search, write_job):
    from ray_nas.cli import main
    from ray_nas.config import load_spec

    keys = {**search, "partial_channels": 4, "edge_normalization": True, "epochs": 2,
            "batch_size": 4, "steps_per_epoch": 2}  # fmt: skip
    job = write_job(search=keys)
    assert main(["search", str(job), "--quiet"]) == 0
    spec = load_spec(job)
    _, trial = _store_frames(spec)
    space = get_space(search["space"])
    rows = space.connection_rows(resolve_search(spec.search))
    assert trial.connections == rows and len(rows) == (28 if search["space"] == "darts" else 6)
    assert trial.connection_alpha.shape == (3, len(rows))
    assert not np.array_equal(trial.connection_alpha[0], trial.connection_alpha[-1])  # moved
    cw = trial.connection_weights
    slices = dn.node_slices(4) if search["space"] == "darts" else nb.NODE_SLICES
    offsets = (0, 14) if search["space"] == "darts" else (0,)
    for o in offsets:  # each node's edge weights sum to 1 (softmax, or GAEA's simplex)
        for a, b in slices:
            assert np.allclose(cw[:, o + a : o + b].sum(axis=1), 1.0, atol=1e-5)
    archs = trial.epochs["arch"]
    for t in range(3):
        if search["space"] == "darts":
            expect = darts.derive_genotype(trial.weights[t], trial.ops, cw[t]).text()
        else:
            expect = space.genotype_text(trial.weights[t], trial.ops)
        assert archs[t] == expect


@pytest.mark.slow
def test_pc_darts_search_resumes_bit_identically_after_sigkill(write_job):
    search = {**TINY_DARTS, "algorithm": "pc_darts", "lr_scheme": "pc_darts", "channels": 4,
              "warmup_epochs": 1, "epochs": 3, "batch_size": 4, "steps_per_epoch": 1,
              "dataset": "fake", "hessian_every": 0,
              "ops": ["max_pool_3x3", "skip_connect", "sep_conv_3x3"]}  # fmt: skip
    spec, rid, ep, al = killed_search_matches_uninterrupted(write_job, search, 4)
    betas = al[al.cell.str.startswith("beta_")]
    assert len(betas) == 5 * 28 and set(betas.op) == {"beta"}
    # epoch 1 is the frozen one: alpha and betas as at epoch 0; the lr did not ramp
    a = al.pivot_table(index="epoch", columns=["cell", "edge", "op"], values="alpha")
    assert np.array_equal(a.loc[0].values, a.loc[1].values)
    assert not np.array_equal(a.loc[1].values, a.loc[2].values)
    assert ep.lr_weights.iloc[1] == pytest.approx(0.1) and ep.lr_alpha.iloc[1] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_step_cost_benchmark_prints_every_trial(space):
    from .conftest import run_benchmark

    out = run_benchmark("pc_darts_step.py", "--space", space, "--channels", "4", "--layers", "3",
                        "--cells", "1", "--batch", "2", "--size", "16", "--steps", "1",
                        "--threads", "1")  # fmt: skip
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert set(rows) == {"darts_v1", "pc_darts", "pc_darts/k1", "gaea_pc_darts"}
    assert rows["darts_v1"][2] == "1.00x"
    assert all(float(r[0]) > 0 and float(r[1]) > 0 and r[2].endswith("x") for r in rows.values())
