"""DARTS-PT: perturbation-based architecture selection on a trained supernet (Wang et al.,
"Rethinking Architecture Selection in Differentiable NAS", ICLR 2021).

Upstream: ruocwang/darts-pt @ 4ec3149dea0d77efd8e4c118f578b454dad5e0ac,
`nasbench201/projection.py` (NAS-Bench-201), `sota/cnn/projection.py` with
`sota/cnn/model_search_darts_proj.py` (the DARTS space), run by `exp_scripts/darts-proj-201.sh`,
`darts-proj-sota.sh`, `sdarts-rs-proj-sota.sh` (`--edge_decision random --proj_crit acc
--proj_intv 5`).

The procedure, from the trial's last checkpoint (its final supernet, alpha and the architecture
optimiser's state):
1. a fresh SGD for the weights at search.weights.lr / 10 (upstream `reset_optimizer(lr / 10)`),
   the search's momentum and weight decay, constant (upstream builds a cosine scheduler on the
   DARTS space but never steps it; none on NAS-Bench-201);
2. op decisions: an undecided edge of each cell type (random, or the first in row order); for
   each op k, the supernet mixing with the projected weights (decided edges one-hot, the others
   the algorithm's distribution, softmax(alpha) for DARTS) with op k of that edge set to 0 is
   measured on search-valid in train mode (upstream `infer(_eval=False)`: BatchNorm on batch
   statistics); the op kept is the one whose removal gives the lowest accuracy (`crit: acc`,
   first on ties) or the highest loss (`crit: loss`);
3. DARTS space only, once every edge has its op: topology decisions, a node (3, 4, 5 in random
   or fixed order) at a time and each cell type: while the node has more than 2 candidate input
   edges, the candidate whose removal alone (its whole row 0, the node's other edges as they
   are) gives the highest accuracy (`acc`; the lowest loss with `loss`; the later on ties, as
   upstream's `not compare`) stops being a candidate; then the node's non-candidates are removed
   (upstream `project_edge` after its loop);
4. between two decisions `tune_epochs` epochs of the search's own steps (the algorithm's
   architecture step and weight step, its step order) with the projected weights in every
   forward. Upstream's decision epochs: NAS-Bench-201 `e % intv == 0 or e == 5 intv - 1`
   (so 4 tuning epochs before the last of the 6 decisions), DARTS `e % intv == 0` up to 16 intv
   (14 op decisions, then 3 topology decisions);
5. the genotype of the projected weights (NAS-Bench-201: the op of each edge; DARTS: DARTS's
   rule, which on the projected rows keeps the 2 edges and the op chosen).

Deviations (also in docs/algorithms.md):
- candidates are measured on the first `valid_batches` fixed batches of search-valid without
  augmentation (default: the split, capped at search.steps_per_epoch as the search's own
  evaluation is); upstream measures each candidate on the whole split, reshuffled and augmented
  for each candidate; BatchNorm running statistics are restored after the measurements (train
  mode: the decisions are the same either way);
- the tuning epoch after the last decision is not run (it cannot change the genotype);
- decided rows are replaced by their fixed value with no gradient to alpha (upstream overwrites
  `.data` of the softmax output, which lets a gradient reach the decided rows' alpha; those rows
  never matter again, and the softmax is per row, so the other rows' updates are the same);
- tuning runs the schedules (SDARTS's epsilon, temperatures) at the search's last epoch;
- the whole projection is one task without checkpoints of its own: a lost node reruns it;
- only the nb201 and darts spaces (upstream's); supernets with PC-DARTS edge weights keep them
  (moved by the algorithm as in the search), the genotype is read from the projection alone.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ray_nas.algorithms import algorithm_class
from ray_nas.algorithms import arch_first as step_arch_first
from ray_nas.config import SearchConfig, resolve_search
from ray_nas.criteria import PT_DARTS_NODES as _DARTS_NODES
from ray_nas.criteria import PT_SPACES, pt_schedule
from ray_nas.errors import CheckpointError, first_line
from ray_nas.search.loop import BatchPlan
from ray_nas.spaces import get_space
from ray_nas.store import fs
from ray_nas.training.data import Batcher, DataSet, load_dataset
from ray_nas.training.runtime import autocast, resolve_device, set_rng_state


@dataclass
class PTResult:
    """What one projection leaves behind."""

    arch: str
    """the selected genotype, in the space's text"""
    epoch: int
    """the search epoch of the supernet it started from"""
    valid_acc: float
    """search-valid accuracy % of the fully projected supernet (train mode, as the decisions)"""
    decisions: str
    """JSON list, in order: [cell, edge, op] per op decision, [cell, edge, "removed"] per edge
    removed by a topology decision"""
    tune_epochs_run: int
    seconds: float


