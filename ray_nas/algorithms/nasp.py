"""NASP (Yao et al., AAAI 2020): proximal search; forwards mix the binarised architecture, its
gradient moves the continuous one.

Upstream: xujinfan/NASP-codes @ 3bfb7060deddec144ec444844549f73b4ec8ebea, `codes/architect.py`
(`step`, `_backward_step`), `codes/model_search.py` (`_initialize_alphas`, `binarization`,
`proximal_step`, `clip`), `codes/train_search.py`.

alpha [E, K] starts at `init` (0.5) everywhere and stays in [0, 1]. binarize(alpha): per row a
one-hot at the argmax over all candidate ops; DARTS space, per cell type and node, only the 2
incoming edges whose argmax value is largest keep their one-hot (ties: the earlier edge), the
others become zero rows (NB201: every edge keeps its one-hot). One step, in upstream's order:
1. architecture: b = binarize(alpha); g = dCE(model(x_valid, weights=b))/db (every op computed,
   so the gradient reaches the zero entries too); Adam (search.alpha.*, coupled weight decay) on
   the continuous alpha with gradient g; alpha clamped to [0, 1] (upstream's Hardtanh(0, 1));
2. weights: SGD (clipped) mixing binarize(alpha) of the updated alpha.
Evaluation (the recorded valid loss and accuracy) mixes binarize(alpha), as upstream's `infer`.
The recorded distribution and the Hessian use alpha / row sum (clamped at 0; uniform for an
all-zero row): a display map monotone in alpha, not a forward NASP uses; the genotype is the
space's rule on it (its argmax per edge is binarize's).

Deviations from upstream:
- op sets: upstream's own CIFAR cell ops (no `none`, different per cell type); here the space's
  (for the DARTS space use ops without `none`, darts.PAPER_OPS, as upstream has none to exclude;
  with `none` its binarisation may pick `none` where the genotype rule does not);
- upstream's weight step computes only the ops of nonzero weight (the same value and gradients;
  with search.track_running_stats the zero-weight ops' BatchNorm statistics also update here);
- NB201 (no upstream runner: the one-hot per edge of SmoothDARTS's nasbench201 `proximal_step`):
  alpha starts tied, and a tie binarises to the first op, which on NB201's op order is `none`:
  the first forwards are the all-`none` cell (cells output zeros) until Adam breaks the
  ties (a 2-epoch, 20-step CIFAR-10 search stayed all-`none`); searching NB201 without `none`
  (search.ops) avoids it;
  NAS-Bench-1Shot1 is refused; the e-greedy option (--greedy, off upstream) is not offered.
"""

from __future__ import annotations

import torch

from ray_nas.algorithms.base import AdamAlgorithm, Batch, LossOf
from ray_nas.spaces import darts


def node_slices() -> list[slice]:
    """Rows of one DARTS cell type per intermediate node (2, 3, 4, 5 incoming edges)."""
    out, start = [], 0
    for node in range(2, 2 + darts.STEPS):
        n = sum(1 for t, _ in darts.EDGE_PAIRS if t == node)
        out.append(slice(start, start + n))
        start += n
    return out


def binarize(alpha: torch.Tensor, space: str) -> torch.Tensor:
    """NASP's proximal step on [E, K] (detached): one-hot rows at the argmax; on the darts space,
    per cell type and node, only the 2 edges whose argmax value is largest keep theirs."""
    a = alpha.detach()
    top, idx = a.max(dim=-1)
    out = torch.zeros_like(a).scatter_(-1, idx[:, None], 1.0)
    if space == "darts":
        per_cell = len(darts.EDGES)
        for c in range(a.shape[0] // per_cell):
            for sl in node_slices():
                vals = top[c * per_cell + sl.start : c * per_cell + sl.stop].tolist()
                keep = sorted(range(len(vals)), key=lambda i: vals[i], reverse=True)[:2]
                for i in range(len(vals)):
                    if i not in keep:
                        out[c * per_cell + sl.start + i] = 0.0
    return out


class Nasp(AdamAlgorithm):
    name = "nasp"

    def __init__(self, cfg, model, w_params, w_opt):
        super().__init__(cfg, model, w_params, w_opt)
        with torch.no_grad():
            self.alpha.fill_(cfg.nasp.init)

    @staticmethod
    def mix(alpha: torch.Tensor) -> torch.Tensor:
        a = alpha.clamp(min=0)
        s = a.sum(dim=-1, keepdim=True)
        uniform = torch.full_like(a, 1.0 / a.shape[-1])
        return torch.where(s > 0, a / torch.where(s > 0, s, torch.ones_like(s)), uniform)

    def binarized(self) -> torch.Tensor:
        return binarize(self.alpha, self.cfg.space)

    def mixing_weights(self) -> torch.Tensor:
        return self.binarized()

    def evaluation_weights(self) -> torch.Tensor:
        return self.binarized()

    def arch_step(self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float) -> None:
        xv, yv = arch
        b = self.binarized().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_of(xv, yv, b), [b])
        self.opt.zero_grad(set_to_none=True)
        self.alpha.grad = g
        self.opt.step()
        with torch.no_grad():
            self.alpha.clamp_(0.0, 1.0)
