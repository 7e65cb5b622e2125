"""The interface every search algorithm implements, and the Adam-driven base most of them share.

Shapes: the raw architecture parameter `alpha` is [E, K] (edges x candidate ops, the space's
order); a distribution over ops is [E, K] with rows summing to 1. The parameter lives in the
supernet (`model.alpha`, excluded from `model.weight_parameters()`, so the weights' optimiser,
weight decay and clipping never touch it, and the model's state_dict carries it to checkpoints);
the algorithm decides how it is initialised, how it becomes mixing weights, and how it moves.
A supernet may have further architecture parameters, `connection_parameters()` (NAS-Bench-1Shot1's
input/output connection weights): the supernet softmaxes them itself; the Adam algorithms that
support them (AlgorithmInfo.connections) move them with alpha in one Adam, with the same lr,
betas and weight decay, as upstream's Architect does with all of `arch_parameters()`.
The loop (ray_nas.search.loop) calls, per epoch: `begin_epoch(epoch, total)` first (schedules:
temperatures, perturbation radii); per step: `weight_step(...)` (by default one SGD step mixing
with `mixing_weights()`; an algorithm that needs the weight batch for its mixing weights, or moves
alpha in the same step, overrides it) and `arch_step(...)` before or after it (search.step_order; the registry's upstream order,
ray_nas.algorithms.arch_first); per
epoch: `mix` (the Hessian) after the evaluation, then `end_epoch(epoch, total)` (SGAS's edge
decisions), then `distribution()` and `extras()` for the record; `state_dict()` for
checkpoints. The defaults of `begin_epoch`, `end_epoch` and `weight_step` are what the loop did before they
existed, so the algorithms that do not override them compute bit-identically.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ray_nas.training.runtime import autocast

#: loss_of(x, y, weights) -> scalar loss: the supernet forward under the search's autocast,
#: mixing with `weights` [E, K], cross-entropy against y [B]
LossOf = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


class Algorithm:
    """One search algorithm. Subclasses set `name` and override what differs."""

    name: ClassVar[str] = ""

    def __init__(self, cfg, model: nn.Module, w_params: list[torch.Tensor], w_opt):
        """cfg: spec.SearchConfig; w_params / w_opt: the supernet weights and their SGD."""
        self.cfg, self.model, self.w_params, self.w_opt = cfg, model, w_params, w_opt
        self.alpha: nn.Parameter = model.alpha
        #: further architecture parameters of the supernet that are not op weights (NAS-Bench-
        #: 1Shot1's connection weights, always softmaxed inside the forward), else []
        self.connections: list[nn.Parameter] = list(getattr(model, "connection_parameters", list)())

    @property
    def arch_parameters(self) -> list[nn.Parameter]:
        """alpha, then the connection parameters: everything the architecture step moves."""
        return [self.alpha, *self.connections]

    # -- what the supernet mixes with -----------------------------------------------------

    @staticmethod
    def mix(alpha: torch.Tensor) -> torch.Tensor:
        """Deterministic, differentiable map raw parameter [E, K] -> op distribution [E, K]."""
        raise NotImplementedError

    def mixing_weights(self) -> torch.Tensor:
        """[E, K] mixing weights for one training forward (detached; may be a random draw)."""
        return self.mix(self.alpha.detach())

    def distribution(self) -> torch.Tensor:
        """[E, K] the recorded op distribution (`alphas.weight`); evaluation forwards mix with it."""
        return self.mix(self.alpha.detach())

    def evaluation_weights(self) -> torch.Tensor:
        """[E, K] what the epoch's search-valid evaluation mixes with (default `distribution()`)."""
        return self.distribution()

    def extras(self) -> dict[str, np.ndarray]:
        """Extra per-(edge, op) float32 [E, K] columns to record (names in algorithms.EXTRA_COLUMNS)."""
        return {}

    # -- how it moves -----------------------------------------------------------------------

    def begin_epoch(self, epoch: int, total: int) -> None:
        """Called before the first step of training epoch `epoch` (1-based, of `total` = warmup +
        joint epochs), on a fresh run and on a resumed one alike: per-epoch schedules must be pure
        functions of the epoch (they then need no checkpoint state). Default: nothing."""

    def end_epoch(self, epoch: int, total: int) -> None:
        """Called after training epoch `epoch` (1-based) and its search-valid evaluation, before
        its record and checkpoint (SGAS's edge decisions): what it changes must be in
        `state_dict()`. Default: nothing."""

    def weight_step(self, forward, batch: Batch, arch_frozen: bool):
        """One step on the supernet weights on the weight batch; returns (loss, logits [B, classes]).

        forward: the supernet (compiled when search.compile), called as forward(x, weights=...);
        arch_frozen: alpha must not move in this step (warmup). Default: `sgd_step` mixing with
        `mixing_weights()`."""
        return self.sgd_step(forward, batch, self.mixing_weights())

    def sgd_step(self, forward, batch: Batch, weights: torch.Tensor):
        """One SGD step of the weights (clipped to weights.grad_clip) on CE(forward(x, weights), y)
        under the search's autocast; returns (loss, logits)."""
        x, y = batch
        cfg = self.cfg
        self.w_opt.zero_grad(set_to_none=True)
        with autocast(x.device, cfg.precision):
            logits = forward(x, weights=weights)
            loss = F.cross_entropy(logits, y)
        loss.backward(inputs=self.w_params)
        if cfg.weights.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.w_params, cfg.weights.grad_clip)
        self.w_opt.step()
        return loss, logits

    def arch_step(self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float) -> None:
        """One architecture update on the arch batch (train: the step's weight batch)."""
        raise NotImplementedError

    def lr(self) -> float:
        """The architecture step size (recorded as lr_alpha)."""
        raise NotImplementedError

    def weight_decay(self) -> float:
        """The L2 coefficient on alpha that the update applies (the recorded Hessian adds it
        times I): none unless the algorithm's update has one (GAEA has none)."""
        return 0.0

    def state_dict(self) -> dict:
        """Optimiser state for checkpoints (the parameter itself is in the model's state_dict)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class AdamAlgorithm(Algorithm):
    """An algorithm whose architecture parameter moves by Adam (search.alpha.*)."""

    def __init__(self, cfg, model, w_params, w_opt):
        super().__init__(cfg, model, w_params, w_opt)
        self.opt = torch.optim.Adam(
            self.arch_parameters,
            lr=cfg.alpha.lr,
            betas=cfg.alpha.betas,
            weight_decay=self.weight_decay(),
        )

    def weight_decay(self) -> float:
        """Adam's coupled weight decay on alpha (search.alpha.weight_decay)."""
        return self.cfg.alpha.weight_decay

    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state)

    def backward_and_step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward(inputs=self.arch_parameters)
        self.opt.step()
