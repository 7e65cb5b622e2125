"""SDARTS (Chen & Hsieh, ICML 2020): DARTS whose weight step sees a perturbed architecture.

Upstream: xiangning-chen/SmoothDARTS @ d3dbfed06643d5fd4056edd90891ec9109634ada,
`attacker/perturb.py` (Random_alpha, Linf_PGD_alpha), `attacker/linf_sgd.py`,
`sota/cnn/train_search.py` (DARTS space), `nasbench201/train_search.py` (NB201).

One step, in upstream's order:
1. the architecture step first: first-order DARTS, Adam (search.alpha.*) on the arch batch's loss
   mixing softmax(alpha), unperturbed;
2. the perturbation p of the mixing weights, starting from softmax(alpha) [E, K]:
   - RS: p = clip(softmax(alpha) + U(-eps, eps)), one uniform per entry from torch's global
     generator (seeded and checkpointed with the rest of the RNG state);
   - ADV: PGD on the weight batch (x, y), model in eval mode (`attack_mode`): loss_before =
     CE(softmax(alpha)); optional random start as RS; `steps` times: one signed ascent step on CE
     of size 2 eps / steps, projection onto the L-inf ball of radius eps around softmax(alpha),
     clip; loss_after = CE(p); if loss_before > loss_after, p = softmax(alpha) (no perturbation);
   clip (upstream's `model.clip()`), per row: remember the argmax, clamp to [0, 1], a row that is
   then all zero becomes one-hot at the remembered argmax, divide by the row sum;
3. the weight step (SGD, clipped) mixing p directly (no softmax). alpha never sees p.
eps per epoch e (0-based, E = warmup + joint epochs): epsilon_min + (epsilon_max - epsilon_min)
* e / E (upstream's code, default --epsilon_alpha 0.3); schedule `constant`: epsilon_min.
The recorded distribution, the evaluation and the Hessian use softmax(alpha), as DARTS.

Deviations from upstream:
- upstream draws the noise per architecture tensor (DARTS space: normal [14, K], then reduce);
  we draw one [E, K] tensor with the rows in the same order (the same distribution; the stream
  of draws differs);
- the PGD attack's backward passes only into the perturbation (upstream's also accumulate
  weight gradients, which its optimizer.zero_grad() then discards: the same step);
- NAS-Bench-1Shot1 (upstream perturbs its connection weights too) is not supported;
- upstream's scheduler idiom runs epoch e at the cosine value of e + 1; ours at e (as every
  algorithm here); upstream's NB201 supernet tracks BatchNorm running statistics (our
  search.track_running_stats, default false: then eval-mode attacks use batch statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ray_nas.algorithms.base import Batch
from ray_nas.algorithms.darts import DartsV1
from ray_nas.training.runtime import autocast


def clip_rows(p: torch.Tensor) -> torch.Tensor:
    """Upstream's `model.clip()` on [E, K]: per row, clamp to [0, 1], an all-zero row becomes
    one-hot at the argmax taken before the clamp, then divide by the row sum."""
    idx = p.argmax(dim=-1, keepdim=True)
    q = p.clamp(0.0, 1.0)
    dead = q.sum(dim=-1, keepdim=True) == 0
    q = torch.where(dead, torch.zeros_like(q).scatter(-1, idx, 1.0), q)
    return q / q.sum(dim=-1, keepdim=True)


def epsilon(settings, epoch: int, total: int) -> float:
    """The perturbation radius of training epoch `epoch` (1-based) of `total`."""
    if settings.schedule == "constant":
        return settings.epsilon_min
    e = epoch - 1
    return settings.epsilon_min + (settings.epsilon_max - settings.epsilon_min) * e / total


class SdartsRS(DartsV1):
    name = "sdarts_rs"

    def __init__(self, cfg, model, w_params, w_opt):
        super().__init__(cfg, model, w_params, w_opt)
        self.eps = self.settings.epsilon_min

    @property
    def settings(self):
        return self.cfg.sdarts_rs

    def begin_epoch(self, epoch: int, total: int) -> None:
        self.eps = epsilon(self.settings, epoch, total)

    def mixing_weights(self) -> torch.Tensor:
        with torch.no_grad():
            p = self.mix(self.alpha)
            return clip_rows(p + torch.zeros_like(p).uniform_(-self.eps, self.eps))


class SdartsADV(SdartsRS):
    name = "sdarts_adv"

    @property
    def settings(self):
        return self.cfg.sdarts_adv

    def weight_step(self, forward, batch: Batch, arch_frozen: bool):
        return self.sgd_step(forward, batch, self.attack(forward, batch))

    def attack(self, forward, batch: Batch) -> torch.Tensor:
        """The PGD-perturbed mixing weights [E, K] on the weight batch (upstream Linf_PGD_alpha)."""
        x, y = batch
        s, eps = self.settings, self.eps
        model, training = self.model, self.model.training
        if s.attack_mode == "eval":
            model.eval()

        def ce(p: torch.Tensor) -> torch.Tensor:
            with autocast(x.device, self.cfg.precision):
                return F.cross_entropy(forward(x, weights=p), y)

        try:
            saved = self.mix(self.alpha.detach())
            with torch.no_grad():
                loss_before = ce(saved)
            p = saved.clone()
            if s.random_start:
                p = clip_rows(p + torch.zeros_like(p).uniform_(-eps, eps))
            lr = 2 * eps / s.steps
            for _ in range(s.steps):
                p.requires_grad_(True)
                (g,) = torch.autograd.grad(-ce(p), [p])
                with torch.no_grad():
                    p = p - lr * torch.sign(g)
                    p = clip_rows(saved + (p - saved).clamp(-eps, eps))
            with torch.no_grad():
                loss_after = ce(p)
            if loss_before > loss_after:
                p = saved
        finally:
            model.train(training)
        return p.detach()
