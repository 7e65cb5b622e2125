"""The fast supernet: the function of `nb201_supernet.Supernet`, with the work shared where the math allows.

Same shapes and interface as the reference: images [B, 3, H, W]; alpha [E=6, K] logits, order
nb201.EDGES x ops. Per search cell the reference runs every op of every edge as its own module
(30 op calls, 12 ReLUs, 6 poolings, 12 small convolutions, 30 products and their sums). Here the
cell is computed per SOURCE node j (node 0 has 3 outgoing edges, node 1 two, node 2 one):

- ReLU(node j) once, shared by all its outgoing conv ops;
- per conv op ONE convolution whose n_out * C output channels are the outgoing edges' kernels
  concatenated, and one BatchNorm over them (BN without affine is per channel, so one BN over the
  concatenation equals one BN per edge); the op weight softmax(alpha)[e, op] rides in that BN's
  per-channel scale, so normalising and weighting are one pass; on CPU its batch statistics are
  two vectorised passes (`batch_norm`: torch's NCHW CPU statistics kernel is a scalar float64
  loop, ~3x slower), its backward torch's own in NCHW;
- avg_pool_3x3(node j) once (pooling does not depend on the edge), as a depthwise 3x3 box sum
  times 1 / (in-image window size), which is avg_pool2d(count_include_pad=False);
- skip and pool enter all outgoing edges through one batched matmul [n_out, S] x [S, C*H*W],
  the conv ops' sum added in place on its result;
- `none` contributes exactly 0 (its weight still counts in the softmax).

Memory layout (`channels_last`): NCHW by default. With channels_last=True every activation is
channels-last ([B, H, W, C] in memory), the layout GPU convolutions prefer: the skip/pool matmul
then writes one [H, W, C] block per (image, edge), the conv ops' sum (per pixel the edges side by
side) is added into it through a permuted view, and an edge's output is a view into that block.
On CPU the search cells compute in channels-last anyway (cpu_channels_last: oneDNN's NCHW
convolutions reorder their data each call) and hand NCHW on; their BatchNorms are _BatchStatsNorm
in both layouts. channels_last=True also puts the stem, the ResNet blocks and the head in
channels-last, whose nn.BatchNorm2d on CPU sums sequentially in float32 (torch's channels-last
kernel): at C=16, N=5, B=64 the float32 logits are then 5e-6 from float64 instead of 1.3e-6
(benchmarks/equivalence.py). So it is meant for GPUs; float64 results are equal in both layouts.

float64 results equal the reference's to ~1e-15 (tests/test_fast_supernet.py). Parameters are
initialised by building the reference supernet (the same RNG draws) and copying it, so
`impl: fast` and `impl: reference` start a search from the same point.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import ray_nas.spaces.nb201.names as nb201
from ray_nas.spaces.nb201.supernet import SearchCell, Supernet

#: Kernel size of each conv op (stride 1, padding k // 2).
CONV_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}

#: Per source node j: the edges leaving it (indices into nb201.EDGES), targets j+1, j+2, ... in order.
SOURCE_EDGES: tuple[tuple[int, ...], ...] = tuple(
    tuple(e for e, (_, s) in enumerate(nb201.EDGE_PAIRS) if s == j) for j in range(nb201.NODES - 1)
)

# nn.BatchNorm2d defaults, as the reference's cells use them
BN_MOMENTUM, BN_EPS = 0.1, 1e-5


def pool_inv_count(x: torch.Tensor) -> torch.Tensor:
    """1 / (number of in-image pixels of each 3x3 window) [H, W] (4 in corners, 6 on edges, 9 inside)."""
    ones = torch.ones(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
    return F.avg_pool2d(ones, 3, stride=1, padding=1, divisor_override=1)[0, 0].reciprocal()


def conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, nchw: bool) -> torch.Tensor:
    """Stride-1 'same' convolution x [B, C, H, W], weight [O, C, k, k] -> [B, O, H, W].

    In NCHW a 1x1 kernel runs as a batched matmul [O, C] x [C, H*W]: 2-4x faster than conv2d
    (oneDNN) on CPU at these channel counts, forward and backward. In channels-last conv2d is.
    """
    k = weight.shape[-1]
    if k > 1 or not nchw:
        return F.conv2d(x, weight, bias, padding=k // 2)
    b, c, h, w = x.shape
    o = weight.shape[0]
    y = torch.bmm(weight.view(1, o, c).expand(b, o, c).to(x.dtype), x.reshape(b, c, h * w))
    return y.add_(bias.view(1, o, 1)).view(b, o, h, w)  # 3x faster than baddbmm's bias copy


def cpu_float(t: torch.Tensor) -> bool:
    """A float32/64 CPU tensor outside torch.compile: where this module's CPU paths apply."""
    return (
        t.device.type == "cpu"
        and t.dtype in (torch.float32, torch.float64)
        and not torch.compiler.is_compiling()
    )


