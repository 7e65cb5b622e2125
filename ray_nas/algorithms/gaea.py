"""GAEA: the architecture parameter lives on the simplex and is mixed directly (no softmax).

alpha [E, K] starts at 1/K. One exponentiated-gradient (mirror-descent) step on the arch batch:
alpha <- clamp(alpha * exp(-eta * g), min=clamp), then each edge renormalised to sum 1 (the clamp
acts on the un-normalised product, as upstream). eta is constant. No Adam, no weight decay, no
momentum, no clipping on alpha (it is outside the weights' optimiser). The alpha step comes first.
"""

from __future__ import annotations

import torch

from ray_nas.algorithms.base import Algorithm, Batch, LossOf

#: cap on -eta * g in the exponent: exp(60) is finite in float32 (upstream has no guard; an
#: overflow there gives inf, then NaN after renormalising)
MAX_EXPONENT = 60.0


def eg_update(alpha: torch.Tensor, grad: torch.Tensor, eta: float, clamp: float) -> torch.Tensor:
    """The GAEA step: normalise(clamp(alpha * exp(-eta * grad), min=clamp)) per edge; [E, K]."""
    u = (alpha * torch.exp((-eta * grad).clamp(max=MAX_EXPONENT))).clamp(min=clamp)
    return u / u.sum(dim=-1, keepdim=True)


class Gaea(Algorithm):
    name = "gaea"

    def __init__(self, cfg, model, w_params, w_opt):
        super().__init__(cfg, model, w_params, w_opt)
        with torch.no_grad():
            self.alpha.fill_(1.0 / self.alpha.shape[-1])

    @staticmethod
    def mix(alpha: torch.Tensor) -> torch.Tensor:
        return alpha

    def arch_step(self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float) -> None:
        xv, yv = arch
        (g,) = torch.autograd.grad(loss_of(xv, yv, self.alpha), [self.alpha])
        s = self.cfg.gaea
        with torch.no_grad():
            self.alpha.copy_(eg_update(self.alpha, g, s.eta, s.clamp))

    def lr(self) -> float:
        return self.cfg.gaea.eta
