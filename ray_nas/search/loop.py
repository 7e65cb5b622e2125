"""The search loop (any algorithm of ray_nas.algorithms) and the Hessian eigenvalue.

Per batch: a weight step on a weight batch (SGD) and an architecture step on an independently
drawn arch batch, in the order `search.step_order` resolves to (upstream: DARTS-V1 weights first
on NAS-Bench-201, as its reference, architecture first on the DARTS and 1Shot1 spaces, as
quark0/darts, SS-DARTS and nasbench-1shot1; DARTS-V2, GAEA, DrNAS architecture first). Both
batches are drawn before either step, so the order moves no data draw. `search.objective` chooses the pools (BatchPlan). Each epoch (and epoch 0, the
state before any update) is handed to `on_epoch(record)`; the loop knows nothing of files or Ray.
A checkpoint store, when given, makes the loop resumable bit-identically.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ray_nas.algorithms import algorithm_class
from ray_nas.algorithms import arch_first as step_arch_first
from ray_nas.config import SearchConfig
from ray_nas.spaces import get_space
from ray_nas.training.data import Batcher, DataSet, load_dataset
from ray_nas.training.runtime import (  # noqa: F401
    autocast,
    evaluate_split,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)


@dataclass
class EpochRecord:
    """What one epoch leaves behind. Accuracies in percent, losses are mean cross-entropy."""

    epoch: int
    """0 = before any update; epochs 1..warmup_epochs have alpha frozen"""
    train_loss: float
    """mean over the epoch's weight steps (NaN at epoch 0)"""
    train_acc: float
    valid_loss: float
    """supernet on search-valid after the epoch (eval mode, up to steps_per_epoch batches)"""
    valid_acc: float
    lr_weights: float
    """lr of the epoch's last weight step"""
    lr_alpha: float
    """alpha lr (0 while alpha is frozen)"""
    hessian_eig: float | None
    """dominant eigenvalue of the alpha Hessian (+ alpha L2) on the epoch's last architecture-step
    batch, train mode (see hessian_eigenvalue); None where not computed (always at epoch 0)"""
    seconds: float
    """wall seconds of the epoch (training + evaluation)"""
    arch: str
    alpha: np.ndarray
    """float32 [E, K] the algorithm's raw parameter, order (the space's rows: cell, edge) x config.ops"""
    weights: np.ndarray
    """float32 [E, K] the algorithm's op distribution per edge (softmax(alpha) for DARTS)"""
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    """further float32 [E, K] columns of the algorithm (algorithms.EXTRA_COLUMNS)"""
    connection_alpha: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """float32 [C] the supernet's raw connection parameters (NAS-Bench-1Shot1; order the space's
    connection_rows), empty for the other spaces"""
    connection_weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """float32 [C] their softmax per connection vector, the weights the supernet mixes with"""


def non_finite(rec: EpochRecord) -> str | None:
    """What in an epoch record is NaN or infinite (the search diverged), or None when all is finite.

    Checks the losses (train_loss only after epoch 0, where it is NaN by definition) and alpha.
    """
    losses = {"valid_loss": rec.valid_loss, "train_loss": rec.train_loss if rec.epoch else 0.0}
    bad = [f"{k} {v}" for k, v in losses.items() if not math.isfinite(v)]
    if not np.isfinite(rec.alpha).all():
        bad.append(f"{int((~np.isfinite(rec.alpha)).sum())} non-finite alpha entries")
    if not np.isfinite(rec.connection_alpha).all():
        n = int((~np.isfinite(rec.connection_alpha)).sum())
        bad.append(f"{n} non-finite connection weights")
    return f"non-finite {', '.join(bad)} at epoch {rec.epoch}" if bad else None


class CheckpointStore(Protocol):
    def load(self) -> dict | None: ...
    def save(self, state: dict) -> None: ...


def weights_lr(cfg: SearchConfig, epoch: int, step: int, steps: int) -> float:
    """The weights' lr at training epoch `epoch` (0-based over warmup + joint) and batch `step` of `steps`.

    W = warmup_epochs, E = epochs, floor = lr_min for the cosine (lr for `constant`).
    weights.warmup_rule `autodl` (default; AutoDL's CosineAnnealingLR(W, E) as the reference's
    DARTS-V1 ran it): epoch < min(W, E) ramps linearly from 0, batch by batch, to lr; W <= epoch < E
    runs the cosine from lr to lr_min indexed from the end of warmup over E epochs,
    (1 + cos(pi (epoch - W) / E)) / 2; from absolute epoch E on it is the floor, so with warmup W
    the last W joint epochs run at lr_min (and with W >= E the full lr is never reached).
    `restart`: the ramp over the W warmup epochs, then the cosine restarted over the E joint epochs.
    Without warmup both rules are the same cosine over E, stepped once per epoch.
    `frozen` (PC-DARTS's train_search.py: the architecture frozen for W epochs): no ramp; one
    cosine from lr to lr_min over all W + E epochs from epoch 0.
    """
    w, warm = cfg.weights, cfg.warmup_epochs
    if w.warmup_rule == "frozen":
        if w.schedule == "constant":
            return w.lr
        t = epoch / (warm + cfg.epochs)
        return w.lr_min + (w.lr - w.lr_min) * (1 + math.cos(math.pi * t)) / 2
    floor = w.lr if w.schedule == "constant" else w.lr_min
    if w.warmup_rule == "autodl" and epoch >= cfg.epochs:
        return floor
    if epoch < warm:
        return (epoch + step / steps) / warm * w.lr
    if w.schedule == "constant":
        return w.lr
    e = epoch - warm
    return w.lr_min + (w.lr - w.lr_min) * (1 + math.cos(math.pi * e / cfg.epochs)) / 2