def channel_sum(t: torch.Tensor) -> torch.Tensor:
    """Per-channel sum of t [B, C, H, W] (NCHW- or channels-last-contiguous) -> [C] float64.

    Each image's sum in t's dtype (torch's vectorised cascade sum), the B partial sums in float64.
    """
    b, c = t.shape[:2]
    if t.is_contiguous():
        return t.view(b, c, -1).sum(2).sum(0, dtype=torch.float64)
    return t.permute(0, 2, 3, 1).reshape(b, -1, c).sum(1).sum(0, dtype=torch.float64)


class _BatchStatsNorm(torch.autograd.Function):
    """BatchNorm with batch statistics and a per-channel scale, no shift, for CPU tensors:
    y [B, C, H, W] (NCHW or channels-last), scale [C] -> scale * (y - mean) / sqrt(var + eps),
    mean and var [C] over (B, H, W). Also returns mean and the biased var [C] (no gradient).

    The function of F.batch_norm(y, None, None, scale, None, training=True), faster and no less
    accurate on CPU. torch's NCHW statistics kernel is a scalar float64 loop (~3x slower); its
    channels-last kernels sum statistics and gradients sequentially in float32 (~20x less
    accurate). Here the statistics take two vectorised passes (sums, then the centred values'
    squares: two-pass, so no E[y^2] - mean^2 cancellation), per image in float32, over images in
    float64. Backward: torch's own for NCHW; for channels-last the same formula with the same
    sums. Under create_graph (the alpha Hessian) the backward differentiates the plain formula,
    so second derivatives are exact too.
    """

    @staticmethod
    def forward(ctx, y, scale, eps):
        c = y.shape[1]
        count = y.numel() // c
        mean = (channel_sum(y) / count).to(y.dtype)
        centred = y - mean.view(1, c, 1, 1)
        if centred.is_contiguous():  # per (image, channel) row: a dot product (one MKL call)
            r = centred.view(-1, 1, centred.shape[2] * centred.shape[3])
            squares = torch.bmm(r, r.transpose(1, 2)).view(y.shape[:2]).sum(0, dtype=torch.float64)
        else:
            squares = channel_sum(centred * centred)
        var = (squares / count).to(y.dtype)
        invstd = (var + eps).rsqrt()
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        a = (scale * invstd).view(1, c, 1, 1)
        if y.is_contiguous():
            ctx.save_for_backward(y, scale, mean, invstd)
            return centred.mul_(a), mean, var
        ctx.save_for_backward(y, scale, mean, invstd, centred)  # the channels-last backward's
        return centred * a, mean, var

    @staticmethod
    def backward(ctx, grad, _mean, _var):
        y, scale, mean, invstd, *rest = ctx.saved_tensors
        c = y.shape[1]
        if torch.is_grad_enabled():  # create_graph: a backward that is itself differentiable
            with torch.enable_grad():
                m = y.mean((0, 2, 3), keepdim=True)
                v = (y - m).square().mean((0, 2, 3), keepdim=True)
                out = (y - m) * (v + ctx.eps).rsqrt() * scale.view(1, c, 1, 1)
                gy, gs = torch.autograd.grad(out, (y, scale), grad, create_graph=True)
            return gy, gs, None
        if y.is_contiguous():
            gy, gs, _ = torch.ops.aten.native_batch_norm_backward(
                grad, y, scale, None, None, mean, invstd, True, ctx.eps, [True, True, False]
            )
            return gy, gs, None
        # channels-last: dy = a * (g - mean(g) - xhat * mean(g * xhat)), a = scale * invstd
        count = y.numel() // c
        (centred,) = rest
        g_sum = channel_sum(grad).to(y.dtype)
        g_dot = channel_sum(grad * centred).to(y.dtype)  # = sum(g * xhat) / invstd
        a = scale * invstd
        gy = torch.addcmul((-a * g_sum / count).view(1, c, 1, 1), grad, a.view(1, c, 1, 1))
        gy.addcmul_(centred, (-a * invstd * invstd * g_dot / count).view(1, c, 1, 1))
        return gy, invstd * g_dot, None


