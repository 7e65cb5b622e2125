"""Cost of one bilevel search step of each algorithm beside DARTS-V1's, in one run.

Run: .venv/bin/python benchmarks/algorithm_step.py --space nb201 --channels 16 --cells 5 --batch 64
     .venv/bin/python benchmarks/algorithm_step.py --space darts --channels 16 --layers 8 --batch 64
     .venv/bin/python benchmarks/algorithm_step.py --algorithm darts_v1 sdarts_adv --device cuda

A step is what `ray_nas.search.loop.search` does per batch, through the same Algorithm interface:
`begin_epoch` once, then per step the architecture step (`arch_step`) on an arch batch and the
weight step (`weight_step`: SDARTS-ADV's PGD attack, SNAS's joint step, ...) on a weight batch, in
the algorithm's order. The supernet is the space's own (`Space.build_supernet`), inputs random
CIFAR-shaped tensors (no data files). Trials are timed round-robin, one step of each per round, so
load from other processes on a shared machine falls on every trial alike; `vs darts_v1` is each
algorithm's median step time over darts_v1's (darts_v1 is always timed).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ray_nas.algorithms import NAMES, algorithm_class, arch_first
from ray_nas.config import resolve_search
from ray_nas.spaces import get_space


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trial:
    def __init__(self, algorithm: str, args: argparse.Namespace, device: torch.device):
        self.algorithm, self.args, self.device = algorithm, args, device
        keys = {"algorithm": algorithm, "space": args.space, "channels": args.channels,
                "cells": args.cells, "layers": args.layers, "batch_size": args.batch,
                "device": args.device}  # fmt: skip
        if args.space == "darts":
            keys["impl"] = "fast"
        self.cfg = resolve_search(keys)
        torch.manual_seed(0)
        self.model = get_space(args.space).build_supernet(self.cfg, 10).to(device)
        self.w_params = self.model.weight_parameters()
        w = self.cfg.weights
        self.w_opt = torch.optim.SGD(self.w_params, lr=w.lr, momentum=w.momentum,
                                     nesterov=w.nesterov, weight_decay=w.weight_decay)  # fmt: skip
        self.algo = algorithm_class(algorithm)(self.cfg, self.model, self.w_params, self.w_opt)
        self.algo.begin_epoch(1, self.cfg.total_epochs)
        self.arch_first = arch_first(algorithm, args.space, self.cfg.step_order)
        self.gen = torch.Generator().manual_seed(0)
        self.ms: list[float] = []

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        b, size = self.args.batch, self.args.size
        x = torch.randn(b, 3, size, size, generator=self.gen)
        y = torch.randint(0, 10, (b,), generator=self.gen)
        return x.to(self.device), y.to(self.device)

    def loss_of(self, x, y, weights):
        return F.cross_entropy(self.model(x, weights=weights), y)

    def step(self) -> None:
        train, arch = self.batch(), self.batch()
        lr = self.cfg.weights.lr
        sync(self.device)
        t0 = time.perf_counter()
        if self.arch_first:
            self.algo.arch_step(self.loss_of, train, arch, lr)
        self.algo.weight_step(self.model, train, False)
        if not self.arch_first:
            self.algo.arch_step(self.loss_of, train, arch, lr)
        sync(self.device)
        self.ms.append(1000 * (time.perf_counter() - t0))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="nb201", choices=("nb201", "darts"))
    p.add_argument("--algorithm", nargs="+", default=list(NAMES), choices=NAMES)
    p.add_argument("--channels", type=int, default=16, help="C, channels of the first stage")
    p.add_argument("--cells", type=int, default=5, help="nb201: N, cells per stage")
    p.add_argument("--layers", type=int, default=8, help="darts: cells of the search network")
    p.add_argument("--batch", type=int, default=64, help="B, images per batch")
    p.add_argument("--size", type=int, default=32, help="image side (32 = CIFAR)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per algorithm (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per algorithm first")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    algorithms = list(dict.fromkeys(["darts_v1", *args.algorithm]))
    trials = [Trial(a, args, device) for a in algorithms]
    for t in trials:
        for _ in range(args.warmup):
            t.step()
        t.ms.clear()
    for _ in range(args.steps):
        for t in trials:
            t.step()
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, {torch.get_num_threads()} threads"
    )
    size = f"N={args.cells}" if args.space == "nb201" else f"layers={args.layers}"
    print(
        f"bilevel search step, {args.space} C={args.channels} {size} B={args.batch} "
        f"{args.size}x{args.size}, {args.steps} timed steps (median), {name}, torch {torch.__version__}"
    )
    v1 = statistics.median(trials[0].ms)
    head = f"{'algorithm':<12} {'ms/step':>10} {'vs darts_v1':>12}"
    print(head + "\n" + "-" * len(head))
    for t in trials:
        med = statistics.median(t.ms)
        print(f"{t.algorithm:<12} {med:>10.1f} {med / v1:>11.2f}x")


if __name__ == "__main__":
    main()
