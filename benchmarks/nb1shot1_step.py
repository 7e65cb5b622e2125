"""Time one first-order DARTS search step of the NAS-Bench-1Shot1 supernet on each space.

Run: .venv/bin/python benchmarks/nb1shot1_step.py --channels 16 --layers 9 --batch 96 --steps 3 --threads 1
     [--device cuda] [--spaces nb1shot1_s1 nb1shot1_s3]

The defaults are the 1Shot1 search defaults (automl/nasbench-1shot1 train_search.py: C=16, 9 cells, batch 96). A step, as
upstream's train_search.py without `--unrolled`: an architecture step (forward, CE, backward to
the op alpha and the input/output connection weights, Adam 3e-4 betas (0.5, 0.999) wd 1e-3) on
one random batch, then a weight step (forward, CE, backward to the weights, grad-norm clip 5, SGD
0.025 momentum 0.9 wd 3e-4) on another. Inputs are random CIFAR-shaped tensors (no data files).
The first step is a warm-up and not timed; the medians of the timed steps' wall and process CPU
milliseconds are printed (with --threads 1 on CPU the CPU time is the compute itself).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from darts_space_step import print_row, time_steps  # noqa: E402 (the DARTS-space benchmark's step)

from ray_nas.spaces.nb1shot1 import SPACES  # noqa: E402
from ray_nas.spaces.nb1shot1.supernet import Supernet  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--layers", type=int, default=9)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--size", type=int, default=32, help="image side in pixels")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(2, args.batch, 3, args.size, args.size, device=dev)
    y = torch.randint(0, 10, (2, args.batch), device=dev)
    print(f"C={args.channels} layers={args.layers} B={args.batch} {args.size}x{args.size} "
          f"device={dev.type} threads={torch.get_num_threads()} steps={args.steps}")  # fmt: skip
    print(f"{'space':<14}{'ms/step':>10}{'cpu ms/step':>12}{'params M':>10}")
    for name in args.spaces:
        net = Supernet(SPACES[name], args.channels, args.layers).to(dev)
        w, a = net.weight_parameters(), [net.alpha, *net.connection_parameters()]
        print_row(name, *time_steps(net, w, a, x, y, args.steps), w)


if __name__ == "__main__":
    main()
