"""The NAS-Bench-201 supernet of a search config: the reference or the fast implementation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ray_nas.spaces.nb201.fast import FastSupernet
from ray_nas.spaces.nb201.supernet import Supernet


def build_supernet(
    impl: str,
    ops: Sequence[str],
    channels: int,
    cells: int,
    num_classes: int,
    track: bool,
    channels_last: bool = False,
    partial_channels: int = 1,
    edge_normalization: bool = False,
) -> nn.Module:
    """The supernet of `search.impl`: `reference` (supernet.py, per-op modules) or `fast`
    (fast.py: the same function, work shared across edges and ops), in the memory
    layout of `search.channels_last` (its convolutions' weights, hence their outputs). PC-DARTS's
    `partial_channels` and `edge_normalization` are options of the reference implementation."""
    pc = partial_channels > 1 or edge_normalization
    if impl == "reference":
        net = Supernet(ops, channels, cells, num_classes, track, partial_channels,
                       edge_normalization)  # fmt: skip
        return net.to(memory_format=torch.channels_last) if channels_last else net
    if impl == "fast" and pc:
        raise ValueError(
            "search.impl: fast has no PC-DARTS options (partial_channels > 1, "
            "edge_normalization); use impl: reference"
        )
    if impl == "fast":
        return FastSupernet(ops, channels, cells, num_classes, track, channels_last)
    raise ValueError(f"search.impl: unknown implementation {impl!r}")
