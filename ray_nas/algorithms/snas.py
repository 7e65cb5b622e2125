"""SNAS (Xie et al., ICLR 2019): a soft Gumbel-softmax sample of the ops, temperature annealed;
weights and architecture move together in one step (single level).

Upstream: SNAS-Series/SNAS-Series @ 9a43adbdf90d4969b19e448c0d094091bc5efb4f, `SNAS/train_search.py`
(`train`, the single-GPU path of the README's `--snas --temp 1 --temp_min 0.03 --nsample 1
--temp_annealing` command, without `--resource_efficient`: the resource term is 0),
`SNAS/model_search.py` (`_get_categ_mask`, `_initialize_alphas`), `SNAS/utils.py` (Temp_Scheduler).

log-alpha [E, K] starts N(init_mean, init_std). Every training forward draws one sample per edge
row, shared by all cells of the net: u ~ U(0, 1) (torch's global generator, seeded and
checkpointed), Z = softmax((log_alpha - log(-log u)) / T). One step on the weight batch (x, y):
one forward mixing Z, loss = CE, one backward into the weights and log-alpha; the weights'
gradient clipped to weights.grad_clip, log-alpha's to `arch_grad_clip` (10); then the SGD step
of the weights and the step of log-alpha (`arch_optimizer` sgd: plain SGD at alpha.lr, the
single-GPU code; adam: Adam with alpha.*, the distributed code). During warmup (alpha frozen)
only the weights move. Temperature before training epoch e (1-based, as upstream's scheduler
steps before each epoch): T(e) = max(temp_min, (1 - e / temp_epochs)(temp_init - temp_min) +
temp_min), temp_epochs = the run's epochs unless set (upstream hard-codes 150). The recorded
distribution, evaluation, Hessian and genotype use softmax(log-alpha).

Deviations from upstream:
- the pool of weight batches is the search loop's: upstream trains on the whole CIFAR-10 training
  set (search.objective erm gives that pool; bilevel, the default, uses search-train); the loop
  still draws an architecture batch each step, which SNAS uses only for the epoch's Hessian;
- upstream samples per cell type (normal [14, K], reduce [14, K]); we draw one [E, K] tensor in
  the same row order (same distribution, a different stream of draws);
- no search-time drop-path (the README's --drop_path_prob 0.3): our search networks have none;
- genotype: our spaces' rule on softmax(log-alpha) (DARTS space: `none` excluded, 2 edges per
  node); upstream's `genotype()` keeps `none` in the ranking and its evaluation uses every edge;
- spaces: upstream is DARTS-space only; NB201 here is our adaptation; NAS-Bench-1Shot1 is refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ray_nas.algorithms.base import Algorithm, Batch, LossOf
from ray_nas.training.runtime import autocast


def gumbel_soft(log_alpha: torch.Tensor, temp: float) -> torch.Tensor:
    """[E, K] SNAS's relaxed sample softmax((log_alpha - log(-log u)) / temp), u ~ U(0, 1)."""
    u = torch.zeros_like(log_alpha).uniform_()
    return F.softmax((log_alpha + (-((-(u.log())).log()))) / temp, dim=-1)


def temperature(settings, epoch: int, epochs: int) -> float:
    """T before training epoch `epoch` (1-based); `epochs` stands in for temp_epochs=None."""
    n = settings.temp_epochs or epochs
    t = (1 - epoch / n) * (settings.temp_init - settings.temp_min) + settings.temp_min
    return max(t, settings.temp_min)


class Snas(Algorithm):
    name = "snas"

    def __init__(self, cfg, model, w_params, w_opt):
        super().__init__(cfg, model, w_params, w_opt)
        s = cfg.snas
        with torch.no_grad():
            self.alpha.normal_(s.init_mean, s.init_std)
        if s.arch_optimizer == "adam":
            a = cfg.alpha
            self.opt = torch.optim.Adam(
                [self.alpha], lr=a.lr, betas=a.betas, weight_decay=a.weight_decay
            )
        else:
            self.opt = torch.optim.SGD([self.alpha], lr=cfg.alpha.lr)
        self.temp = temperature(s, 1, cfg.epochs)

    def begin_epoch(self, epoch: int, total: int) -> None:
        self.temp = temperature(self.cfg.snas, epoch, self.cfg.epochs)

    @staticmethod
    def mix(alpha: torch.Tensor) -> torch.Tensor:
        return F.softmax(alpha, dim=-1)

    def mixing_weights(self) -> torch.Tensor:
        with torch.no_grad():
            return gumbel_soft(self.alpha, self.temp)

    def weight_step(self, forward, batch: Batch, arch_frozen: bool):
        x, y = batch
        cfg = self.cfg
        self.w_opt.zero_grad(set_to_none=True)
        self.opt.zero_grad(set_to_none=True)
        z = gumbel_soft(self.alpha if not arch_frozen else self.alpha.detach(), self.temp)
        with autocast(x.device, cfg.precision):
            logits = forward(x, weights=z)
            loss = F.cross_entropy(logits, y)
        loss.backward(inputs=self.w_params if arch_frozen else [*self.w_params, self.alpha])
        if cfg.weights.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.w_params, cfg.weights.grad_clip)
        self.w_opt.step()
        if not arch_frozen:
            if cfg.snas.arch_grad_clip > 0:
                torch.nn.utils.clip_grad_norm_([self.alpha], cfg.snas.arch_grad_clip)
            self.opt.step()
        return loss, logits

    def arch_step(self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float) -> None:
        """Nothing: SNAS moves alpha in `weight_step`, on the weight batch."""

    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def weight_decay(self) -> float:
        return self.opt.param_groups[0].get("weight_decay", 0.0)

    def state_dict(self) -> dict:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state)
