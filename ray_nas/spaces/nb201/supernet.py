"""The NAS-Bench-201 supernet (reference implementation: one module per op per edge) and the
discrete network used for retraining.

Shapes: images [B, 3, H, W] float; alpha [edges=6, ops=K] logits, order nb201.EDGES x cfg.ops.
The structure follows the benchmark's reference search model: stem conv3x3+BN, N search cells at
C, a ResNet basic block (stride 2) to 2C, N cells, a block to 4C, N cells, BN+ReLU, global average
pool, linear. One alpha tensor is shared by all 3N cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import ray_nas.spaces.nb201.names as nb201
from ray_nas.spaces.pc_darts import EdgeNormalization, channel_shuffle, node_slices


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(k, bias = not affine) -> BatchNorm(affine)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, affine: bool, track: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=not affine),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track),
        )


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, c: int, affine: bool, track: bool) -> nn.Module:
    """A stride-1, c->c candidate op by NAS-Bench-201 name."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1, affine, track)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1, affine, track)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown op {name!r}; valid ops: {', '.join(nb201.OPS)}")


class ResNetBlock(nn.Module):
    """The benchmark's reduction block: two ReLUConvBN 3x3 (first stride 2) + avgpool/1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, affine=True, track=True)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, affine=True, track=True)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


#: (start, end) of each node's incoming-edge rows in nb201.EDGES: node i has i inputs
NODE_SLICES: tuple[tuple[int, int], ...] = tuple(node_slices(3, first=1))


class MixedOp(nn.Module):
    """sum_o w_o * op_o(x) over the candidate ops of one edge.

    With `partial` k > 1 (PC-DARTS's partial channel connections, as DrNAS's
    NAS201SearchCell_PartialChannel): the ops are built on c // k channels and mix the first
    c // k channels of x; the rest bypass them; the two parts are concatenated and channel-
    shuffled with k groups."""

    def __init__(self, ops: Sequence[str], c: int, affine: bool, track: bool, partial: int = 1):
        super().__init__()
        self.k = partial
        self.ops = nn.ModuleList(make_op(o, c // partial, affine, track) for o in ops)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W]; w [K] op weights (softmax of the edge's alpha)."""
        if self.k == 1:
            return sum(op(x) * wk for op, wk in zip(self.ops, w))
        c_op = x.shape[1] // self.k
        y = sum(op(x[:, :c_op]) * wk for op, wk in zip(self.ops, w))
        return channel_shuffle(torch.cat([y, x[:, c_op:]], dim=1), self.k)


class SearchCell(nn.Module):
    """4 nodes; node i = sum_{j<i} MixedOp(i<-j)(node j); output node 3. With edge weights [E]
    (edge normalisation) each edge's output is multiplied by its weight."""

    mixes_ops = True  # forward(x, weights): the supernet hands it the op distribution

    def __init__(self, ops: Sequence[str], c: int, track: bool, partial: int = 1):
        super().__init__()
        self.edges = nn.ModuleList(
            MixedOp(ops, c, affine=False, track=track, partial=partial) for _ in nb201.EDGES
        )

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, edge_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """weights [E, K]: the op distribution per edge, order nb201.EDGES; edge_weights [E]."""
        nodes = [x]
        for i in range(1, nb201.NODES):
            nodes.append(
                sum(
                    self.edges[e](nodes[j], weights[e])
                    if edge_weights is None
                    else edge_weights[e] * self.edges[e](nodes[j], weights[e])
                    for e, (t, j) in enumerate(nb201.EDGE_PAIRS)
                    if t == i
                )
            )
        return nodes[-1]


def _backbone(c: int, n: int, make_cell) -> tuple[nn.Module, nn.ModuleList, int]:
    stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
    layers: list[nn.Module] = []
    c_prev = c
    for stage, c_cur in enumerate((c, 2 * c, 4 * c)):
        if stage > 0:
            layers.append(ResNetBlock(c_prev, c_cur))
        layers.extend(make_cell(c_cur) for _ in range(n))
        c_prev = c_cur
    return stem, nn.ModuleList(layers), c_prev


