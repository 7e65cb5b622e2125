"""DrNAS: op weights are a Dirichlet sample; theta [E, K] is the raw parameter.

Concentration beta = ELU(theta) + 1 > 0. Every training forward (weight step and arch step alike)
draws one sample per edge, Dir(beta[e]).rsample() (pathwise gradient), shared by all cells and
the batch, from torch's global generator (seeded, checkpointed with the rest of the RNG state).
The arch step (first) is Adam on the arch batch's loss, regularised by `drnas.reg`: l2 = Adam's
coupled weight decay `drnas.reg_scale` on theta (pulls beta to 1), kl = reg_scale *
sum_e KL(Dir(beta[e]) || Dir(1)) added to the loss (no weight decay). The recorded distribution is
the Dirichlet mean beta / sum(beta); evaluation forwards and the Hessian mix with that mean
(upstream validates the supernet on random samples; the mean keeps the record deterministic).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from ray_nas.algorithms.base import AdamAlgorithm, Batch, LossOf


def concentration(theta: torch.Tensor) -> torch.Tensor:
    """beta = ELU(theta) + 1, [E, K], > 0."""
    return F.elu(theta) + 1.0


class Drnas(AdamAlgorithm):
    name = "drnas"

    def weight_decay(self) -> float:
        s = self.cfg.drnas
        return s.reg_scale if s.reg == "l2" else 0.0

    @staticmethod
    def mix(alpha: torch.Tensor) -> torch.Tensor:
        beta = concentration(alpha)
        return beta / beta.sum(dim=-1, keepdim=True)

    def mixing_weights(self) -> torch.Tensor:
        with torch.no_grad():
            return Dirichlet(concentration(self.alpha)).sample()

    def arch_step(self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float) -> None:
        xv, yv = arch
        beta = concentration(self.alpha)
        loss = loss_of(xv, yv, Dirichlet(beta).rsample())
        if self.cfg.drnas.reg == "kl":
            anchor = Dirichlet(torch.ones_like(beta))
            loss = loss + self.cfg.drnas.reg_scale * kl_divergence(Dirichlet(beta), anchor).sum()
        self.backward_and_step(loss)

    def extras(self) -> dict[str, np.ndarray]:
        with torch.no_grad():
            beta = concentration(self.alpha).float().cpu().numpy()
        return {"concentration": beta.astype(np.float32)}
