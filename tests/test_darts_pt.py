"""DARTS-PT (`darts_pt`): perturbation-based selection from a trial's final supernet, as a stage
of `ray-nas evaluate` whose rows sit beside the criteria's (ray_nas.search.pt, ray_nas.offline.pt).
Tiny supernets (C=4 N=1 on NB201; C=2, 3 layers, 2 ops on DARTS), fake/digits data, 1 tuning epoch
of 1-2 steps."""

from __future__ import annotations

import json
import os
import re

import pandas as pd
import pytest

from ray_nas import store
from ray_nas.spaces import darts

NB201 = {"epochs": 2, "steps_per_epoch": 1}
DARTS = {"space": "darts", "lr_scheme": "ss_darts", "dataset": "digits", "channels": 2,
         "layers": 3, "ops": ["skip_connect", "sep_conv_3x3"], "epochs": 2, "batch_size": 4,
         "steps_per_epoch": 1}  # fmt: skip
PT = {"name": "darts_pt", "tune_epochs": 1}


def _decisions(store_dir: str, job: str) -> pd.DataFrame:
    return store.read_frame(f"{store_dir}/{job}/pt.parquet")


@pytest.mark.slow
def test_nb201_pt_through_the_cli_decides_every_edge_is_cached_and_summarised(
    write_job, capsys, tmp_path, monkeypatch
):
    from ray_nas.cli import main

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "raytmp"))  # no cluster: in this process
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    from ray_nas.spaces.nb201 import parse_arch

    job = write_job(
        search=NB201,
        criteria=["final", PT],
        keep_checkpoints=True,
        evaluate={"benchmark": "nb201", "metric": "cifar10_test", "retrain": None},
    )
    assert main(["search", str(job), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(job)]) == 0
    out = capsys.readouterr().out
    assert "darts_pt: 1 projections, 0 cached, 1 to run" in out
    # the summary has the PT row beside final, scored by the NB201 table
    assert re.search(r"^darts_pt +\d+\.\d\d±0\.00 @2\.0 0/1$", out, re.M), out
    assert "darts_pt = darts_pt[tune_epochs=1]" in out
    sel = store.read_frame(f"{tmp_path}/store/tiny/selections.parquet")
    pt_row = sel[sel.label == "darts_pt[tune_epochs=1]"].iloc[0]
    cache = _decisions(f"{tmp_path}/store", "tiny")
    assert pt_row.arch == cache.arch.iloc[0] and pt_row.stop_epoch == 2 and not pt_row.fired
    assert 0 <= pt_row.cifar10_test <= 100  # the projected genotype looked up in the table
    ops = parse_arch(pt_row.arch)
    decisions = json.loads(cache.decisions.iloc[0])
    # every one of the 6 edges decided once, the genotype is what was decided
    assert len(decisions) == 6 and len({d[1] for d in decisions}) == 6
    edge_order = [f"{i}<-{j}" for i in range(1, 4) for j in range(i)]
    assert [dict((d[1], d[2]) for d in decisions)[e] for e in edge_order] == list(ops)
    assert cache.tune_epochs_run.iloc[0] == 5  # upstream's schedule: 0,1,2,3,4 then decide
    # a rerun projects nothing again; selections keep the row
    mtime = os.path.getmtime(f"{tmp_path}/store/tiny/pt.parquet")
    assert main(["evaluate", str(job)]) == 0
    out = capsys.readouterr().out
    assert "darts_pt: 1 projections, 1 cached, 0 to run" in out and "darts_pt[tune_epochs=1]" in out
    assert os.path.getmtime(f"{tmp_path}/store/tiny/pt.parquet") == mtime
    # the report and compare read the same rows
    from ray_nas.config import load_spec
    from ray_nas.offline.results import JobResults

    res = JobResults.read(load_spec(job))
    assert "darts_pt[tune_epochs=1]" in set(res.selections.label)
    # without its checkpoint a new projection is refused before any work, naming the key
    ckpt = next((tmp_path / "store" / "tiny" / "checkpoints").iterdir())
    ckpt.unlink()
    before = store.read_frame(f"{tmp_path}/store/tiny/selections.parquet")
    assert main(["evaluate", str(job), "--set", "criteria=[final,{name: darts_pt}]"]) == 2
    err = capsys.readouterr().err
    assert "keep_checkpoints: true" in err and "is gone" in err and "--redo" in err
    pd.testing.assert_frame_equal(
        store.read_frame(f"{tmp_path}/store/tiny/selections.parquet"), before
    )


