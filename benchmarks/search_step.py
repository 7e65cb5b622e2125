"""Time one search step of each algorithm and supernet implementation, side by side.

Run: .venv/bin/python benchmarks/search_step.py --channels 16 --cells 5 --batch 64 --steps 3
     .venv/bin/python benchmarks/search_step.py --algorithm darts_v1 darts_v2 gaea drnas

A step is what `ray_nas.search.loop` does per batch: the weight step (forward mixing with the
algorithm's weights, CE, backward to the weights, grad-norm clip 5, SGD nesterov) on a weight
batch and the algorithm's architecture step (`Algorithm.arch_step`: DARTS-V1 an Adam step,
DARTS-V2 the unrolled finite-difference hypergradient, GAEA the exponentiated-gradient step,
DrNAS a Dirichlet sample and Adam) on an arch batch, in the algorithm's order. Inputs are random
CIFAR-shaped tensors (no data files). With several algorithms the trials are named
`algorithm/impl` and `vs v1` is each trial's step time over darts_v1's on the same impl.
images/s counts the B search-train images of a step (one step per training batch), so an epoch of
N search-train images takes N / (images/s) seconds; each step also runs B search-valid images.

Trials are `--impl` entries: an implementation name, optionally with `+` options:
  bf16     autocast to bfloat16 around the forwards (search.precision: bf16)
  compile  torch.compile the supernet (search.compile: true)
  cg       torch.compile in mode reduce-overhead: CUDA graphs (search.compile_mode: reduce-overhead)
  cl       channels-last memory layout (search.channels_last: true): the model, its activations
           and the inputs (on CPU faster, but its float32 BatchNorm is imprecise: not for CPU)
e.g. `--impl reference fast fast+bf16 fast+bf16+compile`. The ratio column is against the first
trial; `total s` sums the timed steps (`--steps 391`: one CIFAR-10 search epoch at B=64). On CUDA
the peak GPU memory of each trial is printed (what one trial needs on a shared GPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ray_nas.algorithms import NAMES, algorithm_class, arch_first
from ray_nas.config import IMPLS, resolve_search
from ray_nas.search.loop import weight_step
from ray_nas.spaces import nb201
from ray_nas.spaces.nb201.build import build_supernet

OPTIONS = ("bf16", "compile", "cg", "cl")


@dataclass
class Result:
    trial: str
    ms: list[float]
    """wall ms of each timed step"""
    peak_mb: float | None
    """CUDA only: peak memory allocated by the trial (its model, optimizer state and one step), MiB"""
    algorithm: str = "darts_v1"
    impl: str = ""


def parse_trial(text: str) -> tuple[str, set[str]]:
    impl, *opts = text.split("+")
    if impl not in IMPLS:
        raise SystemExit(
            f"--impl {text}: unknown implementation {impl!r} (valid: {', '.join(IMPLS)})"
        )
    unknown = [o for o in opts if o not in OPTIONS]
    if unknown:
        raise SystemExit(
            f"--impl {text}: unknown option {unknown[0]!r} (valid: {', '.join(OPTIONS)})"
        )
    return impl, set(opts)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trial:
    """One implementation (+ options) with its own model, optimizers and input stream."""

    def __init__(
        self, text: str, args: argparse.Namespace, device: torch.device, algorithm: str = "darts_v1"
    ):
        impl, opts = parse_trial(text)
        self.impl_text, self.algorithm = text, algorithm
        self.text = text if args.algorithm == ["darts_v1"] else f"{algorithm}/{text}"
        self.args, self.device = args, device
        torch.manual_seed(0)
        model = build_supernet(
            impl, nb201.OPS, args.channels, args.cells, 10, False, channels_last="cl" in opts
        ).to(device)
        self.fmt = torch.channels_last if "cl" in opts else torch.contiguous_format
        self.model = model
        mode = "reduce-overhead" if "cg" in opts else "default"
        self.forward = torch.compile(model, mode=mode) if opts & {"compile", "cg"} else model
        self.w_params = model.weight_parameters()
        self.w_opt = torch.optim.SGD(
            self.w_params, lr=0.025, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
        self.cfg = resolve_search({"algorithm": algorithm, "impl": impl, "batch_size": args.batch,
                                   "precision": "bf16" if "bf16" in opts else "fp32"})  # fmt: skip
        self.algo = algorithm_class(algorithm)(self.cfg, model, self.w_params, self.w_opt)
        self.bf16 = "bf16" in opts
        self.gen = torch.Generator().manual_seed(0)
        self.ms: list[float] = []

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        b, size = self.args.batch, self.args.size
        x = torch.randn(b, 3, size, size, generator=self.gen)
        y = torch.randint(0, 10, (b,), generator=self.gen)
        return x.to(self.device).contiguous(memory_format=self.fmt), y.to(self.device)

    def loss(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return F.cross_entropy(self.forward(x, weights=weights), y)

    def step(self) -> None:
        """One search step, as ray_nas.search.loop runs it (inputs drawn outside the timed region)."""
        train, arch = self.batch(), self.batch()
        lr = self.cfg.weights.lr
        sync(self.device)
        t0 = time.perf_counter()
        first = arch_first(self.cfg.algorithm, self.cfg.space, self.cfg.step_order)
        if first:
            self.algo.arch_step(self.loss, train, arch, lr)
        weight_step(
            self.forward, self.algo, self.w_opt, self.w_params, self.cfg, self.device, train
        )
        if not first:
            self.algo.arch_step(self.loss, train, arch, lr)
        sync(self.device)
        self.ms.append(1000 * (time.perf_counter() - t0))


def run(args: argparse.Namespace, device: torch.device) -> list[Result]:
    """Build and warm up each trial in turn (its peak memory measured on CUDA), then time the steps
    round-robin, one step of each trial per round, so that load from other processes on a shared
    machine falls on every trial alike."""
    trials, peaks = [], []
    for algorithm, text in [(a, t) for a in args.algorithm for t in args.impl]:
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        trial = Trial(text, args, device, algorithm)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            trial.step()
        if device.type == "cuda":
            peaks.append((torch.cuda.max_memory_allocated(device) - base) / 2**20)
        else:
            peaks.append(None)
        trial.ms.clear()
        trials.append(trial)
    for _ in range(args.steps):
        for trial in trials:
            trial.step()
    return [Result(t.text, t.ms, peak, t.algorithm, t.impl_text) for t, peak in zip(trials, peaks)]


def table(results: list[Result], batch: int) -> str:
    base = statistics.median(results[0].ms)
    v1 = {r.impl: statistics.median(r.ms) for r in results if r.algorithm == "darts_v1"}
    several = len({r.algorithm for r in results}) > 1
    head = f"{'impl':<24} {'ms/step':>10} {'images/s':>10} {'ratio':>7} {'total s':>8}"
    head += f" {'vs v1':>7}" if several else ""
    has_mem = any(r.peak_mb is not None for r in results)
    head += f" {'peak MiB':>9}" if has_mem else ""
    lines = [head, "-" * len(head)]
    for r in results:
        med = statistics.median(r.ms)
        line = f"{r.trial:<24} {med:>10.1f} {1000 * batch / med:>10.1f} {base / med:>6.2f}x {sum(r.ms) / 1000:>8.1f}"
        if several:
            line += f" {med / v1[r.impl]:>6.2f}x" if r.impl in v1 else f" {'-':>7}"
        line += f" {r.peak_mb:>9.0f}" if r.peak_mb is not None else ""
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--channels", type=int, default=16, help="C, channels of the first stage")
    p.add_argument("--cells", type=int, default=5, help="N, search cells per stage")
    p.add_argument("--batch", type=int, default=64, help="B, images per batch")
    p.add_argument("--size", type=int, default=32, help="image side (32 = CIFAR)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument(
        "--steps",
        type=int,
        default=5,
        help="timed steps per trial (391 = a CIFAR-10 search epoch at B=64)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed steps per trial first (>= 1: compile, caches)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    p.add_argument(
        "--impl",
        nargs="+",
        default=["reference", "fast"],
        help="trials: impl[+bf16][+compile|+cg][+cl]",
    )
    p.add_argument(
        "--algorithm", nargs="+", default=["darts_v1"], choices=NAMES,
        help="search algorithms to time (each on every --impl)",
    )  # fmt: skip
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    for trial in args.impl:
        parse_trial(trial)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, {torch.get_num_threads()} threads"
    )
    print(
        f"search step ({', '.join(args.algorithm)}): C={args.channels} N={args.cells} B={args.batch} {args.size}x{args.size}, "
        f"{args.steps} timed steps (median), {name}, torch {torch.__version__}"
    )
    print(
        "images/s = B search-train images per step / step time (each step also runs B search-valid images)"
    )
    print(table(run(args, device), args.batch))


if __name__ == "__main__":
    main()
