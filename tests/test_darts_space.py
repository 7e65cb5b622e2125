"""The DARTS space: edges and shapes, the genotype rule, the Genotype text, the evaluation
network's size, and a retrain that survives SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from ray_nas.search.loop import seed_everything
from ray_nas.search.trial import FileCheckpoint
from ray_nas.spaces import darts
from ray_nas.spaces.darts import network as dn
from ray_nas.spaces.darts.train import recipe, retrain

from .conftest import REPO, killed_search_matches_uninterrupted

V2 = darts.parse_genotype(darts.PUBLISHED["DARTS_V2"])


def test_edges_and_parameter_shapes():
    assert len(darts.EDGES) == 14 and darts.EDGES[:5] == ("2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
    assert darts.EDGES[-1] == "5<-4"
    for ops in (darts.OPS, darts.PAPER_OPS, ("skip_connect", "sep_conv_3x3")):
        net = dn.SearchNetwork(ops, channels=4, layers=8)
        assert net.alpha.shape == (28, len(ops))
        assert [i for i, c in enumerate(net.cells) if c.reduction] == [2, 5]
        assert all(len(c.edges) == 14 and len(c.edges[0].ops) == len(ops) for c in net.cells)
        assert not any(p is net.alpha for p in net.weight_parameters())
    with pytest.raises(ValueError, match="unknown DARTS op 'conv_7x7'.*valid ops: none"):
        dn.SearchNetwork(["conv_7x7"], channels=4, layers=3)


def test_search_network_mixes_the_given_weights_per_cell_type():
    seed_everything(0)
    net = dn.SearchNetwork(darts.PAPER_OPS, channels=4, layers=3).eval()
    x = torch.randn(2, 3, 16, 16)
    w = torch.softmax(net.alpha.detach(), -1)
    assert torch.equal(net(x), net(x, weights=w))
    other = w.clone()
    other[14:] = torch.eye(7)[torch.arange(14) % 7]  # only the reduction cell's rows change
    assert not torch.allclose(net(x), net(x, weights=other))
    net.train()
    loss = net(x).sum()
    loss.backward()
    assert net.alpha.grad.shape == (28, 7) and net.alpha.grad[:14].abs().sum() > 0
    assert net.alpha.grad[14:].abs().sum() > 0
    assert all(p.grad is not None for p in net.weight_parameters())


def _one_hot_cell(choices: dict[int, dict[str, float]], ops=darts.OPS) -> np.ndarray:
    """[14, K] uniform low weights, with the given {row: {op: weight}} set."""
    w = np.full((14, len(ops)), 0.01)
    for row, d in choices.items():
        for op, v in d.items():
            w[row, ops.index(op)] = v
    return w


def test_genotype_rule_on_hand_made_weights():
    # node 2 (rows 0, 1): row 0's `none` is the largest weight anywhere, it must be ignored
    # node 3 (rows 2..4): edge 3<-2 strongest, then 3<-0; node 4 (rows 5..8) and 5 (9..13) likewise
    w = _one_hot_cell({
        0: {"none": 0.9, "sep_conv_3x3": 0.05}, 1: {"dil_conv_5x5": 0.3},
        2: {"max_pool_3x3": 0.2}, 3: {"skip_connect": 0.1}, 4: {"sep_conv_5x5": 0.6},
        5: {"avg_pool_3x3": 0.5}, 8: {"dil_conv_3x3": 0.7},
        9: {"skip_connect": 0.4}, 13: {"sep_conv_3x3": 0.45, "sep_conv_5x5": 0.45},
    })  # fmt: skip
    cell = darts.derive_cell(w, darts.OPS)
    assert cell == (
        ("dil_conv_5x5", 1), ("sep_conv_3x3", 0),  # none ignored; strongest first
        ("sep_conv_5x5", 2), ("max_pool_3x3", 0),
        ("dil_conv_3x3", 3), ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 4), ("skip_connect", 0),  # op tie: the earlier column
    )  # fmt: skip
    # ties between edges: the lower input wins; an all-uniform cell picks inputs 0 and 1 of each
    # node and the first non-none op
    flat = darts.derive_cell(np.full((14, 8), 0.125), darts.OPS)
    assert flat == tuple(("max_pool_3x3", j) for _ in range(4) for j in (0, 1))
    # without `none` (the paper's 7 ops) the rule runs over all columns
    g = darts.derive_genotype(np.vstack([w[:, 1:], np.full((14, 7), 1 / 7)]), darts.PAPER_OPS)
    assert g.normal[2:] == cell[2:] and g.reduce[0] == ("max_pool_3x3", 0)
    with pytest.raises(darts.GenotypeError, match=r"expected \(28, 8\)"):
        darts.derive_genotype(w, darts.OPS)


def test_genotype_text_round_trip_and_key():
    for name, text in darts.PUBLISHED.items():
        g = darts.parse_genotype(text)
        assert darts.parse_genotype(g.text()) == g, name
        assert (
            g.text().startswith("Genotype(normal=[(") and "reduce_concat=[2, 3, 4, 5])" in g.text()
        )
    assert darts.parse_genotype(darts.PUBLISHED["DARTS_V2"]).text() == darts.PUBLISHED["DARTS_V2"]
    swapped = darts.Genotype(tuple(V2.normal[1::-1]) + V2.normal[2:], V2.reduce)
    assert swapped != V2 and swapped.key() == V2.key()
    assert V2.key() != darts.parse_genotype(darts.PUBLISHED["DARTS_V1"]).key()
    bad = {
        "Genotype(normal=[('conv_9x9', 0)] * 8, reduce=[])": "not a literal",
        darts.PUBLISHED["DARTS_V2"].replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"): "node 5 cannot take input 5",
        darts.PUBLISHED["DARTS_V2"].replace("'skip_connect'", "'skip'", 1): "unknown op 'skip'",
        "Genotype(normal=[])": "keywords normal= and reduce=",
        "__import__('os')": "not a Genotype",
    }  # fmt: skip
    for text, msg in bad.items():
        with pytest.raises(darts.GenotypeError, match=msg):
            darts.parse_genotype(text)


def test_darts_v2_evaluation_network_has_3_3m_parameters():
    net = dn.NetworkCIFAR(V2, channels=36, layers=20, num_classes=10, auxiliary=True)
    assert abs(dn.count_params_m(net) - 3.3) <= 0.05
    aux = sum(p.numel() for n, p in net.named_parameters() if n.startswith("auxiliary")) / 1e6
    assert aux > 0.4  # the head exists (0.48 M) and is left out of the count
    # the paper's Table 4 architectures: 2.6-3.5 M as published
    for name in (
        "SS-DARTS-DilConv5",
        "SS-DARTS-SepConv5",
        "SS-DARTS-DilConv3",
        "SS-DARTS-SepConv3",
    ):
        m = dn.count_params_m(dn.NetworkCIFAR(darts.parse_genotype(darts.PUBLISHED[name])))
        assert 2.6 <= m <= 3.6, (name, m)


TINY = dict(layers=3, channels=4, epochs=3, batch_size=16, steps_per_epoch=2)

_KILLED_RUN = """
import os, signal, torch
torch.set_num_threads(1)
from ray_nas.spaces.darts.train import recipe, retrain
from ray_nas.search.trial import FileCheckpoint
def die(epoch):
    if epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)