def batch_norm(
    y: torch.Tensor,
    scale: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    batch_stats: bool,
) -> torch.Tensor:
    """F.batch_norm(y, running_mean, running_var, weight=scale, bias=None, training=batch_stats)
    with nn.BatchNorm2d's momentum and eps; y [B, C, H, W], scale [C].

    Batch statistics of a float32/64 CPU tensor, NCHW or channels-last, go through
    _BatchStatsNorm (the running stats updated as torch does: momentum, unbiased var);
    everything else (CUDA, bf16, running statistics, torch.compile) is F.batch_norm.
    """
    fast = (
        batch_stats
        and cpu_float(y)
        and (y.is_contiguous() or y.is_contiguous(memory_format=torch.channels_last))
    )
    if not fast:
        return F.batch_norm(
            y, running_mean, running_var, weight=scale, bias=None, training=batch_stats,
            momentum=BN_MOMENTUM, eps=BN_EPS,
        )  # fmt: skip
    out, mean, var = _BatchStatsNorm.apply(y, scale, BN_EPS)
    if running_mean is not None:
        n = y.numel() // y.shape[1]
        with torch.no_grad():
            running_mean.lerp_(mean, BN_MOMENTUM)
            running_var.lerp_(var * (n / max(n - 1, 1)), BN_MOMENTUM)
    return out


def cpu_channels_last(x: torch.Tensor) -> bool:
    """Whether a cell computes in channels-last although the net is NCHW: on CPU in float32/64.

    There oneDNN's convolutions run channels-last without the layout reorders that NCHW costs
    each call (~20% of a convolution), and _BatchStatsNorm keeps the BatchNorms precise; the
    cell converts its input and output (node 3) once. A step at C=16, N=5, B=64 on 2 cores:
    3-4% faster than NCHW cells (in-process A/B). Not under autocast or torch.compile, nor on
    CUDA (there search.channels_last decides).
    """
    return cpu_float(x) and not torch.is_autocast_enabled("cpu")


class SourceConvs(nn.Module):
    """The conv ops of every outgoing edge of one node: per op one conv with C * n_out outputs.

    weights[i]: [n_out * C, C, k, k], output channels edge-major (edge d of the node: rows d*C..);
    biases[i]: [n_out * C] (the reference's conv has a bias because its BN has no affine);
    running_mean_i / running_var_i: [n_out * C] when BN tracks running stats, else None.
    """

    def __init__(self, convs: Sequence[str], c: int, n_out: int, track: bool):
        super().__init__()
        self.kernels = tuple(CONV_KERNELS[o] for o in convs)
        self.track = track
        n = n_out * c
        # uninitialised: FastSupernet copies the reference's weights in
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(n, c, k, k)) for k in self.kernels)
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(n)) for _ in self.kernels)
        for i in range(len(self.kernels)):
            self.register_buffer(f"running_mean_{i}", torch.zeros(n) if track else None)
            self.register_buffer(f"running_var_{i}", torch.ones(n) if track else None)

    def forward(self, r: torch.Tensor, scales: list[torch.Tensor]) -> torch.Tensor:
        """r = ReLU(node) [B, C, H, W]; scales[i] [n_out * C] op weights -> sum_i w_i BN(conv_i(r)),
        in r's memory layout (NCHW or channels-last)."""
        out = None
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):  # 1x1 and/or 3x3
            y = conv(r, weight, bias, nchw=r.is_contiguous())
            y = batch_norm(
                y, scales[i], getattr(self, f"running_mean_{i}"), getattr(self, f"running_var_{i}"),
                batch_stats=self.training or not self.track,
            )  # fmt: skip
            out = y if out is None else out.add_(y)  # BN saves its input, not its output
        return out


