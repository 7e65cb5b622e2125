"""Retraining a DARTS-space genotype from scratch (NetworkCIFAR), by named recipe, resumable.

Recipes (ray_nas.spaces.darts.train.RECIPES):
- `darts`: DARTS cnn/train.py as its README runs it: 20 cells, C=36, 600 epochs, batch 96,
  SGD lr 0.025 momentum 0.9 cosine to 0, weight decay 3e-4, grad clip 5, cutout 16, auxiliary
  weight 0.4, drop path 0.2 (ramped p * epoch / epochs).
- `drnas`: DrNAS's DARTS-space train.py, whose evaluation code the paper used: as `darts` with
  batch 64, drop path 0.3 and DrNAS's operations, where each pool is followed by a non-affine
  BatchNorm (operations.py MaxPoolBN / AvgPoolBN; `pool_bn`).

Every recipe steps the lr once per epoch at the epoch's index e = 0..epochs-1, lr0 (1 + cos(pi e /
epochs)) / 2, as DrNAS's and SS-DARTS's train.py (CosineAnnealingLR stepped at the end of each
epoch) and quark0/darts's train.py under the PyTorch 0.3 it was written for (stepped at the start,
which on PyTorch >= 1.1 would run one epoch ahead).
- `proxy`: a cheap ranking proxy (ours, documented, not a published protocol): 8 cells, C=16,
  20 epochs, batch 96, otherwise as `darts` (cutout, auxiliary 0.4, drop path 0.2). It follows the
  shape of NAS-Bench-301's cheaper protocol (8 cells, 100 epochs, C=32) at a fifth of its cost.

The loop trains on the whole training split and scores on the data set's test split. With a
checkpoint store it saves model, optimiser, data generator and RNG states after every epoch and
resumes from the last one bit-identically (a 600-epoch retrain survives a lost node).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ray_nas.digest import sha256_hex
from ray_nas.spaces.darts.genotype import parse_genotype
from ray_nas.spaces.recipes import RetrainResult, named_recipe, state_digest

__all__ = ["RECIPES", "Recipe", "RetrainResult", "epoch_lr", "recipe", "retrain", "state_digest"]


@dataclass(frozen=True)
class Recipe:
    """One retraining protocol. lr in SGD units, sizes in pixels."""

    layers: int = 20
    channels: int = 36
    epochs: int = 600
    batch_size: int = 96
    lr: float = 0.025
    """initial SGD lr, cosine to 0 over `epochs` (stepped once per epoch)"""
    momentum: float = 0.9
    weight_decay: float = 3.0e-4
    grad_clip: float = 5.0
    cutout: int = 16
    """side of the zeroed square (0 = no cutout)"""
    auxiliary_weight: float = 0.4
    """weight of the auxiliary head's loss (0 = no auxiliary head)"""
    drop_path: float = 0.2
    """final drop-path probability, ramped linearly from 0"""
    steps_per_epoch: int | None = None
    """cap on training batches per epoch and on test batches (tests, quick looks); None = the
    whole training and test splits"""
    pool_bn: bool = False
    """each pool op followed by a non-affine BatchNorm (DrNAS's evaluation operations); False:
    quark0/darts's bare pools"""

    def key(self) -> str:
        """A short stable hash of every field (the retrain cache key's recipe part); pool_bn only
        when set, so the keys of recipes from before it stay as they were."""
        fields = dataclasses.asdict(self)
        if not self.pool_bn:
            del fields["pool_bn"]
        blob = repr(sorted(fields.items()))
        return sha256_hex(blob, 12)


RECIPES: dict[str, Recipe] = {
    "darts": Recipe(),
    "drnas": Recipe(batch_size=64, drop_path=0.3, pool_bn=True),
    "proxy": Recipe(layers=8, channels=16, epochs=20),
}


def recipe(name: str, **overrides) -> Recipe:
    """A named recipe with field overrides; ValueError names a bad name or field."""
    return named_recipe(RECIPES, name, overrides)


def build_network(genotype_text: str, rec: Recipe, num_classes: int):
    """NetworkCIFAR of the genotype at the recipe's size, with the auxiliary head when the
    recipe weighs it (forward: (logits, auxiliary logits or None))."""
    from ray_nas.spaces.darts.network import NetworkCIFAR  # torch: imported on use

    return NetworkCIFAR(parse_genotype(genotype_text), rec.channels, rec.layers,
                        num_classes, rec.auxiliary_weight > 0, rec.pool_bn)  # fmt: skip


def epoch_lr(rec: Recipe, epoch: int) -> float:
    """The SGD lr of retraining epoch `epoch` (0-based): lr (1 + cos(pi epoch / epochs)) / 2, as
    DrNAS's and SS-DARTS's train.py run it (CosineAnnealingLR, scheduler.step() at the end of
    each epoch), and quark0/darts's under PyTorch 0.3 (stepped at the start)."""
    return rec.lr * (1 + math.cos(math.pi * epoch / rec.epochs)) / 2