def softmax_mix(alpha: torch.Tensor) -> torch.Tensor:
    """DARTS' mixing weights: softmax over the ops of each edge, [E, K] -> [E, K]."""
    return F.softmax(alpha, dim=-1)


def hessian_eigenvalue(
    model: torch.nn.Module,
    alpha: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    weight_decay: float,
    mix: Callable[[torch.Tensor], torch.Tensor] = softmax_mix,
) -> tuple[float, np.ndarray]:
    """Dominant eigenvalue of the architecture Hessian as R-DARTS and the paper's code compute it.

    H = d2 L / d alpha2 + weight_decay * I, L the mean cross-entropy of `model` on the batch
    x [B, 3, H, W], y [B], the supernet mixing with mix(alpha) (the algorithm's deterministic map;
    softmax for DARTS), at the raw architecture parameter `alpha` [E, K], the model in TRAIN mode
    (BatchNorm on the batch's statistics), weight_decay the L2 coefficient on alpha (Adam's coupled
    weight decay adds weight_decay * alpha to the gradient, hence weight_decay * I here). Exact, by
    double backprop. The model's state is left as it was: mode and BatchNorm running statistics.
    A supernet's connection weights (NAS-Bench-1Shot1) are held fixed: H is over the op rows only.

    Returns (largest eigenvalue of H, the symmetrised H [E*K, E*K] float64).
    """
    was_training = model.training
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    model.train()
    try:
        a = alpha.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(x, weights=mix(a)), y)
        (g,) = torch.autograd.grad(loss, a, create_graph=True)
        n = g.numel()
        eye = torch.eye(n, device=g.device, dtype=g.dtype).view(n, *a.shape)
        # all n Hessian-vector products in one batched backward (vmap over the grad outputs)
        (h,) = torch.autograd.grad(g, a, grad_outputs=eye, is_grads_batched=True)
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(buffers[k])
        model.train(was_training)
    h = h.reshape(n, n).double().cpu()
    h = (h + h.T) / 2 + weight_decay * torch.eye(n, dtype=torch.float64)
    return float(torch.linalg.eigvalsh(h).max()), h.numpy()