class FastCell(nn.Module):
    """A search cell computed source node by source node; node i = sum_{j<i} edge(i<-j)(node j).

    Per source node j the op weights are gathered from w.flatten() with fixed index buffers:
    cidx_{j}_{op} [n_out * C] (a conv op's BN scale per output channel), sidx_{j} [n_out, S] (the
    weights of the S parameter-free ops skip/pool per outgoing edge), idx_{j}_none [n_out].
    """

    mixes_ops = True  # forward(x, weights), as nb201_supernet.SearchCell

    def __init__(self, ops: Sequence[str], c: int, track: bool, channels_last: bool = False):
        super().__init__()
        ops = tuple(ops)
        self.channels_last = channels_last
        col = {o: ops.index(o) for o in ops}
        self.convs = tuple(o for o in ops if o in CONV_KERNELS)
        self.shared = tuple(o for o in ("skip_connect", "avg_pool_3x3") if o in ops)
        self.sources = nn.ModuleList(
            SourceConvs(self.convs, c, len(edges), track) if self.convs else None
            for edges in SOURCE_EDGES
        )
        self.conv_cols = tuple(col[o] for o in self.convs)
        for j, edges in enumerate(SOURCE_EDGES):
            rows = torch.tensor(edges) * len(ops)  # where edge e's weights start in w.flatten()
            self.register_buffer(f"idx_{j}_none", rows + col.get("none", 0), persistent=False)
            shared_cols = torch.tensor([col[o] for o in self.shared], dtype=torch.long)
            self.register_buffer(f"sidx_{j}", rows[:, None] + shared_cols, persistent=False)
            for o in self.convs:  # edge-major, as SourceConvs lays out its output channels
                self.register_buffer(
                    f"cidx_{j}_{o}", rows.repeat_interleave(c) + col[o], persistent=False
                )
        self.register_buffer("box", torch.ones(1, 1, 3, 3), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W]; w [E, K] op weights (softmax of alpha), order nb201.EDGES.

        Returns node 3 [B, C, H, W] in x's layout: channels-last with channels_last=True, else
        NCHW (on CPU computed in channels-last inside the cell, see cpu_channels_last)."""
        wf = w.flatten()  # fp32 under autocast (BN takes fp32 scales)
        inv_count = pool_inv_count(x) if "avg_pool_3x3" in self.shared else None
        incoming: list[list[torch.Tensor]] = [[] for _ in range(nb201.NODES)]
        cl = self.channels_last or cpu_channels_last(x)
        layout = torch.channels_last if cl else torch.contiguous_format
        node = x.contiguous(memory_format=layout)
        for j, edges in enumerate(SOURCE_EDGES):
            outs = self._from_source(j, node, wf, len(edges), inv_count, cl)
            for d, out in enumerate(outs):  # edge d of node j goes to node j + 1 + d
                incoming[j + 1 + d].append(out)
            node, *rest = incoming[j + 1]
            for term in rest:
                node = node + term
            node = node.contiguous(memory_format=layout)  # copies only node 1 (a view)
        return node if self.channels_last else node.contiguous()

    def _from_source(
        self,
        j: int,
        h: torch.Tensor,
        wf: torch.Tensor,
        n: int,
        inv_count: torch.Tensor | None,
        cl: bool,
    ) -> list[torch.Tensor]:
        """The outputs [B, C, H, W] (views) of the n edges leaving node j (value h [B, C, H, W]).

        They are views into one [B, n, *block] tensor: per (image, edge) one contiguous block,
        [C, H, W] in NCHW and [H, W, C] in channels-last (cl).
        """
        b, c, hh, ww = h.shape
        block = (b, n, hh, ww, c) if cl else (b, n, c, hh, ww)
        y = None  # the conv ops' sum as [B, n, *block]
        if self.convs:
            scales = [wf[getattr(self, f"cidx_{j}_{o}")] for o in self.convs]
            y = self.sources[j](F.relu(h), scales)  # [B, n*C, H, W], edge-major channels
            if cl:  # in memory per pixel the n edges side by side: a permuted view
                y = y.permute(0, 2, 3, 1).view(b, hh, ww, n, c).permute(0, 3, 1, 2, 4)
            else:
                y = y.view(block)
        out = None
        if self.shared:
            cands = []  # the parameter-free ops' outputs, the same for every outgoing edge
            for o in self.shared:
                if o == "skip_connect":
                    cands.append(h)
                else:  # avg_pool_3x3, count_include_pad=False: 3x3 box sum (a depthwise conv,
                    # an order of magnitude faster than avg_pool2d on CPU) / in-image count
                    box = F.conv2d(h, self.box.expand(c, 1, 3, 3), padding=1, groups=c)
                    cands.append(box * inv_count)
            # out[b, d] = sum_s w[edge d, op s] * cands[s][b]: one batched matmul, whose backward
            # is matmuls too (no full-size temporaries for the op weights' gradient); the conv
            # ops' sum is added in place on the matmul's result (its backward does not need it)
            cand = torch.stack([t.permute(0, 2, 3, 1) if cl else t for t in cands], 1)
            w_shared = wf[getattr(self, f"sidx_{j}")].to(cand.dtype).expand(b, n, len(cands))
            out = torch.bmm(w_shared, cand.view(b, len(cands), -1))  # [B, n, C*H*W]
            if y is None:
                out = out.view(block)
            elif cl:  # the edges' blocks lie otherwise in y: an out-of-place strided sum
                out = out.view(block) + y
            else:  # in place on the matmul's result itself: its backward needs neither operand,
                # where in place on a view of it would clone and zero-fill full-size gradients
                out = out.add_(y.view(b, n, -1)).view(block)
        elif y is not None:
            out = y
        else:  # only `none`: the reference's x * 0 * w, kept so alpha stays in the graph
            wn = wf[getattr(self, f"idx_{j}_none")].view(1, n, 1, 1, 1)
            out = (h.permute(0, 2, 3, 1) if cl else h).unsqueeze(1).mul(0.0) * wn
        # unbind, not out[:, d]: its backward stacks the edges' gradients in one copy, where
        # indexing would zero-fill a full-size gradient per edge
        return [e.permute(0, 3, 1, 2) if cl else e for e in out.unbind(1)]

    @torch.no_grad()
    def load_from_reference(self, ref: SearchCell) -> None:
        """Copy a reference cell's conv weights, biases and BN running stats into the batched layout."""
        for j, edges in enumerate(SOURCE_EDGES):
            src = self.sources[j]
            if src is None:
                continue
            for i, k in enumerate(self.conv_cols):
                seqs = [ref.edges[e].ops[k] for e in edges]  # ReLU, Conv2d, BatchNorm2d
                src.weights[i].copy_(torch.cat([s[1].weight for s in seqs]))
                src.biases[i].copy_(torch.cat([s[1].bias for s in seqs]))
                if src.track:
                    getattr(src, f"running_mean_{i}").copy_(
                        torch.cat([s[2].running_mean for s in seqs])
                    )
                    getattr(src, f"running_var_{i}").copy_(
                        torch.cat([s[2].running_var for s in seqs])
                    )