retrain({text!r}, recipe("proxy", **{tiny!r}), "fake", seed=1,
        checkpoint=FileCheckpoint({path!r}), on_epoch=die)
"""


def test_retrain_killed_mid_run_resumes_to_the_same_result(tmp_path):
    text = darts.PUBLISHED["DARTS_V2"]
    rec = recipe("proxy", **TINY)
    whole = retrain(text, rec, "fake", seed=1, log=lambda s: None)
    path = str(tmp_path / "ckpt.pt")
    code = _KILLED_RUN.format(text=text, tiny=TINY, path=path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert FileCheckpoint(path).load()["epoch"] == 2
    lines: list[str] = []
    resumed = retrain(text, rec, "fake", seed=1, checkpoint=FileCheckpoint(path), log=lines.append)
    assert "resuming from the checkpoint of epoch 2" in lines[0] and len(lines) == 2
    assert resumed.digest == whole.digest
    assert resumed.train_loss == whole.train_loss and resumed.test_acc == whole.test_acc
    assert len(whole.train_loss) == 3 and np.isfinite(whole.train_loss).all()


def test_recipes_are_the_published_protocols():
    d, r = recipe("darts"), recipe("drnas")
    assert (d.layers, d.channels, d.epochs, d.batch_size, d.cutout, d.drop_path) == (
        20,
        36,
        600,
        96,
        16,
        0.2,
    )
    assert (d.lr, d.weight_decay, d.grad_clip, d.auxiliary_weight) == (0.025, 3e-4, 5.0, 0.4)
    assert (r.batch_size, r.drop_path, r.epochs) == (64, 0.3, 600)
    assert d.key() != r.key() and recipe("darts").key() == d.key()
    with pytest.raises(
        ValueError, match="unknown retrain recipe 'fast'; valid: darts, drnas, proxy"
    ):
        recipe("fast")
    with pytest.raises(ValueError, match="unknown key 'epoch'"):
        recipe("proxy", epoch=3)


def test_criteria_read_the_cell_type_they_are_given():
    from ray_nas import criteria as C

    ops = darts.PAPER_OPS
    T = 5
    alpha = np.zeros((T + 1, 28, len(ops)))
    s5, skip = ops.index("sep_conv_5x5"), ops.index("skip_connect")
    normal_peak = [0, 1, 3, 2, 1, 0]  # sep_conv_5x5 logit on the normal rows: peak at epoch 2
    reduce_peak = [0, 0, 1, 2, 4, 3]  # on the reduction rows: peak at epoch 4
    for t in range(T + 1):
        alpha[t, :14, s5], alpha[t, 14:, s5] = normal_peak[t], reduce_peak[t]
    alpha[1:, 14:, skip] = 9.0  # the reduction cell is all skips from epoch 1 on
    alpha[3:, [0, 1], skip] = 9.0  # the normal cell gets 2 skips (node 2) at epoch 3
    traj = C.Trajectory.from_alpha(alpha, ops, space="darts")
    assert traj.cells == ("normal",) * 14 + ("reduce",) * 14
    assert darts.parse_genotype(traj.archs[3]).normal[:2] == (
        ("skip_connect", 0),
        ("skip_connect", 1),
    )
    m = C.magnitude(traj)
    assert m.shape == (T + 1, 7) and np.allclose(m.sum(axis=1), 1.0)
    assert np.allclose(m, traj.weights[:, :14].mean(axis=1))  # default: the normal cell
    ss = C.parse_criterion({"name": "ss_eq12", "op": "sep_conv_5x5", "gate": False})
    assert ss.apply(traj).epoch == 2
    on_reduce = C.parse_criterion(
        {"name": "ss_eq12", "op": "sep_conv_5x5", "gate": False, "cell": "reduce"}
    )
    assert on_reduce.label == "ss_eq12[cell=reduce,gate=false,op=sep_conv_5x5]"
    assert on_reduce.apply(traj).epoch == 4 and '"cell": "reduce"' in on_reduce.params_json
    sc = C.parse_criterion({"name": "dartsplus_sc", "k": 2}).apply(traj)
    assert sc.fired and sc.epoch == 3  # the reduction cell's skips do not count
    with pytest.raises(
        ValueError, match="cell: unknown cell type 'normall'; did you mean 'normal'"
    ):
        C.parse_criterion({"name": "ss_eq13", "cell": "normall"})
    # a NAS-Bench-201 trajectory has one cell type; naming another says so, not fired
    nb = C.Trajectory.from_alpha(np.zeros((3, 6, 5)))
    assert nb.cells == ("shared",) * 6
    res = C.parse_criterion({"name": "ss_eq12", "cell": "normal"}).apply(nb)
    assert not res.fired and "cell 'normal' is not in this search" in res.note


DARTS_SEARCH = {"space": "darts", "lr_scheme": "ss_darts", "dataset": "digits", "channels": 2,
                "layers": 3, "ops": ["skip_connect", "sep_conv_3x3"],
                "epochs": 4, "batch_size": 4, "steps_per_epoch": 1}  # fmt: skip
DARTS_RETRAIN = {"recipe": "proxy", "seeds": [0, 1],
                 "overrides": {"layers": 3, "channels": 2, "epochs": 1, "batch_size": 4, "steps_per_epoch": 1,
                               "auxiliary_weight": 0.0}}  # fmt: skip


def test_darts_search_writes_both_cells_resumes_after_sigkill_and_exports(write_job, tmp_path):
    from ray_nas.config import load_spec, search_config
    from ray_nas.offline.evaluate import export_genotypes, run_evaluate

    criteria = [
        "final",
        {"name": "ss_eq12", "op": "sep_conv_3x3"},
        {"name": "dartsplus_sc", "k": 2},
    ]
    spec, rid, ep, al = killed_search_matches_uninterrupted(
        write_job, DARTS_SEARCH, 4, evaluate={"benchmark": None, "retrain": DARTS_RETRAIN}
    )  # the default recipe's auxiliary head would need 32x32 images: digits are 16x16
    assert search_config(spec).ops == ("skip_connect", "sep_conv_3x3")
    ref = write_job(name="ref", search=DARTS_SEARCH, criteria=criteria,
                    evaluate={"benchmark": None, "retrain": DARTS_RETRAIN})  # fmt: skip
    # both cell types, 14 edges each, per epoch; every recorded arch is a DARTS genotype
    assert al.groupby(["epoch", "cell"]).size().unstack().eq(14 * 2).all().all()
    assert set(al.cell) == {"normal", "reduce"} and set(al.edge) == set(darts.EDGES)
    assert all(darts.parse_genotype(a).text() == a for a in ep.arch)
    # evaluate: criteria per cell type, retraining per (genotype, recipe, seed), cached; export
    ref_spec = load_spec(ref)
    lines: list[str] = []
    sel = run_evaluate(ref_spec, log=lines.append).selections
    assert set(sel.label) == {"final", "ss_eq12[op=sep_conv_3x3]", "dartsplus_sc[k=2]"}
    assert sel.retrain_acc.between(0, 100).all() and (sel.params_m > 0).all()
    assert sel.retrain_acc_std.notna().all()  # two seeds
    n = sel.arch.nunique()
    assert any(f"{n} distinct genotypes x 2 seeds, 0 cached, {2 * n} to train" in x for x in lines)
    lines.clear()
    again = run_evaluate(ref_spec, log=lines.append).selections
    assert any(f"{2 * n} cached, 0 to train" in x for x in lines)
    assert again.retrain_acc.tolist() == sel.retrain_acc.tolist()
    path, count = export_genotypes(ref_spec, str(tmp_path / "genotypes.py"))
    assert count == 3
    ns: dict = {}
    exec(compile(open(path).read(), path, "exec"), ns)  # the file is valid Python, as DARTS's
    exported = {k: v for k, v in ns.items() if k.endswith(rid)}
    assert len(exported) == 3 and {repr(g) for g in exported.values()} == set(sel.arch)
    from ray_nas.report import build_report

    page = build_report(ref_spec)
    assert "Table 4 layout" in page and f"{100 - sel.retrain_acc.iloc[0]:.2f} ± " in page
    final_name = f"final_{rid}"
    assert ns[final_name].normal == [
        tuple(p) for p in darts.parse_genotype(ep.arch.iloc[-1]).normal
    ]


def test_space_keys_are_checked_before_any_work(write_job, capsys, tmp_path):
    from ray_nas.cli import main

    for search, msg in [
        ({"space": "darts201"}, "search.space: unknown space 'darts201'; did you mean 'darts'?"),
        ({"space": "darts", "ops": ["nor_conv_3x3"]}, "search.ops: unknown DARTS op 'nor_conv_3x3'; valid ops: none, max_pool_3x3"),
        ({"space": "darts", "layers": 2}, "search.layers: the darts space needs >= 3"),
    ]:  # fmt: skip
        assert main(["search", str(write_job(search=search))]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.strip().count("\n") == 0, err
    job = write_job(search=DARTS_SEARCH,
                    evaluate={"retrain": {"recipe": "proxy", "overrides": {"epoch": 3}}})  # fmt: skip
    assert main(["sweep", str(job), "--dry-run"]) == 2
    assert "evaluate.retrain: retrain recipe: unknown key 'epoch'" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()  # nothing written


@pytest.mark.parametrize("algorithm", ["darts_v2", "gaea", "drnas"])  # darts_v1: the SIGKILL test
def test_every_algorithm_searches_the_darts_space(algorithm):
    from ray_nas.config import resolve_search
    from ray_nas.search.loop import search

    cfg = resolve_search({**DARTS_SEARCH, "algorithm": algorithm, "epochs": 2, "hessian_every": 2,
                          "device": "cpu"})  # fmt: skip
    records = []
    assert search(cfg, records.append, progress=False, log=lambda s: None) == 2
    assert [r.epoch for r in records] == [0, 1, 2]
    last = records[-1]
    assert last.weights.shape == (28, 2) and np.allclose(last.weights.sum(axis=1), 1, atol=1e-5)
    assert not np.array_equal(records[0].alpha, last.alpha)  # the architecture moved
    assert np.isfinite(last.hessian_eig)  # [56 x 56] Hessian w.r.t. both cells' parameters
    g = darts.parse_genotype(last.arch)
    assert g == darts.derive_genotype(
        last.weights, cfg.ops
    )  # the rule on the recorded distribution


@pytest.mark.ray
def test_darts_retraining_runs_as_ray_tasks_and_is_cached(ray_session, write_job):
    """`ray-nas sweep`'s path: the search as a Ray task, then each (genotype, seed) retraining
    as a Ray task through sweep.ray_map; the results land in retrain_genotypes.parquet and a
    second evaluate trains nothing."""
    from ray_nas import store
    from ray_nas.cli.commands import sweep_command
    from ray_nas.config import load_spec
    from ray_nas.offline.evaluate import run_evaluate
    from ray_nas.search.sweep import ray_map

    job = write_job(search={**DARTS_SEARCH, "epochs": 1}, criteria=["final"],
                    evaluate={"benchmark": None, "retrain": DARTS_RETRAIN})  # fmt: skip
    assert sweep_command(str(job), [], evaluate=False) == 0
    spec = load_spec(job)
    calls: list[tuple[str, int]] = []

    def traced_map(fn, args, **resources):
        """The real ray_map; each task also reports the pid of the process that ran it."""
        calls.append((fn.__name__, len(args)))

        def with_pid(*a):
            return os.getpid(), fn(*a)

        with_pid.__name__ = fn.__name__
        out = ray_map(with_pid, args, **resources)
        pids.update(p for p, _ in out)
        return [r for _, r in out]

    pids: set[int] = set()
    lines: list[str] = []
    sel = run_evaluate(spec, retrain_map=traced_map, log=lines.append).selections
    assert calls == [("retrain_task", 2)]  # one genotype x seeds 0, 1
    assert pids and os.getpid() not in pids  # ran in Ray workers, not in this process
    cache = store.read_frame(f"{spec.job_dir}/retrain_genotypes.parquet")
    assert sorted(cache.seed) == [0, 1] and set(cache.genotype) == set(sel.arch)
    assert cache.test_acc.between(0, 100).all() and (cache.params_m > 0).all()
    assert len(os.listdir(f"{spec.job_dir}/retrain")) == 2  # a checkpoint per run, on the store
    assert sel.retrain_acc.iloc[0] == pytest.approx(cache.test_acc.mean())
    lines.clear()
    again = run_evaluate(spec, retrain_map=traced_map, log=lines.append).selections
    assert len(calls) == 1 and any("2 cached, 0 to train" in x for x in lines), lines
    assert again.retrain_acc.tolist() == sel.retrain_acc.tolist()
