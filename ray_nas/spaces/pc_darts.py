"""PC-DARTS's supernet options, shared by the spaces that offer them (nb201, darts).

Partial channel connections (`search.partial_channels` k > 1): an edge's ops see 1/k of the
channels, the rest bypass them, and the two parts are channel-shuffled (`channel_shuffle`).
Edge normalisation (`search.edge_normalization`): one weight `beta` per edge, a softmax over each
node's incoming edges (`edge_softmax`), multiplying each edge's output; the betas are the
supernet's connection parameters (stored as connection rows, moved with alpha by the algorithm).
yuhuixu1993/PC-DARTS @ b74702f, model_search.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, C, H, W] viewed as [B, groups, C/groups, H, W], the two channel axes transposed,
    flattened back (channel g*(C/groups)+i moves to i*groups+g)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


def node_slices(steps: int, first: int = 2) -> list[tuple[int, int]]:
    """(start, end) of each node's incoming-edge rows: node i of a cell with `first` inputs has
    first+i inputs (DARTS: [0:2], [2:5], [5:9], [9:14]; NAS-Bench-201, first=1: [0:1], [1:3],
    [3:6])."""
    out, start = [], 0
    for i in range(steps):
        out.append((start, start + first + i))
        start += first + i
    return out


def edge_softmax(betas: torch.Tensor, slices: Sequence[tuple[int, int]]) -> torch.Tensor:
    """A softmax over each node's incoming-edge betas, [E] -> [E] (a node with one edge gets 1)."""
    return torch.cat([F.softmax(betas[a:b], dim=-1) for a, b in slices])


class EdgeNormalization:
    """The architecture parameters of a supernet with optional PC-DARTS betas: `alpha` [R, K]
    always, `betas` [E] with edge normalisation. The supernet sets `edge_slices` (each node's
    incoming edges in the flat betas, every cell type in row order) and `edge_mix` ("softmax",
    PC-DARTS; "simplex": the betas are the weights themselves, GAEA+PC-DARTS)."""

    alpha: nn.Parameter
    edge_slices: Sequence[tuple[int, int]]
    edge_mix: str

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the architecture parameters (alpha, betas)."""
        return [p for name, p in self.named_parameters() if name not in ("alpha", "betas")]

    def connection_parameters(self) -> list[nn.Parameter]:
        """[betas] with edge normalisation, else []."""
        return [self.betas] if hasattr(self, "betas") else []

    def connection_alpha(self) -> torch.Tensor:
        """[C] the raw betas (C = the edges of every cell type with edge normalisation, else 0)."""
        return self.betas if hasattr(self, "betas") else self.alpha.new_zeros(0)

    def connection_weights(self) -> torch.Tensor:
        """[C] the edge weights the cells multiply with: per cell type and node, softmax of the
        node's betas (edge_mix "softmax") or the betas themselves ("simplex")."""
        if not hasattr(self, "betas"):
            return self.alpha.new_zeros(0)
        if self.edge_mix == "simplex":
            return self.betas
        return edge_softmax(self.betas, self.edge_slices)
