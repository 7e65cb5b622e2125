"""The NAS-Bench-1Shot1 supernet (automl/nasbench-1shot1 `optimizers/darts/model_search.py`),
one network for the three spaces.

Shapes: images [B, 3, H, W]; `alpha` [steps, 3] the op parameter (rows: choice blocks v1..,
columns `nb1shot1.SPACE_OPS`); the connection parameters `alphas_output` [1, steps+1] (index =
source vertex: 0 the cell input, b the choice block b) and `alphas_inputs[i]` [1, v] for the i-th
vertex v of `space.choice_vertices` (index = parent vertex). One set for all cells.

Network: stem ConvBnRelu 3x3 (3 -> C); `layers` cells (default 9: 3 stacks of 3); before cells
layers//3 and 2*layers//3 a 2x2 max-pool (stride 2, padding 1) and the cell channels double; then
ReLU-Conv1x1-BN (non-affine) to the last cell's C, global average pool, linear.

Cell at C channels, input s0 (C_prev channels from the stem, steps*C_prev from a cell): choice
block b (vertex b) sums [its own 1x1 ConvBnRelu projection of s0 (-> C), block 1, ..., block
b-1], each scaled by softmax(alphas_inputs) of vertex b when b has a parent choice (others sum
unweighted), then mixes the 3 ops on that sum with its row of the op distribution. Output =
w_0 * (a 1x1 ConvBnRelu projection of s0 to steps*C) + concat_b(w_b * block b), w =
softmax(alphas_output). Ops: maxpool3x3 (stride 1, padding 1), conv3x3-bn-relu, conv1x1-bn-relu
(Conv, BN, ReLU; upstream has no extra BN after the pool).

Options (each an upstream variant of this supernet, nasbench-1shot1 `optimizers/*/model_search.py`):
- `partial_channels` k > 1 (PC-DARTS, `optimizers/pc_darts`): each choice block's ops see the
  first C/k channels of its input, the rest bypass them, and the two parts are channel-shuffled
  in k groups (upstream hard-codes k = 4);
- per-cell architecture weights (GDAS, `optimizers/gdas`): `forward(x, weights=f)` with a callable
  f() -> (op weights [steps, 3], output weights [steps+1], {vertex: input weights [vertex]})
  called once per cell, in cell order, so each cell mixes its own draw of the op AND connection
  weights (`cell_sampler` builds f from two sampling maps).

BatchNorm momentum: upstream passes NAS-Bench-101's TensorFlow decay 0.997 to
PyTorch's `momentum`, where it means running = 0.003 * running + 0.997 * batch, i.e. the running
statistics follow the last training batch. We keep that (`BN_MOMENTUM`), as upstream ran it: the
search's evaluation forwards (eval mode) then use nearly the last batch's statistics, which suit a
supernet whose weights move every step; the TF meaning (PyTorch 0.003) would lag hundreds of
steps behind them. BN layers are affine and track running statistics, as upstream
(`search.track_running_stats` is NAS-Bench-201's key and is not read here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ray_nas.spaces.nb1shot1.ops import SPACE_OPS
from ray_nas.spaces.nb101 import CONV1X1, CONV3X3, MAXPOOL3X3
from ray_nas.spaces.pc_darts import channel_shuffle

if TYPE_CHECKING:
    from ray_nas.spaces.nb1shot1.unit import NB1Shot1Space

#: PyTorch BatchNorm momentum of ConvBnRelu: upstream's 0.997 (see the module docstring)
BN_MOMENTUM = 0.997
BN_EPSILON = 1e-5
#: names of the connection parameters in the state_dict (prefixes); the op parameter is `alpha`
ARCH_PREFIXES = ("alpha", "alphas_output", "alphas_inputs.")


class ConvBnRelu(nn.Sequential):
    """Conv k x k (no bias, stride 1, 'same' padding) -> BN (affine, `BN_MOMENTUM`) -> ReLU."""

    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, k, stride=1, padding=k // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=True, momentum=BN_MOMENTUM, eps=BN_EPSILON),
            nn.ReLU(inplace=False),
        )


def make_op(name: str, c: int) -> nn.Module:
    """A c -> c candidate op by NAS-Bench-101 name."""
    if name == MAXPOOL3X3:
        return nn.MaxPool2d(3, stride=1, padding=1)
    if name == CONV3X3:
        return ConvBnRelu(c, c, 3)
    if name == CONV1X1:
        return ConvBnRelu(c, c, 1)
    raise ValueError(f"unknown NAS-Bench-1Shot1 op {name!r}; valid ops: {', '.join(SPACE_OPS)}")


class MixedOp(nn.Module):
    """sum_o w_o * op_o(x) over the 3 ops of one choice block; with partial_channels k > 1 the ops
    run on the first c/k channels, concatenated with the other channels, channel-shuffled."""

    def __init__(self, c: int, partial_channels: int = 1):
        super().__init__()
        self.k = partial_channels
        self.ops = nn.ModuleList(make_op(o, c // partial_channels) for o in SPACE_OPS)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W]; w [3] the block's op weights."""
        if self.k == 1:
            return sum(wk * op(x) for op, wk in zip(self.ops, w))
        part = x.shape[1] // self.k
        mixed = sum(wk * op(x[:, :part]) for op, wk in zip(self.ops, w))
        return channel_shuffle(torch.cat([mixed, x[:, part:]], dim=1), self.k)


