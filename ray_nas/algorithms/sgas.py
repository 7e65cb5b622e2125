"""SGAS (Li et al., CVPR 2020): DARTS-V1 with greedy edge decisions.

Upstream: lightaime/sgas @ 9cfff65a123a080cb4b302f26420a1c5aae9c96f, `cnn/train_search.py`
(`edge_decision`, `histogram_average`, the epoch loop), `cnn/model_search.py` (`Cell.forward`,
`check_edges`), `cnn/architect.py` (first order), `cnn/utils.py` (`normalize`,
`histogram_intersection`).

Per step (upstream's order): the architecture step first, Adam (search.alpha.*) on the arch
batch's loss, first order, then the weight step; both mix softmax(alpha) on the undecided edges and
the decided op alone on a decided edge (one-hot; a pruned edge one-hot on `none`, i.e. no output).
After each epoch (after its search-valid evaluation, as upstream's `infer` precedes
`edge_decision`), per cell type (normal, then reduce), on that type's 14 rows:
mat = softmax(alpha) (decided rows at their frozen alpha), importance = sum of the non-`none`
columns, probs = those columns / importance, entropy = Categorical(probs).entropy() / log(K - 1);
criterion 1: score = normalize(importance) * normalize(1 - entropy); criterion 2 (upstream's
--use_history): times normalize(the mean histogram intersection sum_k min(p_k, h_k) of probs
with the last `history_size` epochs' probs), probs then appended to that window every epoch;
normalize(v) = (v - min v) / (max v - min v), 0 where the range is 0. Upstream epoch e (0-based)
= our epoch e + 1: when e >= warmup_dec_epoch, (e - warmup_dec_epoch) % decision_freq == 0 and an
edge is undecided, the undecided edge of highest score is fixed to its argmax non-`none` op and
leaves alpha's optimisation; a node with 2 decided inputs has its other edges pruned
(`check_edges`). Upstream's full schedule: warmup_dec_epoch + decision_freq * 7 + 5 + 1 = 50
epochs (8 decisions per cell type, the last at upstream epoch 44).

Decided rows: their alpha gets no gradient (the mixing weights there are constants) and is
restored after every Adam step, so Adam's weight decay and momentum do not move it (upstream sets
`requires_grad = False`, hence grad None: Adam skips it); the other rows' updates are the same
(Adam is elementwise and every undecided row has the same step count). The record: `alpha` the
raw parameter (decided rows frozen), `weight` the mixing weights (decided rows one-hot); the
decisions and criterion 2's window are in the checkpoint, so a resume repeats them exactly.

Deviations from upstream:
- every op of a decided edge is still computed, multiplied by 0 (upstream runs the decided op
  alone and skips pruned edges): the same value; the unused ops' weights get a zero gradient, so
  SGD's weight decay and momentum still move them (upstream: no gradient, not stepped); they
  never contribute again;
- the batch size stays search.batch_size (upstream grows both loaders by --batch_increase 8 images
  after each decision epoch);
- the recorded genotype while edges are undecided is DARTS's rule on the mixing weights (a node's
  2 strongest edges by their largest non-`none` weight: the decided ones first); upstream's
  `parse_gene_force` ranks the undecided edges by importance (sum). Once every edge is decided
  both give the decided cell;
- the recorded Hessian eigenvalue is w.r.t. alpha through the mixing weights (decided rows
  constant: zero curvature there), plus alpha.weight_decay, as darts_v1;
- spaces: DARTS only (upstream's); NB201 and NAS-Bench-1Shot1 have no SGAS code upstream (nor in
  NASLib); the op list must contain `none` (importance is the mass off `none`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Categorical

from ray_nas.algorithms.base import Batch, LossOf
from ray_nas.algorithms.darts import DartsV1
from ray_nas.spaces import get_space


def normalize(v: torch.Tensor) -> torch.Tensor:
    """Upstream `utils.normalize`: (v - min) / (max - min), zeros where the range is 0."""
    min_v = torch.min(v)
    range_v = torch.max(v) - min_v
    if range_v > 0:
        return (v - min_v) / range_v
    return torch.zeros_like(v)


def histogram_average(history: list[torch.Tensor], probs: torch.Tensor) -> torch.Tensor:
    """[E] the mean over `history` of sum_k min(h_k, p_k) per row (zeros without history)."""
    out = torch.zeros(probs.shape[0], dtype=probs.dtype, device=probs.device)
    for hist in history:
        out += torch.minimum(hist.to(probs), probs).sum(dim=1)
    if history:
        out /= len(history)
    return out


def node_ranges(edges: int) -> list[tuple[int, int]]:
    """(start, end) of each node's incoming rows in a 14-row cell (2, 3, 4, 5 inputs)."""
    out, start, n = [], 0, 2
    while start < edges:
        out.append((start, start + n))
        start, n = start + n, n + 1
    return out


