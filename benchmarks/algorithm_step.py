"""Cost of one bilevel search step of each algorithm beside DARTS-V1's, in one run.

Run: .venv/bin/python benchmarks/algorithm_step.py --space nb201 --channels 16 --cells 5 --batch 64
     .venv/bin/python benchmarks/algorithm_step.py --space darts --channels 16 --layers 8 --batch 64
     .venv/bin/python benchmarks/algorithm_step.py --algorithm darts_v1 sdarts_adv --device cuda

--check (float32 against float64 on the device, e.g. CUDA): per algorithm, one supernet built
in float64 and a float32 copy of it take one step on the same batches, the device RNG seeded
alike; printed: the relative error (2-norm of the difference / 2-norm of the float64 value) of the
logits before the step (mixing the algorithm's distribution) and of the architecture parameters
after it. Algorithms that draw random numbers in their step (SDARTS's noise, DrNAS's Dirichlet,
GDAS's and SNAS's Gumbel) draw different numbers in the two dtypes: their step error is marked
`draws` and the forward error is their figure.
--memory: each algorithm alone (its model the only one on the device), the peak GPU memory of a
step (torch.cuda.max_memory_allocated), i.e. what one trial needs.
Spaces: nb201, darts and the NAS-Bench-1Shot1 spaces (the algorithms a space refuses are skipped
with the reason; on nb1shot1_* pc_darts runs nasbench-1shot1's partial_channels 4 and gdas its
per-cell samples).

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
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from ray_nas.algorithms import NAMES, algorithm_class, arch_first
from ray_nas.config import SpecError, resolve_search
from ray_nas.spaces import NAMES as SPACES
from ray_nas.spaces import get_space

#: algorithms whose step draws random numbers (their float32 and float64 draws differ)
STOCHASTIC = {"sdarts_rs", "sdarts_adv", "drnas", "gdas", "snas"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config(algorithm: str, args: argparse.Namespace):
    """The search config of `algorithm` on args.space (SpecError where the space refuses it)."""
    keys = {"algorithm": algorithm, "space": args.space, "channels": args.channels,
            "cells": args.cells, "layers": args.layers, "batch_size": args.batch,
            "device": args.device}  # fmt: skip
    if args.space == "darts":
        keys["impl"] = "fast"
    if args.space.startswith("nb1shot1"):
        keys.pop("cells")
        if algorithm == "pc_darts":  # nasbench-1shot1's PC-DARTS: partial channels, k = 4
            keys["partial_channels"] = 4
        if algorithm == "gdas":  # nasbench-1shot1's GDAS default
            keys["gdas"] = {"tau_min": 1.0}
    return resolve_search(keys)


class Trial:
    def __init__(
        self, algorithm: str, args: argparse.Namespace, device: torch.device,
        dtype: torch.dtype = torch.float32, model: torch.nn.Module | None = None,
    ):  # fmt: skip
        self.algorithm, self.args, self.device = algorithm, args, device
        self.cfg = config(algorithm, args)
        self.dtype = dtype
        torch.manual_seed(0)
        if model is None:
            model = get_space(args.space).build_supernet(self.cfg, 10)
        self.model = model.to(device, dtype)
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
        x = torch.randn(b, 3, size, size, generator=self.gen, dtype=torch.float64)
        y = torch.randint(0, 10, (b,), generator=self.gen)
        return x.to(self.device, self.dtype), y.to(self.device)

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

    def arch_state(self) -> torch.Tensor:
        """Every architecture parameter, flattened, float64."""
        return torch.cat([p.detach().double().reshape(-1) for p in self.algo.arch_parameters])


def rel(a: torch.Tensor, truth: torch.Tensor) -> float:
    return ((a - truth).norm() / truth.norm().clamp_min(1e-300)).item()


def check(algorithm: str, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    """(forward, step) relative error of float32 against float64 on `device` (see --check)."""
    t64 = Trial(algorithm, args, device, torch.float64)
    t32 = Trial(algorithm, args, device, torch.float32, model=copy.deepcopy(t64.model))
    g = torch.Generator().manual_seed(7)  # not the trials' own batch stream
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g, dtype=torch.float64)
    x = x.to(device)
    with torch.no_grad():
        w = t64.algo.distribution()
        f64 = t64.model(x, weights=w.to(torch.float64)).double()
        f32 = t32.model(x.float(), weights=w.float()).double()
    out = []
    for t in (t64, t32):
        torch.manual_seed(1)
        if device.type == "cuda":
            torch.cuda.manual_seed(1)
        t.step()
        out.append(t.arch_state())
    return rel(f32, f64), rel(out[1], out[0])


def peak_mib(algorithm: str, args: argparse.Namespace, device: torch.device) -> float:
    """Peak GPU memory (MiB) of a step of `algorithm` alone on the device (see --memory)."""
    torch.cuda.empty_cache()
    t = Trial(algorithm, args, device)
    t.step()  # the optimiser states exist from here on
    torch.cuda.reset_peak_memory_stats(device)
    t.step()
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    del t
    torch.cuda.empty_cache()
    return peak


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="nb201", choices=SPACES)
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
    p.add_argument("--check", action="store_true", help="float32 against float64 on the device")
    p.add_argument("--memory", action="store_true", help="peak GPU memory of each algorithm alone")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    algorithms = list(dict.fromkeys(["darts_v1", *args.algorithm]))
    skipped = {}
    for a in algorithms[1:]:
        try:
            config(a, args)
        except SpecError as e:
            skipped[a] = str(e)
    algorithms = [a for a in algorithms if a not in skipped]
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
    times = {t.algorithm: statistics.median(t.ms) for t in trials}
    extra = {t.algorithm: "" for t in trials}
    head = f"{'algorithm':<14} {'ms/step':>10} {'vs darts_v1':>12}"
    if args.check:
        head += f" {'fwd f32 err':>12} {'step f32 err':>13}"
        for t in trials:
            fwd, step = check(t.algorithm, args, device)
            mark = "draws" if t.algorithm in STOCHASTIC else f"{step:.2e}"
            extra[t.algorithm] += f" {fwd:>12.2e} {mark:>13}"
    if args.memory and device.type == "cuda":
        head += f" {'peak MiB':>9}"
        trials.clear()  # each algorithm alone on the device
        for a in algorithms:
            extra[a] += f" {peak_mib(a, args, device):>9.0f}"
    print(head + "\n" + "-" * len(head))
    for a in algorithms:
        print(f"{a:<14} {times[a]:>10.1f} {times[a] / v1:>11.2f}x{extra[a]}")
    for a, why in skipped.items():
        print(f"{a:<14} skipped: {why}")


if __name__ == "__main__":
    main()