class SearchCell(nn.Module):
    """One cell: `steps` choice blocks with their input projections, and the output projection."""

    def __init__(self, space: NB1Shot1Space, c_in: int, c: int, partial_channels: int = 1):
        super().__init__()
        self.steps = space.steps
        self.weighted = set(space.choice_vertices)
        self.projections = nn.ModuleList(ConvBnRelu(c_in, c, 1) for _ in range(self.steps))
        self.out_projection = ConvBnRelu(c_in, c * self.steps, 1)
        self.blocks = nn.ModuleList(MixedOp(c, partial_channels) for _ in range(self.steps))

    def forward(
        self,
        s0: torch.Tensor,
        w_ops: torch.Tensor,
        w_out: torch.Tensor,
        w_in: dict[int, torch.Tensor],
    ) -> torch.Tensor:
        """s0 [B, c_in, H, W] -> [B, steps * c, H, W]. w_ops [steps, 3] op weights; w_out
        [steps+1] output weights; w_in: vertex -> [vertex] input weights (choice vertices)."""
        states: list[torch.Tensor] = []
        for b in range(self.steps):
            inputs = [self.projections[b](s0), *states]
            if b + 1 in self.weighted:
                inputs = [w * t for w, t in zip(w_in[b + 1], inputs)]
            states.append(self.blocks[b](sum(inputs), w_ops[b]))
        concat = torch.cat([w_out[b + 1] * s for b, s in enumerate(states)], dim=1)
        return w_out[0] * self.out_projection(s0) + concat


def downsample_layers(layers: int) -> tuple[int, int]:
    """Cells preceded by the max-pool and channel doubling: layers//3, 2*layers//3 (9: 3, 6)."""
    return layers // 3, 2 * layers // 3


