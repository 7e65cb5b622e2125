"""GDAS (Dong & Yang, CVPR 2019): one Gumbel-max hard sample per edge and forward.

Upstream: D-X-Y/AutoDL-Projects @ f46486e21b71ae6459a700be720d7648b5429569,
`exps/NAS-Bench-201-algos/GDAS.py`, `xautodl/models/cell_searchs/search_model_gdas.py`
(`forward`), `search_cells.py` (`forward_gdas`).

Sample (every forward draws its own, one per edge row, shared by all cells of the net):
g = -log(Exponential(1)) (torch's global generator, seeded and checkpointed), logits =
(log_softmax(alpha) + g) / tau, p = softmax(logits), h = one_hot(argmax p) - p.detach() + p
(value one-hot, gradient that of p: straight-through); drawn again while g or p holds inf/NaN.
Per step, in upstream's order: the weight step (SGD, clipped) mixing a sample h, then the
architecture step: Adam (search.alpha.*) on the arch batch's loss mixing a fresh sample h(alpha).
tau per epoch e (0-based of E = warmup + joint epochs): tau_max - (tau_max - tau_min) e / (E - 1),
so the first epoch runs at tau_max and the last at tau_min. The recorded distribution,
evaluation, Hessian and genotype use softmax(alpha), as upstream's genotype (argmax of alpha).

Deviations from upstream:
- our supernets compute every op of a mixed edge and sum w_k op_k(x), so the forward's value is
  upstream's (one op per edge, times h[idx] = 1), but the gradient reaching the non-sampled
  entries of h is <dL/dnode, op_k(x)> (DARTS's) where upstream's `forward_gdas` adds them as
  scalars (gradient: the sum of dL/dnode); and the weight step costs a full supernet forward
  (upstream computes one op per edge);
- upstream's weight step clips the norm of all `network.parameters()` gradients, alpha's
  straight-through gradient included; ours clips the weights' only;
- DARTS space: upstream's NASNet variant keeps per node the top 2 (op, input) pairs (both may
  come from one edge); we keep DARTS's genotype rule.

NAS-Bench-1Shot1 (automl/nasbench-1shot1 @ cb0f0ec61ce8b37f8e2d0f2728c3ef0b9ec81bf1,
`optimizers/gdas/model_search.py` `GDASNetwork.forward`, `optimizers/gdas/architect.py`,
`optimizers/gdas/train_search.py`): a different GDAS, followed as written there:
- every CELL draws its own sample (the supernet's per-cell `weights` option), in upstream's order:
  the op weights F.gumbel_softmax(alpha, tau, hard=True) (straight-through one-hot), then the
  output and each input connection vector F.gumbel_softmax(beta, tau, hard=False) (a soft sample:
  upstream keeps them soft, "hard very quickly gave exploding gradients");
- the architecture step FIRST (Adam on alpha and the connection parameters through the per-cell
  samples, their gradient norm clipped to weights.grad_clip as `ArchitectGDAS.step`), then the
  weight step (its own per-cell samples);
- tau of epoch e (0-based of E): tau_max + e (tau_min - tau_max) / E (the last epoch runs one
  step above tau_min); upstream's 1Shot1 default is --tau_min 1 (set `gdas.tau_min: 1`; the key's
  default 0.1 is AutoDL's NAS-Bench-201 one);
- deviations: the ops of a block are all computed (upstream's `MixedOpGDAS` skips the zero
  weights: the same value; the gradient of the non-sampled entries is DARTS's, as above);
  upstream's `infer` (valid_acc) also samples, ours mixes softmax(alpha) with the softmaxed
  connections, as the recorded distribution and the genotype (upstream's genotype is the argmax
  too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ray_nas.algorithms.base import Batch, LossOf
from ray_nas.algorithms.darts import DartsV1


def gumbel_hard(alpha: torch.Tensor, tau: float) -> torch.Tensor:
    """[E, K] straight-through Gumbel-max sample of softmax(alpha) at temperature tau."""
    while True:
        gumbels = -torch.empty_like(alpha).exponential_().log()
        logits = (alpha.log_softmax(dim=-1) + gumbels) / tau
        probs = F.softmax(logits, dim=-1)
        index = probs.max(-1, keepdim=True)[1]
        one_h = torch.zeros_like(logits).scatter_(-1, index, 1.0)
        hard = one_h - probs.detach() + probs
        bad = torch.isinf(gumbels).any() or torch.isinf(probs).any() or torch.isnan(probs).any()
        if not bad:
            return hard


def tau_of(settings, epoch: int, total: int) -> float:
    """The temperature of training epoch `epoch` (1-based) of `total`."""
    if total <= 1:
        return settings.tau_max
    return settings.tau_max - (settings.tau_max - settings.tau_min) * (epoch - 1) / (total - 1)


def tau_of_1shot1(settings, epoch: int, total: int) -> float:
    """nasbench-1shot1's GDAS temperature of training epoch `epoch` (1-based) of `total`:
    tau_max + (epoch - 1) (tau_min - tau_max) / total."""
    return settings.tau_max + (epoch - 1) * (settings.tau_min - settings.tau_max) / total


class Gdas(DartsV1):
    name = "gdas"

    def __init__(self, cfg, model, w_params, w_opt):
        super().__init__(cfg, model, w_params, w_opt)
        self.tau = cfg.gdas.tau_max
        #: NAS-Bench-1Shot1 (a supernet with connection weights): nasbench-1shot1's GDAS
        self.per_cell = bool(self.connections) and hasattr(model, "cell_sampler")

    def begin_epoch(self, epoch: int, total: int) -> None:
        schedule = tau_of_1shot1 if self.per_cell else tau_of
        self.tau = schedule(self.cfg.gdas, epoch, total)

    def sampler(self, detach: bool):
        """nasbench-1shot1's per-cell draw: hard Gumbel-softmax ops, soft Gumbel-softmax
        connections, at the current tau."""
        tau = self.tau
        return self.model.cell_sampler(
            lambda a: F.gumbel_softmax(a, tau=tau, hard=True, dim=-1),
            lambda b: F.gumbel_softmax(b, tau=tau, hard=False, dim=-1),
            detach=detach,
        )

    def mixing_weights(self):
        if self.per_cell:
            return self.sampler(detach=True)
        with torch.no_grad():
            return gumbel_hard(self.alpha, self.tau)

    def arch_step(self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float) -> None:
        xv, yv = arch
        if not self.per_cell:
            self.backward_and_step(loss_of(xv, yv, gumbel_hard(self.alpha, self.tau)))
            return
        self.opt.zero_grad(set_to_none=True)
        loss_of(xv, yv, self.sampler(detach=False)).backward(inputs=self.arch_parameters)
        if self.cfg.weights.grad_clip > 0:  # upstream ArchitectGDAS: args.grad_clip
            torch.nn.utils.clip_grad_norm_(self.arch_parameters, self.cfg.weights.grad_clip)
        self.opt.step()
