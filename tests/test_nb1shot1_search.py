"""The NAS-Bench-1Shot1 supernet and searches on its three spaces: parameter shapes and edge
counts, the connection weights moving with alpha, and a tiny search per space that writes the
store contract (op rows, connection rows, the cell text and hash every epoch) and resumes
bit-identically after SIGKILL."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ray_nas import criteria, trajectory
from ray_nas.evaluate import to_trajectory
from ray_nas.search import seed_everything
from ray_nas.spaces import get_space, nb101
from ray_nas.spaces.nb1shot1 import SPACE_OPS, SPACES
from ray_nas.spaces.nb1shot1_supernet import Supernet

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


@pytest.mark.parametrize("name", NAMES)
def test_search_writes_the_contract_and_resumes_after_sigkill(name, write_job):
    space = get_space(name)
    spec, rid, ep, al = killed_search_matches_uninterrupted(write_job, {**SEARCH, "space": name}, 4)
    assert spec.search["layers"] == 3 and spec.search["lr_scheme"] == "nb1shot1"

    # op rows: one per choice block x 3 ops; connection rows: the space's, both summing to 1
    conn = al[al.cell.isin(trajectory.CONNECTION_CELLS)]
    ops = al[al.cell == "shared"]
    assert len(ops) == 5 * space.steps * 3 and len(conn) == 5 * len(space.connection_rows())
    assert set(ops.edge) == set(space.edges) and set(ops.op) == set(SPACE_OPS)
    labels = set(conn[["cell", "edge", "op"]].itertuples(index=False, name=None))
    assert labels == set(space.connection_rows())
    sums = al.groupby(["epoch", "cell", "edge"]).weight.sum()
    assert np.allclose(sums, 1.0, atol=1e-5)
    trial = trajectory.read_trial(f"{spec.store}/killed", rid)
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
    traj = to_trajectory(trial)
    mag = criteria.magnitude(traj)
    assert mag.shape == (5, 3) and np.allclose(mag.sum(axis=1), 1.0)
    res = criteria.ss_eq12(traj, op="conv3x3-bn-relu")
    assert res.arch == ep.arch.iloc[res.epoch]
    assert not criteria.dartsplus_sc(traj).fired  # no skip op: never fires


def test_space_keys_and_algorithms_are_checked_before_any_work(write_job, capsys, tmp_path):
    from ray_nas.cli import main
    from ray_nas.spec import resolve_search

    for search, msg in [
        ({"space": "nb1shot1_s4"}, "search.space: unknown space 'nb1shot1_s4'; did you mean"),
        ({"space": "nb1shot1_s1", "ops": ["maxpool3x3"]}, "search.ops: nb1shot1_s1 searches all of maxpool3x3, conv3x3-bn-relu, conv1x1-bn-relu; no op subsets"),
        ({"space": "nb1shot1_s2", "algorithm": "gaea"}, "search.algorithm: gaea does not move the input/output connection weights of nb1shot1_s2; valid there: darts_v1, darts_v2"),
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


def test_darts_v2_moves_the_connection_weights_with_its_hypergradient():
    from ray_nas.search import search
    from ray_nas.spec import resolve_search

    cfg = resolve_search({**SEARCH, "space": "nb1shot1_s2", "algorithm": "darts_v2", "epochs": 1,
                          "hessian_every": 0, "device": "cpu"})  # fmt: skip
    records = []
    assert search(cfg, records.append, progress=False, log=lambda s: None) == 1
    first, last = records
    assert not np.array_equal(first.alpha, last.alpha)
    assert not np.array_equal(first.connection_alpha, last.connection_alpha)
    assert last.connection_weights.shape == (14,)