class Supernet(nn.Module):
    """The 1Shot1 search network of one space (module docstring). Architecture parameters:
    `alpha` [steps, 3] (the op rows every algorithm and criterion reads), `alphas_output` and
    `alphas_inputs` (the connection weights: always softmaxed, moved by the architecture optimiser
    next to alpha; `connection_parameters()`)."""

    def __init__(
        self,
        space: NB1Shot1Space,
        channels: int = 16,
        layers: int = 9,
        num_classes: int = 10,
        partial_channels: int = 1,
    ):
        super().__init__()
        if partial_channels < 1 or channels % partial_channels:
            raise ValueError(
                f"partial_channels must divide channels ({channels}), got {partial_channels}"
            )
        self.space, self.op_names = space, SPACE_OPS
        self.stem = ConvBnRelu(3, channels, 3)
        cells, c_prev, c = [], channels, channels
        for i in range(layers):
            c *= 2 if i in downsample_layers(layers) else 1
            c_in = c_prev if i == 0 else c_prev * space.steps
            cells.append(SearchCell(space, c_in, c, partial_channels))
            c_prev = c
        self.cells = nn.ModuleList(cells)
        self.pool_before = set(downsample_layers(layers))
        self.postprocess = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c * space.steps, c, 1, bias=False),
            nn.BatchNorm2d(c, affine=False),
        )
        self.classifier = nn.Linear(c, num_classes)
        self.alpha = nn.Parameter(1e-3 * torch.randn(space.steps, len(SPACE_OPS)))
        self.alphas_output = nn.Parameter(1e-3 * torch.randn(1, space.steps + 1))
        self.alphas_inputs = nn.ParameterList(
            nn.Parameter(1e-3 * torch.randn(1, v)) for v in space.choice_vertices
        )

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the architecture parameters (alpha and the connections)."""
        return [p for n, p in self.named_parameters() if not n.startswith(ARCH_PREFIXES)]

    def connection_parameters(self) -> list[nn.Parameter]:
        """The raw connection parameters, `space.connection_groups` order: output, then inputs."""
        return [self.alphas_output, *self.alphas_inputs]

    def connection_alpha(self) -> torch.Tensor:
        """[C] the raw connection parameters, flat, `space.connection_rows` order."""
        return torch.cat([p.reshape(-1) for p in self.connection_parameters()])

    def connection_weights(self) -> torch.Tensor:
        """[C] softmax of each connection vector, flat, `space.connection_rows` order."""
        return torch.cat([F.softmax(p, dim=-1).reshape(-1) for p in self.connection_parameters()])

    def cell_sampler(
        self,
        sample_ops: Callable[[torch.Tensor], torch.Tensor],
        sample_connections: Callable[[torch.Tensor], torch.Tensor],
        detach: bool = False,
    ) -> Callable[[], tuple]:
        """The per-cell `weights` option: f() -> (sample_ops(alpha) [steps, 3],
        sample_connections(alphas_output)[0], {v: sample_connections(alphas_inputs[i])[0]}),
        drawn in that order (upstream GDAS's: ops, output, then each input vector). detach: of
        the raw parameters (a weight step, whose backward reaches only the weights)."""

        def raw(p: torch.Tensor) -> torch.Tensor:
            return p.detach() if detach else p

        def draw() -> tuple:
            w = sample_ops(raw(self.alpha))
            w_out = sample_connections(raw(self.alphas_output))[0]
            w_in = {
                v: sample_connections(raw(p))[0]
                for v, p in zip(self.space.choice_vertices, self.alphas_inputs)
            }
            return w, w_out, w_in

        return draw

    def forward(
        self,
        x: torch.Tensor,
        alpha: torch.Tensor | None = None,
        weights: torch.Tensor | Callable[[], tuple] | None = None,
    ) -> torch.Tensor:
        """x [B, 3, H, W] -> logits [B, classes]. `weights` [steps, 3]: the op distribution to
        mix with (a search algorithm's); without it softmax(alpha), `alpha` defaulting to
        self.alpha; the connection weights are then softmax of the connection parameters. A
        callable `weights` gives each cell its own (ops, output, inputs) weights (`cell_sampler`)."""
        per_cell = weights if callable(weights) else None
        if per_cell is None:
            w = (
                weights
                if weights is not None
                else F.softmax(self.alpha if alpha is None else alpha, -1)
            )
            w_out = F.softmax(self.alphas_output, dim=-1)[0]
            w_in = {
                v: F.softmax(p, dim=-1)[0]
                for v, p in zip(self.space.choice_vertices, self.alphas_inputs)
            }
        s = self.stem(x)
        for i, cell in enumerate(self.cells):
            if i in self.pool_before:
                s = F.max_pool2d(s, kernel_size=2, stride=2, padding=1)
            if per_cell is not None:
                w, w_out, w_in = per_cell()
            s = cell(s, w, w_out, w_in)
        s = self.postprocess(s)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(s, 1), 1))

    def arch(self, weights: torch.Tensor | None = None) -> str:
        """The discretised cell's text of the op distribution (default softmax(alpha)) and the
        current connection weights (ray_nas.spaces.nb1shot1)."""
        w = F.softmax(self.alpha.detach(), -1) if weights is None else weights
        return self.space.arch_of(self, w)


def build_supernet(space: NB1Shot1Space, cfg, num_classes: int) -> Supernet:
    """The supernet of a search config: cfg.channels (C), cfg.layers (cells), cfg.channels_last,
    cfg.partial_channels (PC-DARTS)."""
    net = Supernet(space, cfg.channels, cfg.layers, num_classes, cfg.partial_channels)
    return net.to(memory_format=torch.channels_last) if cfg.channels_last else net