class FastSupernet(nn.Module):
    """DARTS supernet on the NB201 cell space, one shared alpha [E, K]; see the module docstring."""

    def __init__(
        self,
        ops: Sequence[str],
        channels: int = 16,
        cells: int = 5,
        num_classes: int = 10,
        track_running_stats: bool = False,
        channels_last: bool = False,
    ):
        super().__init__()
        # draw the reference's initialisation (same RNG use), then take it over
        ref = Supernet(ops, channels, cells, num_classes, track_running_stats)
        self.op_names = ref.op_names
        self.stem = ref.stem
        layers, c = [], channels
        for layer in ref.layers:  # stage by stage: cells at c, a ResNet block to 2c, ...
            if isinstance(layer, SearchCell):
                layers.append(FastCell(self.op_names, c, track_running_stats, channels_last))
            else:
                layers.append(layer)
                c = layer.conv_b[1].out_channels
        self.layers = nn.ModuleList(layers)
        self.lastact = ref.lastact
        self.classifier = ref.classifier
        self.alpha = ref.alpha
        self.load_from_reference(ref)
        if channels_last:  # the stem's and the other convolutions' weights too
            self.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def load_from_reference(self, ref: Supernet) -> None:
        """Make this net compute exactly `ref`'s function: copy every weight, BN stat and alpha."""
        if ref.op_names != self.op_names or len(ref.layers) != len(self.layers):
            raise ValueError("load_from_reference: the reference has another op set or depth")
        self.stem.load_state_dict(ref.stem.state_dict())
        for mine, theirs in zip(self.layers, ref.layers):
            if isinstance(mine, FastCell):
                mine.load_from_reference(theirs)
            else:
                mine.load_state_dict(theirs.state_dict())
        self.lastact.load_state_dict(ref.lastact.state_dict())
        self.classifier.load_state_dict(ref.classifier.state_dict())
        self.alpha.copy_(ref.alpha)

    # The same network around other cells: share the reference's methods (they use only alpha,
    # op_names, the layers and the head) rather than repeat them.
    weight_parameters = Supernet.weight_parameters
    op_weights = Supernet.op_weights
    forward = Supernet.forward
    genotype = Supernet.genotype
    arch = Supernet.arch
