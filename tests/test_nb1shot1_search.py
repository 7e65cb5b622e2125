"""The NAS-Bench-1Shot1 supernet and searches on its three spaces: parameter shapes and edge
counts, the connection weights moving with alpha, and a tiny search per space that writes the
store contract (op rows, connection rows, the cell text and hash every epoch) and resumes
bit-identically after SIGKILL."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ray_nas import criteria, store
from ray_nas.criteria import from_trial
from ray_nas.search.loop import seed_everything
from ray_nas.spaces import get_space, nb101
from ray_nas.spaces.nb1shot1 import SPACE_OPS, SPACES
from ray_nas.spaces.nb1shot1.supernet import Supernet

from .conftest import killed_search_matches_uninterrupted

NAMES = tuple(SPACES)


@pytest.mark.parametrize("name", NAMES)
def test_supernet_parameter_shapes_and_edge_counts(name):
    space = SPACES[name]
    seed_everything(0)
    net = Supernet(space, channels=4, layers=9)
    steps = space.steps
    assert net.alpha.shape == (steps, 3) and net.op_names == SPACE_OPS
    shapes = {"mixed_op": tuple(net.alpha.shape), "output": tuple(net.alphas_output.shape)}
    shapes |= {
        f"inputs_{v}": tuple(p.shape) for v, p in zip(space.choice_vertices, net.alphas_inputs)
    }
    assert shapes == space.alpha_shapes()  # upstream's _initialize_alphas
    assert space.num_edges == 9 and len(net.connection_weights()) == len(space.connection_rows())
    # 9 cells in 3 stacks; max-pool and doubling before cells 3 and 6; a block + projection per step
    assert len(net.cells) == 9 and net.pool_before == {3, 6}
    widths = [cell.blocks[0].ops[1][0].out_channels for cell in net.cells]
    assert widths == [4] * 3 + [8] * 3 + [16] * 3
    for i, cell in enumerate(net.cells):
        assert len(cell.blocks) == len(cell.projections) == steps
        assert cell.out_projection[0].out_channels == steps * widths[i]
        assert cell.projections[0][0].in_channels == (4 if i == 0 else steps * widths[i - 1])
    bn = net.cells[0].blocks[0].ops[1][1]
    assert bn.momentum == 0.997 and bn.affine and bn.track_running_stats  # as upstream
    arch = {id(net.alpha), id(net.alphas_output), *map(id, net.alphas_inputs)}
    weights = net.weight_parameters()
    assert not arch & set(map(id, weights))
    assert len(weights) + len(arch) == len(list(net.parameters()))
    # the connection weights shape the output and take gradients next to alpha
    x = torch.randn(2, 3, 16, 16)
    out = net(x, weights=torch.softmax(net.alpha, -1))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.connection_parameters())
    assert net.alpha.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        before = net(x)
        net.alphas_output.copy_(torch.tensor([[5.0] + [0.0] * steps]))
        assert not torch.allclose(before, net(x))


SEARCH = {"lr_scheme": "nb1shot1", "dataset": "fake", "channels": 2, "layers": 3, "epochs": 4,
          "batch_size": 4, "steps_per_epoch": 1, "hessian_every": 2}  # fmt: skip


#: one algorithm per space: DARTS-V1, nasbench-1shot1's GDAS (per-cell samples) and PC-DARTS
#: (partial channels; upstream's k = 4 needs channels 4)
ALGORITHMS = {"nb1shot1_s1": {}, "nb1shot1_s2": {"algorithm": "gdas", "gdas": {"tau_min": 1.0}},
              "nb1shot1_s3": {"algorithm": "pc_darts", "partial_channels": 4, "channels": 4}}  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_search_writes_the_contract_and_resumes_after_sigkill(name, write_job):
    space = get_space(name)
    keys = {**SEARCH, "space": name, **ALGORITHMS[name]}
    spec, rid, ep, al = killed_search_matches_uninterrupted(write_job, keys, 4)
    assert spec.search["layers"] == 3 and spec.search["lr_scheme"] == "nb1shot1"

    # op rows: one per choice block x 3 ops; connection rows: the space's, both summing to 1
    conn = al[al.cell.isin(store.CONNECTION_CELLS)]
    ops = al[al.cell == "shared"]
    assert len(ops) == 5 * space.steps * 3 and len(conn) == 5 * len(space.connection_rows())
    assert set(ops.edge) == set(space.edges) and set(ops.op) == set(SPACE_OPS)
    labels = set(conn[["cell", "edge", "op"]].itertuples(index=False, name=None))
    assert labels == set(space.connection_rows())
    sums = al.groupby(["epoch", "cell", "edge"]).weight.sum()
    assert np.allclose(sums, 1.0, atol=1e-5)
    trial = store.read_trial(f"{spec.store}/killed", rid)
    assert trial.alpha.shape == (5, space.steps, 3)
    assert trial.connection_weights.shape == (5, len(space.connection_rows()))
    assert not np.array_equal(trial.connection_alpha[0], trial.connection_alpha[-1])  # moved
    # every epoch's arch: the pruned spec + hash of its op and connection weights, from the store
    for t, text in enumerate(ep.arch):
        body = json.loads(text)
        assert body["hash"] == nb101.spec_hash(body["matrix"], body["ops"])
        assert text == space.genotype_text(trial.weights[t], trial.ops, trial.connection_weights[t])
        assert space.genotype_key(text) == body["hash"]
    assert np.isfinite(ep.hessian_eig.iloc[2]) and ep.hessian_eig.isna().sum() == 3
    # magnitudes and criteria read the op rows
    traj = from_trial(trial)
    mag = criteria.magnitude(traj)
    assert mag.shape == (5, 3) and np.allclose(mag.sum(axis=1), 1.0)
    res = criteria.ss_eq12(traj, op="conv3x3-bn-relu")
    assert res.arch == ep.arch.iloc[res.epoch]
    assert not criteria.dartsplus_sc(traj).fired  # no skip op: never fires


def test_space_keys_and_algorithms_are_checked_before_any_work(write_job, capsys, tmp_path):
    from ray_nas.cli import main
    from ray_nas.config import resolve_search

    for search, msg in [
        ({"space": "nb1shot1_s4"}, "search.space: unknown space 'nb1shot1_s4'; did you mean"),
        ({"space": "nb1shot1_s1", "ops": ["maxpool3x3"]}, "search.ops: nb1shot1_s1 searches all of maxpool3x3, conv3x3-bn-relu, conv1x1-bn-relu; no op subsets"),
        ({"space": "nb1shot1_s2", "algorithm": "gaea"}, "search.algorithm: gaea does not move the input/output connection weights of nb1shot1_s2 (gaea runs on nb201 and darts); valid there: darts_v1, darts_v2, gdas, pc_darts"),
        ({"space": "nb1shot1_s1", "algorithm": "snas"}, "search.algorithm: snas does not move the input/output connection weights of nb1shot1_s1 (snas runs on nb201 and darts)"),
        ({"space": "nb1shot1_s3", "algorithm": "drnas"}, "search.algorithm: drnas does not move"),
    ]:  # fmt: skip
        assert main(["search", str(write_job(search=search))]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "store").exists()  # nothing written
    cfg = resolve_search({"space": "nb1shot1_s1", "lr_scheme": "nb1shot1"})  # B6's defaults
    assert (cfg.batch_size, cfg.epochs, cfg.channels, cfg.layers) == (96, 50, 16, 9)
    w, a = cfg.weights, cfg.alpha
    assert (w.lr, w.lr_min, w.schedule, w.momentum, w.nesterov) == (
        0.025,
        0.001,
        "cosine",
        0.9,
        False,
    )
    assert (w.weight_decay, w.grad_clip) == (3e-4, 5.0)
    assert (a.lr, a.betas, a.weight_decay) == (3e-4, (0.5, 0.999), 1e-3)
    assert resolve_search({"space": "nb1shot1_s2"}).layers == 9  # the space's default


def test_darts_v2_hypergradient_of_the_connection_weights_is_exact():
    """DARTS-V2's finite-difference hypergradient w.r.t. the connection weights against autograd
    through one virtual SGD step w' = w - xi (dL_train/dw + wd w) (float64, as test_algorithms's
    check for alpha), and a tiny darts_v2 search moving them."""
    import torch.nn.functional as F
    from torch.func import functional_call

    from ray_nas.algorithms import algorithm_class
    from ray_nas.config import resolve_search
    from ray_nas.search.loop import search

    xi, space = 0.1, SPACES["nb1shot1_s2"]
    seed_everything(0)
    model = Supernet(space, channels=2, layers=3).double()
    w_params = model.weight_parameters()
    w_opt = torch.optim.SGD(w_params, lr=xi, momentum=0.9, weight_decay=5e-4)
    cfg = resolve_search(
        {"space": space.name, "algorithm": "darts_v2", "darts_v2": {"radius": 1e-5}}
    )
    algo = algorithm_class("darts_v2")(cfg, model, w_params, w_opt)
    with torch.no_grad():
        for p in algo.arch_parameters:
            p.normal_()  # far from uniform
    x, y = torch.randn(16, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (16,))
    train, arch = (x[:8], y[:8]), (x[8:], y[8:])
    model.eval()  # BN on running statistics: the loss is smooth in the weights

    def loss_of(xb, yb, w):
        return F.cross_entropy(model(xb, weights=w), yb)

    fd = algo.hypergradients(loss_of, train, arch, xi)
    names = [n for n, p in model.named_parameters() if any(p is q for q in w_params)]
    conn_names = ["alphas_output", *(f"alphas_inputs.{i}" for i in range(len(model.alphas_inputs)))]
    a = model.alpha.detach().clone()
    conn = {
        n: p.detach().clone().requires_grad_(True)
        for n, p in zip(conn_names, model.connection_parameters())
    }
    lt = F.cross_entropy(
        functional_call(model, conn, (train[0],), {"weights": F.softmax(a, -1)}), train[1]
    )
    g = torch.autograd.grad(lt, w_params, create_graph=True)
    virtual = {n: p - xi * (gp + 5e-4 * p) for n, p, gp in zip(names, w_params, g)} | conn
    lv = F.cross_entropy(
        functional_call(model, virtual, (arch[0],), {"weights": F.softmax(a, -1)}), arch[1]
    )
    exact = torch.autograd.grad(lv, list(conn.values()))
    for got, want in zip(fd[1:], exact):
        assert (got - want).norm() / want.norm() < 1e-4
    # the second-order term matters here (so the check can fail): w' held fixed is far off
    fixed = {n: v.detach() for n, v in virtual.items() if n not in conn} | conn
    lv_fixed = F.cross_entropy(
        functional_call(model, fixed, (arch[0],), {"weights": F.softmax(a, -1)}), arch[1]
    )
    partial = torch.autograd.grad(lv_fixed, list(conn.values()))
    assert max((p - e).norm() / e.norm() for p, e in zip(partial, exact)) > 1e-3

    cfg = resolve_search({**SEARCH, "space": "nb1shot1_s2", "algorithm": "darts_v2", "epochs": 1,
                          "hessian_every": 0, "device": "cpu"})  # fmt: skip
    records = []
    assert search(cfg, records.append, progress=False, log=lambda s: None) == 1
    first, last = records
    assert not np.array_equal(first.alpha, last.alpha)
    assert not np.array_equal(first.connection_alpha, last.connection_alpha)
    assert last.connection_weights.shape == (14,)


def test_synthetic_store_with_connection_rows_reads_back(tmp_path):
    space = SPACES["nb1shot1_s3"]
    rows, c = space.rows(), len(space.connection_rows())
    rng = np.random.default_rng(0)
    alpha, conn = rng.normal(size=(3, space.steps, 3)), rng.normal(size=(3, c))
    weights = np.exp(alpha) / np.exp(alpha).sum(-1, keepdims=True)
    epoch_rows = [
        {"epoch": t, "arch": space.genotype_text(weights[t], SPACE_OPS, conn[t])} for t in range(3)
    ]
    writer = store.TrialWriter(str(tmp_path), "r1", SPACE_OPS, tuple(e for _, e in rows), "{}",
                                    tuple(k for k, _ in rows), space.connection_rows())  # fmt: skip
    with pytest.raises(ValueError, match="connection weights go with connection rows"):
        writer.write_all(epoch_rows, alpha, weights)
    writer.write_all(epoch_rows, alpha, weights, (conn, conn / 2))
    trial = store.read_trial(str(tmp_path), "r1")
    assert np.allclose(trial.alpha, alpha, atol=1e-6) and np.allclose(
        trial.weights, weights, atol=1e-6
    )
    assert np.allclose(trial.connection_alpha, conn, atol=1e-6)
    assert np.allclose(trial.connection_weights, conn / 2, atol=1e-6)
    assert trial.connections == space.connection_rows() and trial.cells == ("shared",) * space.steps
    writer.truncate(1)  # what a resume keeps
    assert writer.trial_data().connection_alpha.shape == (2, c)


# -- GDAS and PC-DARTS: nasbench-1shot1's optimizers/gdas and optimizers/pc_darts -----------------


def _upstream_1shot1_logits(net, x, sample_ops, sample_conn):
    """nasbench-1shot1 `GDASNetwork.forward` (optimizers/gdas/model_search.py): per cell, the op
    weights, the output weights, then each input vector drawn, in that order; the rest of the
    network as `Network.forward` (post-processing, mean over the spatial positions, classifier)."""
    s = net.stem(x)
    for i, cell in enumerate(net.cells):
        if i in (len(net.cells) // 3, 2 * len(net.cells) // 3):
            s = torch.nn.MaxPool2d(kernel_size=2, stride=2, padding=1)(s)
        mixed_op_weights = sample_ops(net.alpha)
        output_weights = sample_conn(net.alphas_output)
        input_weights = [sample_conn(a) for a in net.alphas_inputs]
        w_in = {v: w[0] for v, w in zip(net.space.choice_vertices, input_weights)}
        s = cell(s, mixed_op_weights, output_weights[0], w_in)
    s = net.postprocess(s)
    out = s.view(*s.shape[:2], -1).mean(-1)
    return net.classifier(out.view(out.size(0), -1))


def _setup_1shot1(algorithm: str, **keys):
    import copy

    from ray_nas.algorithms import algorithm_class
    from ray_nas.config import resolve_search

    space = SPACES["nb1shot1_s2"]
    seed_everything(0)
    cfg = resolve_search({"space": space.name, "algorithm": algorithm, "channels": 4, **keys})
    model = Supernet(space, channels=4, layers=3, partial_channels=cfg.partial_channels).double()
    w_params = model.weight_parameters()
    w_opt = torch.optim.SGD(w_params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    algo = algorithm_class(algorithm)(cfg, model, w_params, w_opt)
    with torch.no_grad():
        for p in algo.arch_parameters:
            p.normal_()  # far from uniform
    x, y = torch.randn(16, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (16,))
    return model, algo, copy.deepcopy(model), (x[:8], y[:8]), (x[8:], y[8:])


def _ref_arch_opt(ref):
    arch = [ref.alpha, ref.alphas_output, *ref.alphas_inputs]
    return arch, torch.optim.Adam(arch, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)


def _assert_same_1shot1(model, ref):
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gdas_1shot1_step_equals_upstream():
    """One GDAS step on nasbench-1shot1 (float64) against a transcription of its
    `GDASNetwork.forward`, `ArchitectGDAS.step` and train_search.py's weight step: per-cell hard
    op / soft connection Gumbel samples, the architecture step first, its gradient clipped."""
    import torch.nn.functional as F

    from ray_nas.algorithms import arch_first
    from ray_nas.algorithms.gdas import tau_of_1shot1

    from .test_baselines import _loop_step

    model, algo, ref, train, arch = _setup_1shot1("gdas", gdas={"tau_min": 1.0})
    assert arch_first("gdas", "nb1shot1_s2") and not arch_first("gdas", "nb201")
    algo.begin_epoch(3, 5)
    tau = 10.0 + 2 * (1.0 - 10.0) / 5  # upstream: tau_epoch += (tau_min - tau_max) / epochs
    assert algo.tau == pytest.approx(tau) and tau_of_1shot1(algo.cfg.gdas, 1, 5) == 10.0
    torch.manual_seed(11)
    _loop_step(model, algo, train, arch)

    def hard(a):
        return F.gumbel_softmax(a, tau=tau, hard=True, dim=-1)

    def soft(a):
        return F.gumbel_softmax(a, tau=tau, hard=False, dim=-1)

    torch.manual_seed(11)
    arch_params, a_opt = _ref_arch_opt(ref)
    a_opt.zero_grad()
    F.cross_entropy(_upstream_1shot1_logits(ref, arch[0], hard, soft), arch[1]).backward()
    torch.nn.utils.clip_grad_norm_(arch_params, 5.0)
    a_opt.step()
    w = ref.weight_parameters()
    w_opt = torch.optim.SGD(w, lr=0.025, momentum=0.9, weight_decay=3e-4)
    w_opt.zero_grad()
    F.cross_entropy(_upstream_1shot1_logits(ref, train[0], hard, soft), train[1]).backward()
    torch.nn.utils.clip_grad_norm_(w, 5.0)
    w_opt.step()
    _assert_same_1shot1(model, ref)
    w_ops, w_out, w_in = algo.mixing_weights()()  # one cell's draw: one-hot ops, soft inputs
    assert ((w_ops == 0) | (w_ops == 1)).all() and (w_ops.sum(-1) == 1).all()
    assert ((w_out > 0) & (w_out < 1)).all() and torch.isclose(w_out.sum(), torch.ones(()).double())


def test_pc_darts_1shot1_mixed_op_and_step_equal_upstream():
    """nasbench-1shot1's `MixedOpPCDARTS.forward` (k = 4: the ops on the first quarter of the
    channels, concatenated with the rest, channel_shuffle in 4 groups) against ours, then one
    pc_darts step (DARTS's first-order Architect first, then the weights) at float64."""
    import torch.nn.functional as F

    from .test_baselines import _loop_step

    model, algo, ref, train, arch = _setup_1shot1("pc_darts", partial_channels=4)
    block = model.cells[0].blocks[0]
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    w = torch.softmax(torch.randn(3, dtype=torch.float64), -1)
    dim_2 = x.shape[1]
    temp1 = sum(wk * op(x[:, : dim_2 // 4]) for wk, op in zip(w, block.ops))
    ans = torch.cat([temp1, x[:, dim_2 // 4 :]], dim=1)
    b, c, h, wd = ans.shape  # upstream channel_shuffle(ans, 4)
    ans = ans.view(b, 4, c // 4, h, wd).transpose(1, 2).contiguous().view(b, -1, h, wd)
    torch.testing.assert_close(block(x, w), ans, rtol=0, atol=0)
    assert block.ops[1][0].in_channels == 1  # C // 4

    _loop_step(model, algo, train, arch)
    arch_params, a_opt = _ref_arch_opt(ref)
    a_opt.zero_grad()
    F.cross_entropy(ref(arch[0]), arch[1]).backward()  # softmax of every architecture vector
    a_opt.step()
    w = ref.weight_parameters()
    w_opt = torch.optim.SGD(w, lr=0.025, momentum=0.9, weight_decay=3e-4)
    w_opt.zero_grad()
    F.cross_entropy(ref(train[0]), train[1]).backward()
    torch.nn.utils.clip_grad_norm_(w, 5.0)
    w_opt.step()
    _assert_same_1shot1(model, ref)