class Sgas(DartsV1):
    name = "sgas"

    def __init__(self, cfg, model, w_params, w_opt):
        super().__init__(cfg, model, w_params, w_opt)
        ops = list(cfg.ops)
        self.none = ops.index("none")
        self.cols = [k for k, o in enumerate(ops) if o != "none"]
        rows = get_space(cfg.space).rows()
        cells = list(dict.fromkeys(c for c, _ in rows))
        #: each cell type's rows of alpha, in upstream's decision order (normal, then reduce)
        self.cell_rows = {c: [i for i, (cc, _) in enumerate(rows) if cc == c] for c in cells}
        #: [R] the decided op of each row (-1 undecided; `none` = pruned), upstream's selected_idxs
        self.selected = torch.full((len(rows),), -1, dtype=torch.long)
        #: criterion 2's window of probs [14, K-1] per cell type, oldest first
        self.history: dict[str, list[torch.Tensor]] = {c: [] for c in cells}
        #: (epoch, cell, row, op) of every decision, pruning included (op = `none`)
        self.decisions: list[tuple[int, str, int, int]] = []

    # -- mixing -----------------------------------------------------------------------------

    def decided(self) -> torch.Tensor:
        return self.selected >= 0

    def mix(self, alpha: torch.Tensor) -> torch.Tensor:
        """softmax(alpha), decided rows replaced by the one-hot of their op (constants)."""
        w = F.softmax(alpha, dim=-1)
        decided = self.decided()
        if not bool(decided.any()):
            return w
        hot = F.one_hot(self.selected.clamp(min=0), alpha.shape[-1]).to(w)
        return torch.where(decided.to(w.device)[:, None], hot, w)

    # -- moving ------------------------------------------------------------------------------

    def arch_step(self, loss_of: LossOf, train: Batch, arch: Batch, lr_weights: float) -> None:
        decided = self.decided().to(self.alpha.device)
        frozen = self.alpha.detach()[decided].clone()
        super().arch_step(loss_of, train, arch, lr_weights)
        if len(frozen):
            with torch.no_grad():
                self.alpha[decided] = frozen

    def end_epoch(self, epoch: int, total: int) -> None:
        """Upstream's `edge_decision` for each cell type after training epoch `epoch` (1-based)."""
        s = self.cfg.sgas
        e = epoch - 1  # upstream's 0-based epoch
        due = e >= s.warmup_dec_epoch and (e - s.warmup_dec_epoch) % s.decision_freq == 0
        with torch.no_grad():
            for cell, rows in self.cell_rows.items():
                self._edge_decision(cell, rows, due, epoch)

    def _edge_decision(self, cell: str, rows: list[int], due: bool, epoch: int) -> None:
        s = self.cfg.sgas
        mat = F.softmax(self.alpha.detach()[rows], dim=-1)
        importance = mat[:, self.cols].sum(dim=-1)
        probs = mat[:, self.cols] / importance[:, None]
        entropy = Categorical(probs=probs).entropy() / math.log(probs.shape[1])
        score = normalize(importance) * normalize(1 - entropy)
        if s.criterion == 2:
            hist = self.history[cell]
            inter = histogram_average(hist, probs)
            hist.append(probs.cpu().clone())
            if len(hist) > s.history_size:
                hist.pop(0)
            score = score * normalize(inter)
        sel = self.selected[rows]
        flags = sel < 0
        if not (due and bool(flags.any())):
            return
        masked = torch.min(score.cpu(), (2 * flags.to(score.dtype) - 1) * math.inf)
        edge = int(torch.argmax(masked))
        op = self.cols[int(torch.argmax(probs[edge]))]
        self.selected[rows[edge]] = op
        self.decisions.append((epoch, cell, rows[edge], op))
        for start, end in node_ranges(len(rows)):  # upstream's check_edges
            node = [rows[j] for j in range(start, end)]
            if int((self.selected[node] >= 0).sum()) >= 2:
                for r in node:
                    if self.selected[r] < 0:
                        self.selected[r] = self.none
                        self.decisions.append((epoch, cell, r, self.none))

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "adam": self.opt.state_dict(),
            "selected": self.selected.clone(),
            "history": {c: [h.clone() for h in hs] for c, hs in self.history.items()},
            "decisions": [list(d) for d in self.decisions],
        }

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["adam"])
        self.selected = state["selected"].clone().long().cpu()
        self.history = {c: [h.clone() for h in hs] for c, hs in state["history"].items()}
        self.decisions = [tuple(d) for d in state["decisions"]]