@pytest.mark.slow
@pytest.mark.ray
def test_darts_space_pt_projects_ops_then_topology_as_a_ray_task(ray_session, write_job):
    """The sweep's path on a cluster: each trial's projection is one Ray task (sweep.ray_map, the
    job's `resources`); ops decided on all 28 rows, then each node keeps 2 input edges."""

    from ray_nas.cli import main
    from ray_nas.config import load_spec
    from ray_nas.offline.evaluate import run_evaluate
    from ray_nas.search.sweep import ray_map

    job = write_job(search=DARTS, criteria=["final", PT], keep_checkpoints=True,
                    evaluate={"benchmark": None, "retrain": None})  # fmt: skip
    assert main(["search", str(job), "--quiet"]) == 0
    spec = load_spec(job)
    calls: list = []

    def traced_map(fn, args, **resources):
        """The real ray_map; each task also reports the pid of the process that ran it."""
        calls.append((fn.__name__, len(args), resources))

        def with_pid(*a):
            return os.getpid(), fn(*a)

        with_pid.__name__ = fn.__name__
        out = ray_map(with_pid, args, **resources)
        pids.update(p for p, _ in out)
        return [r for _, r in out]

    pids: set[int] = set()
    sel = run_evaluate(spec, retrain_map=traced_map, log=lambda _l: None).selections
    assert calls == [("pt_task", 1, {"cpu": 1.0, "gpu": 0.0, "name": "darts_pt",
                                     "key": "resources"})]  # fmt: skip
    assert pids and os.getpid() not in pids  # ran in a Ray worker
    row = sel[sel.label == "darts_pt[tune_epochs=1]"].iloc[0]
    g = darts.parse_genotype(row.arch)  # a valid DARTS genotype
    cache = store.read_frame(f"{spec.job_dir}/pt.parquet")
    decisions = json.loads(cache.decisions.iloc[0])
    ops = [d for d in decisions if d[2] != "removed"]
    removed = [d for d in decisions if d[2] == "removed"]
    # 14 op decisions per cell, then nodes 3, 4, 5 drop 1, 2, 3 edges per cell: 2 inputs each
    assert len(ops) == 28 and len(removed) == 12
    for cell in ("normal", "reduce"):
        kept = {e for c, e, _ in ops if c == cell} - {e for c, e, _ in removed if c == cell}
        assert len(kept) == 8
        chosen = dict((e, o) for c, e, o in ops if c == cell)
        pairs = g.cell(cell)
        for n in range(4):  # the genotype keeps exactly the kept edges with their decided op
            mine = {(chosen[f"{n + 2}<-{j}"], j) for j in range(n + 2) if f"{n + 2}<-{j}" in kept}
            assert set(pairs[2 * n : 2 * n + 2]) == mine
    assert cache.tune_epochs_run.iloc[0] == 16  # decisions at 0, 1, ..., 16


def test_darts_pt_is_refused_where_it_cannot_run(write_job):
    from ray_nas.config import SpecError, load_spec

    with pytest.raises(SpecError, match=r"criteria\[1\]: darts_pt .* keep_checkpoints: true"):
        load_spec(write_job(criteria=["final", PT], keep_checkpoints=False))
    with pytest.raises(SpecError, match="stop: 'darts_pt' cannot stop a search early"):
        load_spec(write_job(criteria=["final"], stop=PT))
    with pytest.raises(SpecError, match="crit: must be one of acc, loss, got 'top1'"):
        load_spec(write_job(criteria=[{"name": "darts_pt", "crit": "top1"}]))
    nb1 = {"space": "nb1shot1_s1", "dataset": "fake"}
    with pytest.raises(SpecError, match="darts_pt is defined on the nb201 and darts spaces"):
        load_spec(write_job(search=nb1, criteria=["final", "darts_pt"],
                            evaluate={"benchmark": None, "retrain": None}))  # fmt: skip