def cutout(x, length: int, gen):
    """Zero one length x length square per image (centre uniform over the image, clipped), as
    DARTS's Cutout on normalised images. x [B, 3, H, W] -> same tensor, changed in place."""
    import torch

    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=gen)
    cx = torch.randint(0, w, (b,), generator=gen)
    ys, xs = torch.arange(h)[None, :], torch.arange(w)[None, :]
    in_y = (ys >= (cy - length // 2)[:, None]) & (ys < (cy + length // 2)[:, None])
    in_x = (xs >= (cx - length // 2)[:, None]) & (xs < (cx + length // 2)[:, None])
    mask = (in_y[:, :, None] & in_x[:, None, :])[:, None].to(x.device)  # [B, 1, H, W]
    return x.masked_fill_(mask, 0.0)


def retrain(
    genotype_text: str,
    rec: Recipe,
    dataset: str,
    data_root: str = "data",
    seed: int = 0,
    checkpoint=None,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    on_epoch: Callable[[int], None] | None = None,
) -> RetrainResult:
    """Train the genotype's NetworkCIFAR from scratch under `rec`; resume from `checkpoint`
    (a search.CheckpointStore: load() -> dict | None, save(dict)) when it holds a state.

    `on_epoch(epoch)` is called after each epoch's checkpoint is saved.
    """
    import torch
    import torch.nn.functional as F

    # torch: imported on use (the space's pure part is read without it)
    from ray_nas.spaces.darts.network import count_params_m
    from ray_nas.training.data import Batcher, load_dataset
    from ray_nas.training.runtime import evaluate_split, rng_state, seed_everything, set_rng_state

    t0 = time.perf_counter()
    dev = torch.device(device)
    gen = seed_everything(seed)
    ds = load_dataset(dataset, data_root, seed=seed)
    net = build_network(genotype_text, rec, ds.num_classes).to(dev)
    opt = torch.optim.SGD(
        net.parameters(), lr=rec.lr, momentum=rec.momentum, weight_decay=rec.weight_decay
    )
    train, test = Batcher(ds.train, ds.name, dev), Batcher(ds.test, ds.name, dev)
    steps = math.ceil(len(train) / rec.batch_size)
    if rec.steps_per_epoch:
        steps = min(steps, rec.steps_per_epoch)
    losses: list[float] = []
    start = 0
    state = checkpoint.load() if checkpoint else None
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["data_gen"])
        set_rng_state(state["rng"])
        start, losses = state["epoch"], list(state["train_loss"])
        log(f"retrain: resuming from the checkpoint of epoch {start}")
    for epoch in range(start, rec.epochs):
        for g in opt.param_groups:
            g["lr"] = epoch_lr(rec, epoch)
        net.drop_path_prob = rec.drop_path * epoch / rec.epochs
        losses.append(_train_epoch(net, opt, train, rec, steps, gen, F))
        if checkpoint:
            checkpoint.save({"epoch": epoch + 1, "model": net.state_dict(), "opt": opt.state_dict(),
                             "data_gen": gen.get_state(), "rng": rng_state(), "train_loss": losses})  # fmt: skip
        log(
            f"retrain epoch {epoch + 1}/{rec.epochs} loss {losses[-1]:.4f} {time.perf_counter() - t0:.1f}s"
        )
        if on_epoch:
            on_epoch(epoch + 1)
    _, acc, _ = evaluate_split(_LogitsOnly(net), test, rec.batch_size, rec.steps_per_epoch)
    seconds = time.perf_counter() - t0
    return RetrainResult(
        acc, count_params_m(net), rec.epochs, seconds, losses, state_digest(net.state_dict())
    )


def _train_epoch(net, opt, train, rec: Recipe, steps: int, gen, F) -> float:
    """One epoch of SGD on shuffled, augmented (crop, flip, cutout) batches; mean loss."""
    import torch

    net.train()
    order = torch.randperm(len(train), generator=gen)
    total, seen = 0.0, 0
    for step in range(steps):
        x, y = train.get(order[step * rec.batch_size : (step + 1) * rec.batch_size], gen)
        if rec.cutout:
            x = cutout(x, rec.cutout, gen)
        opt.zero_grad(set_to_none=True)
        logits, aux = net(x)
        loss = F.cross_entropy(logits, y)
        if aux is not None:
            loss = loss + rec.auxiliary_weight * F.cross_entropy(aux, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), rec.grad_clip)
        opt.step()
        total += loss.item() * len(y)
        seen += len(y)
    return total / seen


class _LogitsOnly:
    """Adapts NetworkCIFAR (logits, aux) to evaluate_split's model(x) -> logits."""

    def __init__(self, net):
        self.net = net

    def eval(self):
        self.net.eval()

    def train(self):
        self.net.train()

    def __call__(self, x, weights=None):
        return self.net(x)[0]
