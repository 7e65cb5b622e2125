"""GAEA + PC-DARTS (Li et al., ICLR 2021; liamcli/gaea_release @ 1604615,
cnn/architect/architect_edarts.py with `learn_edges: true`, cnn/search_spaces/pc_darts/
model_search.py): GAEA's exponentiated-gradient step on the PC-DARTS supernet, for the op weights
AND the edge weights.

alpha [E, K] starts at 1/K and is mixed directly (GAEA). The supernet's betas (edge
normalisation, `search.edge_normalization: true`; without it the step is GAEA's on alpha alone) are
the edge weights: they start at
1/n for the n inputs of their node (upstream's get_edge_scaling) and multiply each edge's output
directly (`model.edge_mix = "simplex"`, no softmax). One backward of the arch-batch loss gives
both gradients; then alpha <- normalise(clamp(alpha * exp(-eta g), min=clamp)) per edge (ray_nas's
`eg_update`) and betas <- betas * exp(-edge_eta g) divided by their node's sum, WITHOUT a clamp
(upstream's edge branch). The architecture step comes first; no Adam, no weight decay (upstream's
arch_weight_decay: 0.0, the entropic term it would scale), no gradient clipping (arch_grad_clip:
null). The exponent is capped at MAX_EXPONENT for both, as in `gaea` (upstream has no guard).
"""

from __future__ import annotations

import torch

from ray_nas.algorithms.base import Batch, LossOf
from ray_nas.algorithms.gaea import MAX_EXPONENT, Gaea, eg_update


def eg_edges(
    edges: torch.Tensor, grad: torch.Tensor, eta: float, slices, clamp: float = 0.0
) -> torch.Tensor:
    """The GAEA edge step: edges * exp(-eta * grad), each node's slice (start, end) divided by its
    sum; `clamp` > 0 floors the product first (0: none, upstream). [C] -> [C]."""
    u = edges * torch.exp((-eta * grad).clamp(max=MAX_EXPONENT))
    if clamp > 0:
        u = u.clamp(min=clamp)
    return torch.cat([u[a:b] / u[a:b].sum() for a, b in slices])


class GaeaPcDarts(Gaea):
    name = "gaea_pc_darts"

    def __init__(self, cfg, model, w_params, w_opt):
        super().__init__(cfg, model, w_params, w_opt)
        self.betas = getattr(model, "betas", None)  # None: no edge normalisation (plain GAEA)
        if self.betas is not None:
            model.edge_mix = "simplex"
            with torch.no_grad():
                for a, b in model.edge_slices:
                    self.betas[a:b] = 1.0 / (b - a)

    def arch_step(self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float) -> None:
        xv, yv = arch
        s = self.cfg.gaea_pc_darts
        params = [self.alpha] if self.betas is None else [self.alpha, self.betas]
        grads = torch.autograd.grad(loss_of(xv, yv, self.alpha), params)
        with torch.no_grad():
            self.alpha.copy_(eg_update(self.alpha, grads[0], s.eta, s.clamp))
            if self.betas is not None:
                slices = self.model.edge_slices
                self.betas.copy_(eg_edges(self.betas, grads[1], s.edge_eta, slices, s.edge_clamp))

    def lr(self) -> float:
        return self.cfg.gaea_pc_darts.eta