def test_pt_schedule_is_upstreams():
    from ray_nas.criteria import pt_measurements, pt_schedule

    # NAS-Bench-201 (nasbench201/projection.py): tune_epochs = 5 * (6 - 1), a decision at
    # e % 5 == 0 or e == 24; the epoch after the last decision is not run
    assert pt_schedule("nb201", 5) == (6, [0, 5, 10, 15, 20, 24], 24)
    # DARTS (sota/cnn/projection.py): 5 * (14 + 3 - 1) + 1 epochs, a decision at e % 5 == 0
    assert pt_schedule("darts", 5) == (17, list(range(0, 81, 5)), 80)
    assert pt_schedule("nb201", 0) == (6, [0], 0) and pt_schedule("darts", 0)[2] == 0
    assert pt_measurements("nb201", 5) == 30
    assert pt_measurements("darts", 7) == 2 * (14 * 7 + 3 + 7 + 12)  # ops, then 3+4, 5+4+3 drops


class _Memory:
    """A checkpoint store in memory (the loop's CheckpointStore)."""

    state = None

    def load(self):
        return self.state

    def save(self, state):
        self.state = state


@pytest.mark.slow
def test_darts_decisions_equal_a_transcription_of_upstreams_projection(crit="acc"):
    """Without tuning and in row order, the decisions are those of a transcription of
    ruocwang/darts-pt sota/cnn/projection.py (project_op, then project_edge with its deferred
    removal) on the same supernet and search-valid batches, train-mode measurements (float32 as
    ours: the decisions are discrete, a near tie must not flip with the precision)."""
    import torch
    import torch.nn.functional as F

    from ray_nas.config import resolve_search
    from ray_nas.search.loop import search
    from ray_nas.search.pt import project
    from ray_nas.spaces import get_space
    from ray_nas.training.data import Batcher, load_dataset

    cfg = resolve_search({**DARTS, "epochs": 1, "hessian_every": 0, "device": "cpu"})
    ckpt = _Memory()
    search(cfg, lambda _r: False, checkpoint=ckpt, progress=False, log=lambda _l: None)
    ours = json.loads(project(cfg, ckpt.state, tune_epochs=0, edge_decision="fixed", crit=crit,
                              valid_batches=1, log=lambda _l: None).decisions)  # fmt: skip

    # the transcription
    data = load_dataset(cfg.dataset, cfg.data_root, cfg.split_file, False, cfg.data_split_seed)
    model = get_space("darts").build_supernet(cfg, data.num_classes)
    model.load_state_dict(ckpt.state["model"])
    valid = Batcher(data.search_valid, data.name, "cpu")
    batches = [valid.get(torch.arange(0, cfg.batch_size))]
    n_edges, n_ops = 14, len(cfg.ops)
    flags = {c: [True] * n_edges for c in ("normal", "reduce")}
    flags_edge = {c: [True] * 3 for c in ("normal", "reduce")}
    proj_w = {c: torch.zeros(n_edges, n_ops) for c in ("normal", "reduce")}
    nid2eids = {0: [2, 3, 4], 1: [5, 6, 7, 8], 2: [9, 10, 11, 12, 13]}
    selected = {c: {0: [], 1: [], 2: []} for c in ("normal", "reduce")}

    def get_projected_weights(cell):
        a = model.alpha.detach()
        w = F.softmax(a[:14] if cell == "normal" else a[14:], dim=-1).clone()
        for eid in range(n_edges):
            if not flags[cell][eid]:
                w[eid] = proj_w[cell][eid]
        for nid in nid2eids:
            if not flags_edge[cell][nid]:
                for eid in nid2eids[nid]:
                    if eid not in selected[cell][nid]:
                        w[eid] = proj_w[cell][eid]
        return w

    def infer(cell, w_cell):
        other = "reduce" if cell == "normal" else "normal"
        both = {cell: w_cell, other: get_projected_weights(other)}
        weights = torch.cat([both["normal"], both["reduce"]])
        model.train()
        correct, loss, count = 0, 0.0, 0
        with torch.no_grad():
            for x, y in batches:
                logits = model(x, weights=weights)
                loss += F.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(1) == y).sum().item()
                count += len(y)
        return 100.0 * correct / count, loss / count

    idx = 0 if crit == "acc" else 1
    compare = (lambda x, y: x < y) if crit == "acc" else (lambda x, y: x > y)
    theirs = []
    edges = get_space("darts").edges
    for _ in range(n_edges):  # project_op, normal then reduce, the first remaining edge
        for cell in ("normal", "reduce"):
            eid = flags[cell].index(True)
            best, extrema = 0, None
            for opid in range(n_ops):
                w = get_projected_weights(cell)
                w[eid, opid] = 0
                c = infer(cell, w)[idx]
                if extrema is None or compare(c, extrema):
                    extrema, best = c, opid
            proj_w[cell][eid, best] = 1
            flags[cell][eid] = False
            theirs.append([cell, edges[eid], cfg.ops[best]])
    for _ in range(3):  # project_edge
        for cell in ("normal", "reduce"):
            nid = flags_edge[cell].index(True)
            eids = list(nid2eids[nid])
            while len(eids) > 2:
                todel, extrema = None, None
                for eid in eids:
                    w = get_projected_weights(cell)
                    w[eid] = 0
                    c = infer(cell, w)[idx]
                    if extrema is None or not compare(c, extrema):
                        extrema, todel = c, eid
                eids.remove(todel)
                theirs.append([cell, edges[todel], "removed"])
            for eid in nid2eids[nid]:
                if eid not in eids:
                    proj_w[cell][eid] = 0
            selected[cell][nid] = eids
            flags_edge[cell][nid] = False
    assert ours == theirs