class Supernet(EdgeNormalization, nn.Module):
    """Supernet on the NB201 cell space with one shared architecture parameter alpha [E, K].

    alpha is the search algorithm's raw parameter (DARTS logits, GAEA's simplex point, DrNAS's
    theta); the algorithm initialises it and hands forward its mixing weights."""

    def __init__(
        self,
        ops: Sequence[str],
        channels: int = 16,
        cells: int = 5,
        num_classes: int = 10,
        track_running_stats: bool = False,
        partial_channels: int = 1,
        edge_normalization: bool = False,
    ):
        super().__init__()
        if partial_channels < 1 or channels % partial_channels:
            raise ValueError(
                f"partial_channels must divide channels ({channels}), got {partial_channels}"
            )
        self.op_names = tuple(ops)
        self.stem, self.layers, c_last = _backbone(
            channels,
            cells,
            lambda c: SearchCell(self.op_names, c, track_running_stats, partial_channels),
        )
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_last), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(c_last, num_classes)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(nb201.EDGES), len(self.op_names)))
        self.edge_mix = "softmax"
        self.edge_slices = NODE_SLICES  # each node's incoming edges in the flat betas
        if edge_normalization:  # drawn after alpha: without the option the RNG stream is as before
            self.betas = nn.Parameter(1e-3 * torch.randn(len(nb201.EDGES)))

    def op_weights(self) -> torch.Tensor:
        """[E, K] the distribution the cells mix with: softmax(alpha) per edge."""
        return F.softmax(self.alpha, dim=-1)

    def forward(
        self,
        x: torch.Tensor,
        alpha: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, 3, H, W] -> logits [B, classes].

        `weights` [E, K]: the op distribution the cells mix with, as the search algorithm makes
        it (ray_nas.algorithms); without it softmax(alpha), `alpha` defaulting to self.alpha.
        With edge normalisation the edges are weighted by `connection_weights()`.
        """
        w = (
            weights
            if weights is not None
            else F.softmax(self.alpha if alpha is None else alpha, -1)
        )
        ew = self.connection_weights() if hasattr(self, "betas") else None
        h = self.stem(x)
        for layer in self.layers:
            if not getattr(layer, "mixes_ops", False):
                h = layer(h)
            else:
                h = layer(h, w) if ew is None else layer(h, w, ew)
        h = self.lastact(h)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))

    def genotype(self) -> tuple[str, ...]:
        """Per edge the argmax op over all candidate ops (`none` included), order nb201.EDGES.

        argmax of the raw alpha: equal to the argmax of every algorithm's distribution (softmax,
        identity, and the Dirichlet mean are monotone per edge)."""
        idx = self.alpha.detach().argmax(dim=-1).tolist()
        return tuple(self.op_names[i] for i in idx)

    def arch(self) -> str:
        return nb201.arch_string(self.genotype())


class DiscreteCell(nn.Module):
    """A fixed NB201 cell: one op per edge (affine BN, running stats, as the benchmark trains)."""

    def __init__(self, genotype: Sequence[str], c: int):
        super().__init__()
        self.ops = nn.ModuleList(make_op(o, c, affine=True, track=True) for o in genotype)
        self.keep = [o != "none" for o in genotype]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for i in range(1, nb201.NODES):
            terms = [
                self.ops[e](nodes[j])
                for e, (t, j) in enumerate(nb201.EDGE_PAIRS)
                if t == i and self.keep[e]
            ]
            nodes.append(sum(terms) if terms else torch.zeros_like(x))
        return nodes[-1]


class DiscreteNet(nn.Module):
    """The NB201 network of one arch string, for retraining from scratch."""

    def __init__(self, arch: str, channels: int = 16, cells: int = 5, num_classes: int = 10):
        super().__init__()
        genotype = nb201.parse_arch(arch)
        self.stem, self.layers, c_last = _backbone(
            channels, cells, lambda c: DiscreteCell(genotype, c)
        )
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_last), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(c_last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for layer in self.layers:
            h = layer(h)
        h = self.lastact(h)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))
