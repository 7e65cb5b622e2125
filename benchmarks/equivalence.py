"""How far float32 results of each impl and memory layout are from the float64 truth, on one device.

Run: .venv/bin/python benchmarks/equivalence.py --device cuda --channels 16 --cells 5 --batch 64

For each layout (NCHW, and channels-last = search.channels_last) it builds the reference and the
fast supernet from one seed with random alphas, runs one forward/backward on the same random
batch in float32, and prints the relative error (2-norm of the difference / 2-norm of the truth)
of the logits and of the alpha gradient against the reference computed in float64 on the same
device (NCHW). The float32 reference's own error is the yardstick: a layout whose fast error is
far above it (channels-last on CPU: torch's CPU channels-last BatchNorm sums in float32
sequentially) should not be the default there.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from ray_nas.spaces import nb201
from ray_nas.spaces.nb201.build import build_supernet


def run(
    impl: str, channels_last: bool, dtype, args, x, y, alpha
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, alpha gradient) of one forward/backward, in float64 for comparison."""
    torch.manual_seed(0)
    net = build_supernet(impl, nb201.OPS, args.channels, args.cells, 10, False, channels_last)
    net = net.to(args.device, dtype)
    with torch.no_grad():
        net.alpha.copy_(alpha)
    logits = net(x.to(dtype))
    F.cross_entropy(logits, y).backward()
    return logits.detach().double(), net.alpha.grad.double()


def rel(a: torch.Tensor, truth: torch.Tensor) -> float:
    return ((a - truth).norm() / truth.norm()).item()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--seeds", type=int, default=3, help="batches (and alphas) to try")
    args = p.parse_args(argv)
    print(
        f"float32 relative error against the float64 reference: C={args.channels} N={args.cells} "
        f"B={args.batch} {args.size}x{args.size}, {args.device}, max over {args.seeds} batches"
    )
    head = f"{'layout':<14} {'impl':<10} {'logits':>9} {'alpha grad':>11}"
    print(head + "\n" + "-" * len(head))
    worst: dict[tuple[str, str], list[float]] = {}
    for seed in range(args.seeds):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(args.device)
        y = torch.randint(0, 10, (args.batch,), generator=g).to(args.device)
        alpha = torch.randn(len(nb201.EDGES), len(nb201.OPS), generator=g).to(args.device)
        truth = run("reference", False, torch.float64, args, x, y, alpha)
        for layout, cl in (("nchw", False), ("channels-last", True)):
            for impl in ("reference", "fast"):
                got = run(impl, cl, torch.float32, args, x, y, alpha)
                errs = [rel(a, t) for a, t in zip(got, truth)]
                prev = worst.get((layout, impl), [0.0, 0.0])
                worst[(layout, impl)] = [max(a, b) for a, b in zip(prev, errs)]
    for (layout, impl), (e_logits, e_alpha) in worst.items():
        print(f"{layout:<14} {impl:<10} {e_logits:>9.1e} {e_alpha:>11.1e}")


if __name__ == "__main__":
    main()