@pytest.mark.slow
def test_darts_pt_projects_an_sgas_search_from_its_decisions():
    """SGAS+PT: darts_pt on an sgas trial's checkpoint restores SGAS's decisions with its
    optimiser state, measures with its mixing weights (decided rows one-hot, pruned rows on
    `none`), tunes with its steps (decided rows frozen, no new decisions) and decides every row."""
    import torch

    from ray_nas.algorithms import algorithm_class
    from ray_nas.config import resolve_search
    from ray_nas.search.loop import search
    from ray_nas.search.pt import project
    from ray_nas.spaces import get_space

    keys = {**DARTS, "algorithm": "sgas", "ops": ["none", "skip_connect", "sep_conv_3x3"],
            "sgas": {"warmup_dec_epoch": 0, "decision_freq": 1}, "hessian_every": 0,
            "device": "cpu"}  # fmt: skip
    cfg = resolve_search(keys)
    ckpt = _Memory()
    search(cfg, lambda _r: False, checkpoint=ckpt, progress=False, log=lambda _l: None)
    model = get_space("darts").build_supernet(cfg, 10)
    sgas = algorithm_class("sgas")(cfg, model, model.weight_parameters(), None)
    sgas.load_state_dict(ckpt.state["a_opt"])
    decided = sgas.selected >= 0
    assert decided.sum() >= 4 and len(sgas.decisions) == decided.sum()  # 2 epochs, 2 cell types
    model.load_state_dict(ckpt.state["model"])
    w = sgas.distribution()
    assert torch.equal(w[decided].max(-1).values, torch.ones(int(decided.sum())))
    r = project(cfg, ckpt.state, tune_epochs=1, edge_decision="fixed", valid_batches=1,
                log=lambda _l: None)  # fmt: skip
    decisions = json.loads(r.decisions)
    assert len([d for d in decisions if d[2] != "removed"]) == 28
    assert len([d for d in decisions if d[2] == "removed"]) == 12
    darts.parse_genotype(r.arch)  # a valid DARTS genotype
    assert r.tune_epochs_run == 16