def load_state(path: str) -> dict:
    """The trial checkpoint at `path` (on the store), tensors on the CPU; CheckpointError when
    it is missing or unreadable."""
    data = fs.read_bytes(path)
    if data is None:
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - truncated or foreign bytes
        raise CheckpointError(f"{path}: {type(e).__name__}: {first_line(e, 200)}") from None


class Projection:
    """Which rows are decided and what they are fixed to: [R, K] weights with decided rows
    replaced (one-hot at the kept op, all zero for an edge removed by a topology decision)."""

    def __init__(self, rows: int, ops: int, device: torch.device):
        self.decided = torch.zeros(rows, dtype=torch.bool, device=device)
        self.fixed = torch.zeros(rows, ops, device=device)
        self.op_done = np.zeros(rows, dtype=bool)
        self.nodes_done: set[tuple[str, int]] = set()

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return torch.where(self.decided[:, None], self.fixed.to(w.dtype), w)

    def keep_op(self, row: int, op: int) -> None:
        self.fixed[row] = 0
        self.fixed[row, op] = 1
        self.decided[row], self.op_done[row] = True, True

    def remove_edge(self, row: int) -> None:
        self.fixed[row] = 0
        self.decided[row] = True


def project(
    cfg: SearchConfig,
    state: dict,
    tune_epochs: int = 5,
    edge_decision: str = "random",
    crit: str = "acc",
    valid_batches: int = 0,
    data: DataSet | None = None,
    log: Callable[[str], None] = print,
) -> PTResult:
    """DARTS-PT on the supernet of checkpoint `state` (a trial's, `search.loop` format) of the
    search `cfg`; see the module docstring."""
    t0 = time.perf_counter()
    space = get_space(cfg.space)
    if space.name not in PT_SPACES:
        raise ValueError(
            f"darts_pt: search space {space.name!r} is not supported (upstream defines it on "
            f"{', '.join(PT_SPACES)})"
        )
    device = resolve_device(cfg.device)
    data = data or load_dataset(
        cfg.dataset, cfg.data_root, cfg.split_file, cfg.download, cfg.data_split_seed
    )
    model = space.build_supernet(cfg, data.num_classes).to(device)
    model.load_state_dict(state["model"])
    w_params = model.weight_parameters()
    w = cfg.weights
    lr = w.lr / 10
    w_opt = torch.optim.SGD(w_params, lr=lr, momentum=w.momentum, nesterov=w.nesterov,
                            weight_decay=w.weight_decay)  # fmt: skip
    algo = algorithm_class(cfg.algorithm)(cfg, model, w_params, w_opt)
    algo.load_state_dict(state["a_opt"])
    gen = torch.Generator()
    gen.set_state(state["data_gen"])
    set_rng_state(state["rng"])
    order_rng = np.random.default_rng(cfg.seed)
    plan = BatchPlan(cfg, data, device, gen)
    valid = Batcher(data.search_valid, data.name, device)
    rows = space.rows()
    cells = list(dict.fromkeys(c for c, _ in rows))
    proj = Projection(len(rows), len(cfg.ops), device)

    def forward(x, weights):
        return model(x, weights=proj(weights))

    def loss_of(x, y, weights):
        with autocast(device, cfg.precision):
            return F.cross_entropy(forward(x, weights), y)

    n = len(valid)
    cap = valid_batches or cfg.steps_per_epoch or None
    starts = list(range(0, n, cfg.batch_size))[:cap]

    @torch.no_grad()
    def measure(weights: torch.Tensor) -> tuple[float, float]:
        """(accuracy %, mean loss) on the fixed search-valid batches, train mode."""
        buffers = {k: b.clone() for k, b in model.named_buffers()}
        model.train()
        correct, loss_sum, count = 0, 0.0, 0
        for s in starts:
            x, y = valid.get(torch.arange(s, min(s + cfg.batch_size, n)))
            with autocast(device, cfg.precision):
                logits = model(x, weights=weights)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
        for k, b in model.named_buffers():
            b.copy_(buffers[k])
        return 100.0 * correct / count, loss_sum / count

    def base() -> torch.Tensor:
        return proj(algo.distribution().to(device).float())

    def pick(candidates: list[int]) -> int:
        if edge_decision == "random":
            return int(order_rng.choice(candidates))
        return candidates[0]

    decisions: list[list] = []
    better_op = (lambda a, b: a < b) if crit == "acc" else (lambda a, b: a > b)
    at = 0 if crit == "acc" else 1

    def decide_op(cell: str) -> None:
        free = [i for i, (c, _) in enumerate(rows) if c == cell and not proj.op_done[i]]
        row = pick(free)
        best, extreme = 0, None
        for k in range(len(cfg.ops)):
            wk = base()
            wk[row, k] = 0
            score = measure(wk)[at]
            if extreme is None or better_op(score, extreme):
                best, extreme = k, score
        proj.keep_op(row, best)
        decisions.append([cell, rows[row][1], cfg.ops[best]])

    def decide_node(cell: str) -> None:
        offset = cells.index(cell) * len(space.edges)
        free = [node for node, _ in _DARTS_NODES if (cell, node) not in proj.nodes_done]
        node = pick(free)
        eids = [offset + e for e in dict(_DARTS_NODES)[node]]
        while len(eids) > 2:
            drop, extreme = None, None
            for eid in eids:
                we = base()
                we[eid] = 0
                score = measure(we)[at]
                if extreme is None or not better_op(score, extreme):
                    drop, extreme = eid, score
            eids.remove(drop)
            decisions.append([cell, rows[drop][1], "removed"])
        for eid in dict(_DARTS_NODES)[node]:  # upstream's project_edge: after the node's loop
            if offset + eid not in eids:
                proj.remove_edge(offset + eid)
        proj.nodes_done.add((cell, node))

    topology = space.name == "darts"

    def decide() -> None:
        for cell in cells:
            if not proj.op_done[[i for i, (c, _) in enumerate(rows) if c == cell]].all():
                decide_op(cell)
            elif topology:
                decide_node(cell)

    rounds, due, n_tune = pt_schedule(space.name, tune_epochs)
    arch_first = step_arch_first(cfg.algorithm, cfg.space, cfg.step_order)
    algo.begin_epoch(cfg.total_epochs, cfg.total_epochs)
    tuned, done = 0, 0
    for epoch in range(n_tune + 1):
        if epoch in due:
            decide()
            done += 1
        if epoch < n_tune:
            _tune(plan, algo, forward, loss_of, lr, arch_first)
            tuned += 1
    while done < rounds:  # decisions the schedule has no epoch for: back to back
        decide()
        done += 1
    final = base()
    valid_acc = measure(final)[0]
    w_final = final.detach().float().cpu().numpy()
    arch = (space.genotype_text(w_final, cfg.ops, None) if topology
            else space.genotype_text(w_final, cfg.ops))  # fmt: skip
    seconds = time.perf_counter() - t0
    log(f"darts_pt: {len(decisions)} decisions, {tuned} tuning epochs, valid {valid_acc:.2f}% "
        f"in {seconds:.1f}s: {space.brief(arch)}")  # fmt: skip
    return PTResult(arch, int(state["epoch"]), valid_acc, json.dumps(decisions), tuned, seconds)


