"""PC-DARTS (Xu et al., ICLR 2020; yuhuixu1993/PC-DARTS @ b74702f, model_search.py,
train_search.py, architect.py): DARTS's first-order update on the PC-DARTS supernet.

The supernet options are the space's (`search.partial_channels` k: the mixed op on 1/k of the
channels, channel shuffle; `search.edge_normalization`: betas per edge, softmaxed per node, each
edge's output multiplied by its weight, the genotype rule run on softmax(alpha) * edge weight).
The algorithm is DARTS-V1's: softmax(alpha); one Adam over alpha AND the betas (the same lr, betas
and weight decay, as upstream's Architect with `arch_parameters()` = alphas + betas), first order
on the arch batch; the architecture step FIRST, then the weight step, as upstream's
train_search.py. Upstream freezes the architecture for 15 epochs with the weights' cosine running
unramped: `lr_scheme: pc_darts` sets warmup_epochs 15 and weights.warmup_rule: frozen, with
partial_channels 4 and edge_normalization. Without those options (every supernet, including
nb201's fast one) it is DARTS-V1 with the alpha step first.
"""

from __future__ import annotations

from ray_nas.algorithms.darts import DartsV1


class PcDarts(DartsV1):
    name = "pc_darts"
