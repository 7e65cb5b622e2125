"""Time one first-order DARTS search step of the DARTS-space search network, optionally beside
quark0/darts's own search model (cnn/model_search.py) on the same input.

Run: .venv/bin/python benchmarks/darts_space_step.py --channels 16 --layers 8 --batch 64 --steps 5
     [--upstream DIR]   # DIR holds quark0/darts's cnn/{model_search,operations,genotypes}.py

A step: an alpha step (forward, CE, backward to both alpha matrices, Adam 3e-4) on one random
batch, then a weight step (forward, CE, backward to the weights, grad-norm clip 5, SGD 0.025
momentum 0.9 wd 3e-4) on another: what DARTS's train_search.py does per batch without
`--unrolled`. Inputs are random CIFAR-shaped tensors (no data files); 8 ops with `none`, as
DARTS. The first step is a warm-up and not timed; the medians of the timed steps' wall and
process CPU milliseconds are printed (with --threads 1 the CPU time is the compute itself).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from ray_nas.spaces import darts
from ray_nas.spaces.darts.network import SearchNetwork


def time_steps(model, w_params, a_params, x, y, steps: int) -> tuple[list[float], list[float]]:
    """(wall ms, process CPU ms) of each timed step (the first, a warm-up, excluded). On a shared
    machine the CPU time is the steadier figure (wall time includes waiting for a core)."""
    w_opt = torch.optim.SGD(w_params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(a_params, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    ms, cpu = [], []
    for i in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        a_opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[1]), y[1]).backward(inputs=a_params)
        a_opt.step()
        w_opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[0]), y[0]).backward(inputs=w_params)
        torch.nn.utils.clip_grad_norm_(w_params, 5.0)
        w_opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i:
            ms.append(1000 * (time.perf_counter() - t0))
            cpu.append(1000 * (time.process_time() - c0))
    return ms, cpu


def upstream_model(folder: str, channels: int, layers: int):
    """quark0/darts's Network; its alphas are made with `.cuda()`, a no-op here on a CPU machine."""
    sys.path.insert(0, folder)
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *a, **k: self  # upstream hard-codes CUDA alphas
    import model_search  # noqa: PLC0415 (upstream's module, from --upstream)

    net = model_search.Network(channels, 10, layers, torch.nn.CrossEntropyLoss())
    return net, list(net.parameters()), net.arch_parameters()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32, help="image side in pixels")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up)")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)"
    )
    ap.add_argument(
        "--upstream", default=None, help="folder with quark0/darts's cnn/model_search.py"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(2, args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (2, args.batch))
    ours = SearchNetwork(darts.OPS, args.channels, args.layers)
    trials = {"ray_nas": (ours, ours.weight_parameters(), [ours.alpha])}
    if args.upstream:
        trials["quark0/darts"] = upstream_model(args.upstream, args.channels, args.layers)
    print(f"C={args.channels} layers={args.layers} B={args.batch} {args.size}x{args.size} "
          f"threads={torch.get_num_threads()} steps={args.steps}")  # fmt: skip
    print(f"{'model':<14}{'ms/step':>10}{'cpu ms/step':>12}{'params M':>10}")
    for name, (model, w, a) in trials.items():
        print_row(name, *time_steps(model, w, a, x, y, args.steps), w)


def print_row(name: str, ms: list[float], cpu: list[float], w_params) -> None:
    """One table row: the medians of wall and CPU ms per step, and the weights in millions."""
    params = sum(p.numel() for p in w_params) / 1e6
    print(
        f"{name:<14}{statistics.median(ms):>10.1f}{statistics.median(cpu):>12.1f}{params:>10.3f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