def _tune(plan: BatchPlan, algo, forward, loss_of, lr: float, arch_first: bool) -> None:
    """One fine-tuning epoch: the search's steps (architecture and weights) through `forward`,
    which mixes with the projected weights."""
    plan.new_epoch()
    for step in range(plan.steps()):
        train, arch = plan.batches(step)
        if arch_first:
            algo.arch_step(loss_of, train, arch, lr)
        algo.weight_step(forward, train, False)
        if not arch_first:
            algo.arch_step(loss_of, train, arch, lr)


def pt_task(
    config: dict, checkpoint_path: str, params: dict, expected_epoch: int
) -> tuple[str, int, float, str, int, float]:
    """One trial's projection (a Ray task under `ray-nas sweep`/`evaluate` on a cluster):
    (arch, epoch, valid_acc, decisions, tuning epochs, seconds). `config`: the trial's resolved
    search config as stored; `params`: darts_pt's parameters. CheckpointError when the checkpoint
    is not the trial's final supernet (its epoch differs from `expected_epoch`)."""
    cfg = resolve_search(config, record=True)
    state = load_state(checkpoint_path)
    if int(state.get("epoch", -1)) != expected_epoch:
        raise CheckpointError(
            f"{checkpoint_path}: the checkpoint is at epoch {state.get('epoch')}, the trial's "
            f"trajectory ends at epoch {expected_epoch}"
        )
    r = project(cfg, state, **params, log=lambda _line: None)
    return r.arch, r.epoch, r.valid_acc, r.decisions, r.tune_epochs_run, r.seconds
