"""Time one search step of PC-DARTS and GAEA+PC-DARTS beside DARTS-V1, on the DARTS space and on
NAS-Bench-201 (reference supernet), the step `ray_nas.search.loop` runs per batch.

Run: .venv/bin/python benchmarks/pc_darts_step.py --space darts --channels 16 --layers 8 --batch 64
     .venv/bin/python benchmarks/pc_darts_step.py --space nb201 --channels 16 --cells 5

Trials (each its own model, seeded alike, random CIFAR-shaped inputs, no data files):
  darts_v1       DARTS-V1 on the plain supernet (weight step, then an Adam alpha step)
  pc_darts       PC-DARTS: alpha + betas Adam step first, then the weight step, on the supernet
                 with partial_channels k (default 4) and edge normalisation
  pc_darts/k1    the same with k = 1 (edge normalisation only): what the partial channels save
  gaea_pc_darts  GAEA+PC-DARTS: exponentiated-gradient step on alpha and the edge weights first
On CUDA (`--device cuda`) compare the wall column. The weight step is the loop's `weight_step` (SGD, clip 5), the architecture step the algorithm's
own `arch_step`. The first step is a warm-up and not timed; printed: median wall and process-CPU
ms per step, and each trial's CPU-ms ratio to darts_v1 (on a shared machine the CPU time is the
steadier figure; with --threads 1 it is the compute itself).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ray_nas.algorithms import algorithm_class, arch_first
from ray_nas.config import resolve_search
from ray_nas.search.loop import weight_step
from ray_nas.spaces import get_space

TRIALS = {
    "darts_v1": ("darts_v1", 1, False),
    "pc_darts": ("pc_darts", None, True),
    "pc_darts/k1": ("pc_darts", 1, True),
    "gaea_pc_darts": ("gaea_pc_darts", None, True),
}


def run_trial(name: str, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    algorithm, k, edge_norm = TRIALS[name]
    raw = {"space": args.space, "algorithm": algorithm, "channels": args.channels,
           "layers": args.layers, "cells": args.cells, "batch_size": args.batch,
           "partial_channels": args.k if k is None else k, "edge_normalization": edge_norm,
           "device": args.device}  # fmt: skip
    if args.space == "nb201":
        raw["impl"] = "reference"
    cfg = resolve_search(raw)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = get_space(args.space).build_supernet(cfg, 10).to(device)
    w_params = model.weight_parameters()
    w_opt = torch.optim.SGD(w_params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    algo = algorithm_class(algorithm)(cfg, model, w_params, w_opt)
    first = arch_first(algorithm, args.space, cfg.step_order)
    gen = torch.Generator().manual_seed(0)

    def batch():
        x = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
        return x.to(device), torch.randint(0, 10, (args.batch,), generator=gen).to(device)

    def loss_of(x, y, weights):
        return F.cross_entropy(model(x, weights=weights), y)

    ms, cpu = [], []
    for i in range(args.steps + 1):
        train, arch = batch(), batch()
        t0, c0 = time.perf_counter(), time.process_time()
        if first:
            algo.arch_step(loss_of, train, arch, 0.025)
        weight_step(model, algo, w_opt, w_params, cfg, device, train)
        if not first:
            algo.arch_step(loss_of, train, arch, 0.025)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            ms.append(1000 * (time.perf_counter() - t0))
            cpu.append(1000 * (time.process_time() - c0))
    return ms, cpu


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", choices=("darts", "nb201"), default="darts")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--layers", type=int, default=8, help="darts: cells of the search network")
    ap.add_argument("--cells", type=int, default=5, help="nb201: cells per stage")
    ap.add_argument("--k", type=int, default=4, help="partial_channels of the pc trials")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32, help="image side in pixels")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--trial", nargs="+", default=list(TRIALS), choices=list(TRIALS))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = f"C={args.channels} " + (
        f"layers={args.layers}" if args.space == "darts" else f"N={args.cells}"
    )
    print(f"{args.space} {size} B={args.batch} {args.size}x{args.size} {args.device} "
          f"threads={torch.get_num_threads()} steps={args.steps}")  # fmt: skip
    print(f"{'trial':<15} {'wall ms':>9} {'cpu ms':>9} {'vs v1':>7}")
    base = None
    for name in args.trial:
        ms, cpu = run_trial(name, args)
        m, c = statistics.median(ms), statistics.median(cpu)
        base = c if base is None and name == "darts_v1" else base
        ratio = f"{c / base:.2f}x" if base else "-"
        print(f"{name:<15} {m:9.1f} {c:9.1f} {ratio:>7}")


if __name__ == "__main__":
    main()