class Progress:
    """A one-line batch progress bar on a terminal; silent otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()

    def update(
        self, epoch: int, total_epochs: int, step: int, steps: int, loss: torch.Tensor
    ) -> None:
        if self.enabled:
            done = int(20 * step / steps)
            bar = "#" * done + "." * (20 - done)
            sys.stderr.write(
                f"\r  epoch {epoch}/{total_epochs} [{bar}] {step}/{steps} loss {loss.item():.3f}"
            )
            sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 70 + "\r")


class BatchPlan:
    """Which images each step uses: one weight batch and one independent architecture batch.

    bilevel: weight batches walk a per-epoch permutation of search-train; arch batches are drawn
    uniformly at random (with replacement across steps) from search-valid, as the reference's
    sampler. erm (GAEA-ERM): both pools are the whole training split (`DataSet.train`); weight
    batches walk a permutation of it, arch batches are drawn at random from it independently.
    All draws come from `gen` (checkpointed), in the order permutation, weight batch, arch batch.
    """

    def __init__(
        self, cfg: SearchConfig, data: DataSet, device: torch.device, gen: torch.Generator
    ):
        self.cfg, self.gen = cfg, gen
        if cfg.objective == "erm":
            self.train = self.arch = Batcher(data.train, data.name, device)
        else:
            self.train = Batcher(data.search_train, data.name, device)
            self.arch = Batcher(data.search_valid, data.name, device)
        self.order = torch.arange(0)

    def steps(self) -> int:
        steps = math.ceil(len(self.train) / self.cfg.batch_size)
        return min(steps, self.cfg.steps_per_epoch) if self.cfg.steps_per_epoch else steps

    def new_epoch(self) -> None:
        self.order = torch.randperm(len(self.train), generator=self.gen)

    def train_indices(self, step: int) -> torch.Tensor:
        """[B] indices into the weight pool for batch `step` of the epoch."""
        b = self.cfg.batch_size
        return self.order[step * b : (step + 1) * b]

    def arch_indices(self) -> torch.Tensor:
        """[B] indices into the architecture pool, drawn at random."""
        return torch.randint(len(self.arch), (self.cfg.batch_size,), generator=self.gen)

    def batches(self, step: int) -> tuple[tuple, tuple]:
        """((x, y) weight batch, (x, y) arch batch), both augmented."""
        train = self.train.get(self.train_indices(step), self.gen)
        return train, self.arch.get(self.arch_indices(), self.gen)


def search(
    cfg: SearchConfig,
    on_epoch: Callable[[EpochRecord], bool | None],
    checkpoint: CheckpointStore | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    data: DataSet | None = None,
) -> int:
    """Run (or resume) one search with `cfg.algorithm`. `on_epoch` returning True stops it
    (online early stop). Returns the last completed epoch.
    """
    device = resolve_device(cfg.device)
    if cfg.channels_last and device.type == "cpu":
        log(
            "warning: search.channels_last on CPU: it moves the whole network (stem, cells, "
            "head) to channels-last, whose torch CPU BatchNorm sums float32 sequentially (~4x "
            "further from float64 logits, benchmarks/equivalence.py); it is meant for GPUs (the "
            "fast NB201 cells run channels-last on CPU anyway)"
        )
    gen = seed_everything(cfg.seed)
    data = data or load_dataset(
        cfg.dataset, cfg.data_root, cfg.split_file, cfg.download, cfg.data_split_seed
    )
    plan = BatchPlan(cfg, data, device, gen)
    valid_b = (
        plan.arch if cfg.objective == "bilevel" else Batcher(data.search_valid, data.name, device)
    )
    space = get_space(cfg.space)
    model = space.build_supernet(cfg, data.num_classes).to(device)
    # search.compile: the two steps' forwards only; state_dict, evaluation and Hessian stay eager
    forward = torch.compile(model, mode=cfg.compile_mode) if cfg.compile else model
    w_params = model.weight_parameters()
    w_opt = torch.optim.SGD(
        w_params, lr=cfg.weights.lr, momentum=cfg.weights.momentum,
        nesterov=cfg.weights.nesterov, weight_decay=cfg.weights.weight_decay,
    )  # fmt: skip
    algo = algorithm_class(cfg.algorithm)(cfg, model, w_params, w_opt)

    def loss_of(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        with autocast(device, cfg.precision):
            return F.cross_entropy(forward(x, weights=weights), y)

    steps = plan.steps()
    total = cfg.total_epochs

    state = checkpoint.load() if checkpoint else None
    if state is not None:
        model.load_state_dict(state["model"])
        w_opt.load_state_dict(state["w_opt"])
        algo.load_state_dict(state["a_opt"])
        gen.set_state(state["data_gen"])
        set_rng_state(state["rng"])
        start = state["epoch"] + 1
        log(f"resuming from the checkpoint of epoch {state['epoch']}")
    else:
        start = 1
        rec = end_of_epoch(model, algo, cfg, valid_b, None, 0, math.nan, math.nan, 0.0, 0.0, 0.0)
        report(rec, total, log, space=space)
        if on_epoch(rec):
            return 0

    bar = Progress(progress)
    arch_first = step_arch_first(cfg.algorithm, cfg.space, cfg.step_order)
    for epoch in range(start, total + 1):
        t0 = time.perf_counter()
        frozen = epoch <= cfg.warmup_epochs  # alpha frozen during warmup
        plan.new_epoch()
        algo.begin_epoch(epoch, total)
        # running sums stay on the device: no host sync per step (the bar syncs only on a terminal)
        loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
        for step in range(steps):
            lr = weights_lr(cfg, epoch - 1, step, steps)
            for g in w_opt.param_groups:
                g["lr"] = lr
            train, arch = plan.batches(step)
            if arch_first and not frozen:
                algo.arch_step(loss_of, train, arch, lr)
            loss, logits = algo.weight_step(forward, train, frozen)
            if not arch_first and not frozen:
                algo.arch_step(loss_of, train, arch, lr)
            loss_sum += loss.detach() * len(train[1])
            correct += (logits.argmax(1) == train[1]).sum()
            seen += len(train[1])
            bar.update(epoch, total, step + 1, steps, loss)
        bar.clear()
        lr_alpha = 0.0 if frozen else algo.lr()
        rec = end_of_epoch(
            model, algo, cfg, valid_b, arch, epoch, loss_sum.item() / seen,
            100.0 * correct.item() / seen, lr, lr_alpha, t0,
        )  # fmt: skip
        report(rec, total, log, device, space)
        stop = on_epoch(rec)
        if checkpoint:
            checkpoint.save({
                "epoch": epoch, "model": model.state_dict(), "w_opt": w_opt.state_dict(),
                "a_opt": algo.state_dict(), "data_gen": gen.get_state(), "rng": rng_state(),
            })  # fmt: skip
        if stop:
            return epoch
    return total


def weight_step(forward, algo, w_opt, w_params, cfg: SearchConfig, device, batch):
    """One weight step of `algo` (Algorithm.weight_step: by default one SGD step on the supernet
    weights, clipped, mixing with the algorithm's weights), alpha not frozen; w_opt, w_params,
    cfg and device are the algorithm's own (kept for the callers of this signature).

    Returns (loss, logits [B, classes]) of the batch."""
    return algo.weight_step(forward, batch, False)


def _alpha_l2(algo, cfg: SearchConfig) -> float:
    """The L2 coefficient on the raw architecture parameter that the algorithm's update applies:
    Adam's coupled weight decay for DARTS (search.alpha.weight_decay) and DrNAS-l2
    (drnas.reg_scale), none for GAEA and DrNAS-kl (algorithms.base.Algorithm.weight_decay)."""
    return float(algo.weight_decay())


def end_of_epoch(
    model, algo, cfg, valid_b, arch_batch, epoch, train_loss, train_acc, lr_w, lr_a, t0
) -> EpochRecord:
    """Evaluate on search-valid (mixing with the algorithm's evaluation weights: the recorded
    distribution but for NASP's binarised alpha), optionally the Hessian
    eigenvalue w.r.t. the algorithm's raw parameter, then the algorithm's `end_epoch` (epochs >= 1),
    and snapshot it.

    arch_batch: the epoch's last architecture-step batch (x, y), augmented, batch_size images (drawn
    in warmup too); None at epoch 0, which has none and so gets no eigenvalue. The Hessian's L2
    term is the one the algorithm's update applies (_alpha_l2; none for GAEA).
    """
    valid_loss, valid_acc, _ = evaluate_split(
        model, valid_b, cfg.batch_size, cfg.steps_per_epoch, algo.evaluation_weights()
    )
    eig = None
    finite = math.isfinite(valid_loss) and bool(torch.isfinite(model.alpha).all())
    due = cfg.hessian_every and epoch % cfg.hessian_every == 0 and arch_batch is not None
    if due and finite:  # NaN: eigvalsh fails
        eig, _ = hessian_eigenvalue(model, model.alpha, *arch_batch, _alpha_l2(algo, cfg), algo.mix)
    if epoch > 0:  # after the epoch's evaluation, before its record (SGAS's edge decisions)
        algo.end_epoch(epoch, cfg.total_epochs)
    dist = algo.distribution()
    alpha = model.alpha.detach().float().cpu()
    conn = _connections(model)
    return EpochRecord(
        epoch=epoch, train_loss=train_loss, train_acc=train_acc, valid_loss=valid_loss,
        valid_acc=valid_acc, lr_weights=lr_w, lr_alpha=lr_a, hessian_eig=eig,
        seconds=time.perf_counter() - t0 if t0 else 0.0, arch=get_space(cfg.space).arch_of(model, dist),
        alpha=alpha.numpy().astype(np.float32),
        weights=dist.float().cpu().numpy().astype(np.float32), extras=algo.extras(),
        connection_alpha=conn[0], connection_weights=conn[1],
    )  # fmt: skip


def _connections(model) -> tuple[np.ndarray, np.ndarray]:
    """float32 ([C] raw, [C] softmaxed) connection weights of a supernet that has them, else empty."""
    if not hasattr(model, "connection_parameters"):
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    with torch.no_grad():
        raw, soft = model.connection_alpha(), model.connection_weights()
    return tuple(t.detach().float().cpu().numpy().astype(np.float32) for t in (raw, soft))


def report(
    rec: EpochRecord, total: int, log: Callable[[str], None], device: torch.device | None = None,
    space=None,
) -> None:  # fmt: skip
    """One line per epoch; on CUDA with the trial's peak GPU memory so far (what a fraction of a
    GPU per trial, `resources.gpu`, must hold)."""
    genotype = (space or get_space("nb201")).brief(rec.arch)
    eig = f" eig {rec.hessian_eig:.3g}" if rec.hessian_eig is not None else ""
    mem = ""
    if device is not None and device.type == "cuda":
        mem = f" gpu {torch.cuda.max_memory_allocated(device) / 2**20:.0f}MiB"
    log(
        f"epoch {rec.epoch:>3}/{total} train {rec.train_loss:.3f}/{rec.train_acc:5.1f}% "
        f"valid {rec.valid_loss:.3f}/{rec.valid_acc:5.1f}% lr {rec.lr_weights:.2e}{eig} "
        f"{rec.seconds:.1f}s{mem} {genotype}"
    )
