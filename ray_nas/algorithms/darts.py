"""DARTS: softmax mixing over raw logits alpha [E, K]. V1 first order; V2 second order (unrolled).

V1 (NAS-Bench-201's reference DARTS-V1): the weight step, then an Adam step on
d L_valid / d alpha at the current weights. V2 (AutoDL-Projects `DARTS-V2.py`): the alpha step
FIRST, with the hypergradient of L_valid(w'(alpha), alpha) through one virtual SGD step
w' = w - xi * (mu * buf + dL_train/dw + lambda * w) (xi the current weights lr, mu / lambda the
weights' momentum / weight decay, buf the momentum buffer; nesterov and clipping ignored, as
upstream), its Hessian-vector term by central finite differences on the train batch with
radius r / ||v||; then the weight step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ray_nas.algorithms.base import AdamAlgorithm, Batch, LossOf


class DartsV1(AdamAlgorithm):
    name = "darts_v1"

    @staticmethod
    def mix(alpha: torch.Tensor) -> torch.Tensor:
        return F.softmax(alpha, dim=-1)

    def arch_step(self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float) -> None:
        xv, yv = arch
        self.backward_and_step(loss_of(xv, yv, self.mix(self.alpha)))


class DartsV2(DartsV1):
    name = "darts_v2"

    def arch_step(self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float) -> None:
        grads = self.hypergradients(loss_of, train, arch, lr_weights)
        self.opt.zero_grad(set_to_none=True)
        for p, g in zip(self.arch_parameters, grads):
            p.grad = g
        self.opt.step()

    def hypergradient(
        self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float
    ) -> torch.Tensor:
        """d L_valid(w'(alpha), alpha) / d alpha [E, K], the Hessian term by finite differences.

        Leaves weights and buffers (BN running statistics) exactly as they were.
        """
        return self.hypergradients(loss_of, train, arch, lr_weights)[0]

    def hypergradients(
        self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float
    ) -> list[torch.Tensor]:
        """`hypergradient` for every architecture parameter (alpha, then the connections)."""
        (xt, yt), (xv, yv) = train, arch
        params, alpha, arch_params = self.w_params, self.alpha, self.arch_parameters
        saved = self._snapshot()
        group = self.w_opt.param_groups[0]
        mu, wd = group["momentum"], group["weight_decay"]
        g_w = torch.autograd.grad(loss_of(xt, yt, self.mix(alpha).detach()), params)
        with torch.no_grad():  # the virtual step w' (in place; restored below)
            for p, g in zip(params, g_w):
                buf = self.w_opt.state.get(p, {}).get("momentum_buffer")
                step = g + wd * p if buf is None else mu * buf + g + wd * p
                p.sub_(lr_weights * step)
        n = len(arch_params)
        grads = torch.autograd.grad(loss_of(xv, yv, self.mix(alpha)), [*arch_params, *params])
        g_arch, v = grads[:n], grads[n:]
        h = self._hessian_vector(loss_of, (xt, yt), v, saved)
        self._restore(saved)
        return [g - lr_weights * hk for g, hk in zip(g_arch, h)]

    def _hessian_vector(self, loss_of: LossOf, train: Batch, v, saved) -> list[torch.Tensor]:
        """[grad_a L_train(w + R v) - grad_a L_train(w - R v)] / (2R), R = radius/||v||, for each
        architecture parameter a (alpha, then the connections)."""
        arch_params = self.arch_parameters
        norm = torch.cat([g.reshape(-1) for g in v]).norm()
        if norm == 0:
            return [torch.zeros_like(a) for a in arch_params]
        r = self.cfg.darts_v2.radius / norm
        out = []
        for sign in (1.0, -1.0):
            self._restore(saved)
            with torch.no_grad():
                for p, g in zip(self.w_params, v):
                    p.add_(g, alpha=float(sign * r))
            out.append(torch.autograd.grad(loss_of(*train, self.mix(self.alpha)), arch_params))
        return [(a - b) / (2 * r) for a, b in zip(*out)]

    def _snapshot(self) -> list[torch.Tensor]:
        return [t.detach().clone() for t in (*self.w_params, *self.model.buffers())]

    @torch.no_grad()
    def _restore(self, saved: list[torch.Tensor]) -> None:
        for t, s in zip((*self.w_params, *self.model.buffers()), saved):
            t.copy_(s)
