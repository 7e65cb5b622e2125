"""The DARTS space's networks: the search network (both cell types mixing every op on 14 edges)
and the evaluation network NetworkCIFAR of one genotype (with DARTS's auxiliary head).

Shapes: images [B, 3, H, W]; the architecture parameter `alpha` [28, K] (rows: the normal
cell's 14 edges, then the reduction cell's, order darts.EDGES; columns: the net's ops, a subset of
darts.OPS in that order). Ops follow DARTS's cnn/operations.py: pools 3x3 padding 1 (avg-pool
excludes padding), skip = identity (FactorizedReduce at stride 2), sep_conv = (ReLU, depthwise,
pointwise, BN) twice, dil_conv = ReLU, depthwise dilation 2, pointwise, BN; in the search network
every BN is non-affine and each pool is followed by a non-affine BN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import ray_nas.spaces.darts.genotype as darts
from ray_nas.spaces.pc_darts import EdgeNormalization, channel_shuffle, node_slices


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int, padding: int, affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise k x k (dilation d), pointwise 1x1, BN."""

    def __init__(
        self, c_in: int, c_out: int, k: int, stride: int, pad: int, dil: int, affine: bool
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, k, stride, pad, dilation=dil, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two DilConv-shaped blocks without dilation; only the first carries the stride."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, pad: int, affine: bool):
        super().__init__(
            DilConv(c_in, c_in, k, stride, pad, 1, affine),
            DilConv(c_in, c_out, k, 1, pad, 1, affine),
        )


class Zero(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halves H and W: two 1x1 stride-2 convolutions, the second shifted by one pixel, concatenated."""

    def __init__(self, c_in: int, c_out: int, affine: bool):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def make_op(name: str, c: int, stride: int, affine: bool, pool_bn: bool = False) -> nn.Module:
    """A c -> c candidate op by DARTS name (stride 2 on a reduction cell's input edges).

    pool_bn: each pool followed by a non-affine BatchNorm (DrNAS DARTS-space operations.py's
    MaxPoolBN / AvgPoolBN); False: quark0/darts's bare pools."""
    if "pool" in name and pool_bn:
        pool = make_op(name, c, stride, affine)
        return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False))
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    kind, k = name[:8], int(name[-1])  # sep_conv_/dil_conv_ + kxk
    if kind == "sep_conv":
        return SepConv(c, c, k, stride, k // 2, affine)
    if kind == "dil_conv":
        return DilConv(c, c, k, stride, k - 1, 2, affine)
    raise ValueError(f"unknown DARTS op {name!r}; valid ops: {', '.join(darts.OPS)}")


def _preprocess(c_pp: int, c_p: int, c: int, reduction_prev: bool, affine: bool):
    """The two cell inputs brought to c channels (input 0 halved if the previous cell reduced)."""
    pre0 = (
        FactorizedReduce(c_pp, c, affine)
        if reduction_prev
        else ReLUConvBN(c_pp, c, 1, 1, 0, affine)
    )
    return pre0, ReLUConvBN(c_p, c, 1, 1, 0, affine)


def _stem(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the reduction cells: layers//3 and 2*layers//3 (8 layers: 2 and 5)."""
    return layers // 3, 2 * layers // 3


# ------------------------------------------------------------------------------------------
# search network


class MixedOp(nn.Module):
    """sum_o w_o * op_o(x) over the candidate ops of one edge.

    With `partial` k > 1 (PC-DARTS's partial channel connections): the ops are built on c // k
    channels and mix only the first c // k channels of x; the other channels bypass them (max-
    pooled 2x2 on a stride-2 edge), the two parts are concatenated and channel-shuffled with k
    groups (yuhuixu1993/PC-DARTS model_search.py MixedOp)."""

    def __init__(self, ops: Sequence[str], c: int, stride: int, partial: int = 1):
        super().__init__()
        self.k = partial
        c_op = c // partial
        mods = []
        for o in ops:
            op = make_op(o, c_op, stride, affine=False)
            mods.append(
                nn.Sequential(op, nn.BatchNorm2d(c_op, affine=False)) if "pool" in o else op
            )
        self.ops = nn.ModuleList(mods)
        if partial > 1 and stride > 1:
            self.mp = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W]; w [K] the edge's op weights."""
        if self.k == 1:
            return sum(wk * op(x) for op, wk in zip(self.ops, w))
        c_op = x.shape[1] // self.k
        xa, xb = x[:, :c_op], x[:, c_op:]
        y = sum(wk * op(xa) for op, wk in zip(self.ops, w))
        if y.shape[2] != x.shape[2]:
            xb = self.mp(xb)
        return channel_shuffle(torch.cat([y, xb], dim=1), self.k)


class SearchCell(nn.Module):
    """Two inputs, 4 nodes, 14 mixed edges; output = the 4 nodes concatenated (4c channels)."""

    def __init__(self, ops, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 partial: int = 1):  # fmt: skip
        super().__init__()
        self.reduction = reduction
        self.pre0, self.pre1 = _preprocess(c_pp, c_p, c, reduction_prev, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(ops, c, 2 if reduction and j < 2 else 1, partial) for _, j in darts.EDGE_PAIRS
        )

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: torch.Tensor,
        edge_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """weights [14, K] this cell type's op distribution, rows darts.EDGES; edge_weights [14]
        (edge normalisation) multiply each edge's output, or None."""
        states = [self.pre0(s0), self.pre1(s1)]
        e = 0
        for _ in range(darts.STEPS):
            n_in = len(states)
            if edge_weights is None:
                terms = (self.edges[e + j](h, weights[e + j]) for j, h in enumerate(states))
            else:
                terms = (
                    edge_weights[e + j] * self.edges[e + j](h, weights[e + j])
                    for j, h in enumerate(states)
                )
            states.append(sum(terms))
            e += n_in
        return torch.cat(states[2:], dim=1)


class SearchNetwork(EdgeNormalization, nn.Module):
    """DARTS's search network: stem 3c, `layers` cells (reductions at layers//3, 2*layers//3
    double the channels), global average pool, linear. All normal cells mix with the rows 0..13 of
    the op distribution, all reduction cells with rows 14..27.

    PC-DARTS's options: `partial_channels` k > 1 (MixedOp on 1/k of the channels, channel
    shuffle); `edge_normalization` adds `betas` [28] (normal edges, then reduce; init 1e-3 randn
    as upstream), further architecture parameters (`connection_parameters()`): each edge's output
    is multiplied by its node-wise softmax (`edge_mix` "softmax", PC-DARTS) or by the raw value
    (`edge_mix` "simplex", GAEA+PC-DARTS, whose algorithm keeps each node's betas on the simplex).
    """

    cell_types = darts.CELL_TYPES

    def __init__(
        self, ops: Sequence[str], channels: int = 16, layers: int = 8, num_classes: int = 10,
        partial_channels: int = 1, edge_normalization: bool = False,
    ):  # fmt: skip
        super().__init__()
        self.op_names = darts.check_ops(ops)
        if tuple(ops) != self.op_names:
            raise ValueError(
                f"DARTS ops must be in DARTS's order {self.op_names}, got {tuple(ops)}"
            )
        if partial_channels < 1 or channels % partial_channels:
            raise ValueError(
                f"partial_channels must divide channels ({channels}), got {partial_channels}"
            )
        c_cur = 3 * channels
        self.stem = _stem(c_cur)
        c_pp, c_p, c_cur = c_cur, c_cur, channels
        cells, reduction_prev = [], False
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            c_cur *= 2 if reduction else 1
            cells.append(SearchCell(self.op_names, c_pp, c_p, c_cur, reduction, reduction_prev,
                                    partial_channels))  # fmt: skip
            reduction_prev = reduction
            c_pp, c_p = c_p, darts.STEPS * c_cur
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(c_p, num_classes)
        n = len(darts.EDGES)
        self.alpha = nn.Parameter(1e-3 * torch.randn(2 * n, len(self.op_names)))
        self.edge_mix = "softmax"
        #: (start, end) of each node's incoming edges in the flat betas: normal nodes, then reduce
        self.edge_slices = [(a + o, b + o) for o in (0, n) for a, b in node_slices(darts.STEPS)]
        if edge_normalization:  # drawn after alpha: without the option the RNG stream is as before
            self.betas = nn.Parameter(1e-3 * torch.randn(2 * n))

    def forward(
        self,
        x: torch.Tensor,
        alpha: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, 3, H, W] -> logits [B, classes]. `weights` [28, K]: the op distribution to mix
        with (a search algorithm's); without it softmax(alpha), `alpha` defaulting to self.alpha.
        With edge normalisation the edges are weighted by `connection_weights()`."""
        w = (
            weights
            if weights is not None
            else F.softmax(self.alpha if alpha is None else alpha, -1)
        )
        n = len(darts.EDGES)
        w_normal, w_reduce = w[:n], w[n:]
        ew = self.connection_weights() if hasattr(self, "betas") else None
        e_normal, e_reduce = (None, None) if ew is None else (ew[:n], ew[n:])
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            if cell.reduction:
                s0, s1 = s1, cell(s0, s1, w_reduce, e_reduce)
            else:
                s0, s1 = s1, cell(s0, s1, w_normal, e_normal)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1))

    def genotype(self, weights: torch.Tensor | None = None) -> darts.Genotype:
        """DARTS's rule on the op distribution [28, K] (default softmax(alpha)); with edge
        normalisation on W = weights * edge weight per row (PC-DARTS's genotype())."""
        w = F.softmax(self.alpha.detach(), -1) if weights is None else weights.detach()
        ew = None
        if hasattr(self, "betas"):
            ew = self.connection_weights().detach().float().cpu().numpy()
        return darts.derive_genotype(w.float().cpu().numpy(), self.op_names, ew)

    def arch(self, weights: torch.Tensor | None = None) -> str:
        return self.genotype(weights).text()


# ------------------------------------------------------------------------------------------
# evaluation network


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    """Zero whole samples with probability p and rescale the rest by 1/(1-p) (training only)."""
    keep = 1.0 - p
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class EvalCell(nn.Module):
    """A cell of one genotype: per node two chosen ops on two chosen inputs, summed."""

    def __init__(
        self, cell: darts.Cell, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
        pool_bn: bool = False,
    ):  # fmt: skip
        super().__init__()
        self.reduction = reduction
        self.pre0, self.pre1 = _preprocess(c_pp, c_p, c, reduction_prev, affine=True)
        self.inputs = [j for _, j in cell]
        self.ops = nn.ModuleList(
            make_op(op, c, 2 if reduction and j < 2 else 1, affine=True, pool_bn=pool_bn)
            for op, j in cell
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(darts.STEPS):
            s = 0
            for k in (2 * i, 2 * i + 1):
                h = self.ops[k](states[self.inputs[k]])
                if self.training and drop_prob > 0 and not isinstance(self.ops[k], nn.Identity):
                    h = drop_path(h, drop_prob)
                s = s + h
            states.append(s)
        return torch.cat([states[i] for i in darts.CONCAT], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS's CIFAR auxiliary classifier on the 8x8 map after cell 2*layers//3."""

    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class NetworkCIFAR(nn.Module):
    """The evaluation network of one genotype (DARTS cnn/model.py layout): stem 3c, `layers`
    cells, reductions at layers//3 and 2*layers//3, global pool, linear; the auxiliary head after
    cell 2*layers//3 (training only). `drop_path_prob` is set by the trainer each epoch.
    pool_bn: DrNAS's evaluation operations (each pool followed by a non-affine BatchNorm; same
    parameter count, 3 more buffers per pool op); False: quark0/darts's bare pools."""

    def __init__(self, genotype: darts.Genotype, channels: int = 36, layers: int = 20,
                 num_classes: int = 10, auxiliary: bool = True, pool_bn: bool = False):  # fmt: skip
        super().__init__()
        self.drop_path_prob = 0.0
        c_cur = 3 * channels
        self.stem = _stem(c_cur)
        c_pp, c_p, c_cur = c_cur, c_cur, channels
        self.aux_after = reduction_layers(layers)[1]
        cells, reduction_prev, c_aux = [], False, c_p
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            c_cur *= 2 if reduction else 1
            cell = genotype.reduce if reduction else genotype.normal
            cells.append(EvalCell(cell, c_pp, c_p, c_cur, reduction, reduction_prev, pool_bn))
            reduction_prev = reduction
            c_pp, c_p = c_p, len(darts.CONCAT) * c_cur
            if i == self.aux_after:
                c_aux = c_p
        self.cells = nn.ModuleList(cells)
        self.auxiliary = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, 3, H, W] -> (logits [B, classes], auxiliary logits [B, classes] or None)."""
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_after and self.auxiliary is not None and self.training:
                aux = self.auxiliary(s1)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(s1, 1), 1)), aux


def count_params_m(net: nn.Module) -> float:
    """Parameters in millions, the auxiliary head excluded (as DARTS counts them)."""
    return sum(p.numel() for n, p in net.named_parameters() if "auxiliary" not in n) / 1e6
