"""Search algorithms: one module per algorithm behind one interface (`base.Algorithm`), and this registry.

This module is torch-free (the job spec imports it): it names each algorithm, where its class
lives, and its own job keys (`search.<name>.*`) as a frozen dataclass with the upstream defaults.
Adding an algorithm: a module with an `Algorithm` subclass, and one `REGISTRY` line here (plus its
settings dataclass when it has job keys of its own, and that field in `spec.SearchConfig`).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DartsV2Settings:
    """DARTS-V2 (second order, AutoDL-Projects `DARTS-V2.py`)."""

    radius: float = 0.01
    """finite-difference radius: the Hessian-vector product perturbs the weights by radius / ||v||"""


@dataclass(frozen=True)
class GaeaSettings:
    """GAEA (exponentiated gradient on the simplex, liamcli/gaea_release `architect_edarts.py`)."""

    eta: float = 0.1
    """step size of the multiplicative update alpha <- alpha * exp(-eta * grad) (constant)"""
    clamp: float = 1.0e-5
    """floor of the un-normalised product before renormalising (an op never reaches 0)"""


@dataclass(frozen=True)
class DrnasSettings:
    """DrNAS (Dirichlet, xiangning-chen/DrNAS `201-space/train_search.py`)."""

    reg: str = "l2"
    """l2 (Adam's coupled weight decay on theta, the NB201 code default) | kl (KL to Dir(1))"""
    reg_scale: float = 1.0e-3
    """the l2 weight decay, or the KL term's factor; replaces search.alpha.weight_decay"""


@dataclass(frozen=True)
class SdartsRsSettings:
    """SDARTS-RS (random smoothing; xiangning-chen/SmoothDARTS `attacker/perturb.py::Random_alpha`)."""

    epsilon_min: float = 0.03
    """perturbation radius of the first epoch (upstream's constant 0.03)"""
    epsilon_max: float = 0.3
    """upstream's --epsilon_alpha: epoch e (0-based of E) perturbs with radius
    epsilon_min + (epsilon_max - epsilon_min) * e / E (schedule linear)"""
    schedule: str = "linear"
    """linear (upstream's code: the ramp above) | constant (epsilon_min every epoch, the paper's text)"""


@dataclass(frozen=True)
class SdartsAdvSettings:
    """SDARTS-ADV (PGD on the mixing weights; SmoothDARTS `attacker/perturb.py::Linf_PGD_alpha`)."""

    epsilon_min: float = 0.03
    """attack radius (L-inf) of the first epoch"""
    epsilon_max: float = 0.3
    """upstream's --epsilon_alpha: radius epsilon_min + (epsilon_max - epsilon_min) * e / E"""
    schedule: str = "linear"
    """linear (upstream's code) | constant (epsilon_min every epoch)"""
    steps: int = 7
    """PGD steps per weight step (each a forward and backward on the weight batch)"""
    random_start: bool = True
    """start the attack from a uniform draw in the epsilon ball (then clipped to the simplex)"""
    attack_mode: str = "eval"
    """eval (upstream: the attack's forwards in eval mode, BatchNorm on running statistics where
    tracked) | train"""


@dataclass(frozen=True)
class GdasSettings:
    """GDAS (Gumbel-max hard sample; D-X-Y/AutoDL-Projects `exps/NAS-Bench-201-algos/GDAS.py`)."""

    tau_max: float = 10.0
    """Gumbel-softmax temperature of the first epoch"""
    tau_min: float = 0.1
    """temperature of the last epoch (linear in the epoch in between)"""


@dataclass(frozen=True)
class SnasSettings:
    """SNAS (Gumbel-softmax relaxation, one joint step; SNAS-Series/SNAS-Series `SNAS/train_search.py`)."""

    temp_init: float = 1.0
    """initial temperature T0 (--temp)"""
    temp_min: float = 0.03
    """final temperature (--temp_min)"""
    temp_epochs: int | None = None
    """epochs of the linear temperature decay T(e) = (1 - e/temp_epochs)(T0 - temp_min) + temp_min
    (e = 1, 2, ...; null = the run's epochs; upstream hard-codes 150)"""
    init_mean: float = 1.0
    """log-alpha initialised N(init_mean, init_std) (upstream: normal_(1, 0.01))"""
    init_std: float = 0.01
    """standard deviation of the log-alpha initialisation (upstream: 0.01)"""
    arch_optimizer: str = "sgd"
    """sgd (the single-GPU code: SGD at alpha.lr, no momentum, no weight decay) | adam (the
    distributed code: Adam with alpha.lr, alpha.betas, alpha.weight_decay)"""
    arch_grad_clip: float = 10.0
    """max L2 norm of the gradient of log-alpha (upstream 10); 0 = no clipping"""


@dataclass(frozen=True)
class NaspSettings:
    """NASP (proximal step; xujinfan/NASP-codes `codes/architect.py`, `model_search.py`)."""

    init: float = 0.5
    """every alpha entry starts at this value (upstream 0.5, no noise); alpha stays in [0, 1]"""


@dataclass(frozen=True)
class GaeaPcDartsSettings:
    """GAEA + PC-DARTS (liamcli/gaea_release `architect_edarts.py`, learn_edges: true)."""

    eta: float = 0.1
    """step size of the exponentiated-gradient update of alpha (arch_learning_rate)"""
    clamp: float = 1.0e-5
    """floor of alpha's un-normalised product before renormalising"""
    edge_eta: float = 0.1
    """step size of the exponentiated-gradient update of the edge weights (edge_learning_rate)"""
    edge_clamp: float = 0.0
    """floor of the edge weights' un-normalised product; 0 = none (upstream)"""


@dataclass(frozen=True)
class SgasSettings:
    """SGAS (greedy edge decisions; lightaime/sgas `cnn/train_search.py`)."""

    criterion: int = 1
    """1: edge importance x selection certainty | 2: x selection stability too (upstream's
    --use_history: histogram intersection with the last history_size epochs)"""
    warmup_dec_epoch: int = 9
    """epochs before the first decision: decisions after epochs warmup_dec_epoch + 1,
    + decision_freq, ... (upstream's 0-based epoch warmup_dec_epoch, ...)"""
    decision_freq: int = 5
    """epochs between decisions (one edge per cell type each)"""
    history_size: int = 4
    """criterion 2's window of past epochs' op distributions"""


@dataclass(frozen=True)
class AlgorithmInfo:
    name: str
    target: str
    """module:Class of the Algorithm subclass"""
    summary: str
    settings: type | None = None
    """dataclass of the algorithm's own keys (search.<name>.*), or None"""
    uses: tuple[str, ...] = ()
    """the shared search keys it reads (shown by `ray-nas algorithms`)"""
    connections: bool = False
    """moves a supernet's connection weights (NAS-Bench-1Shot1's input/output weights, PC-DARTS's
    edge-normalisation betas) with alpha; a search that has them refuses the other algorithms"""
    betas: bool = True
    """with `connections`: also moves PC-DARTS's edge-normalisation betas (nb201, darts); False:
    the NAS-Bench-1Shot1 connection weights only (GDAS, as nasbench-1shot1)"""
    source: str = ""
    """the upstream code followed (repository @ commit: files)"""
    deviations: str = ""
    """where this implementation differs from that code (also in the module's docstring)"""
    arch_first: bool = True
    """upstream's step order: the architecture step before the weight step of each batch"""
    weights_first_spaces: tuple[str, ...] = ()
    """the spaces whose upstream code steps the weights first (overrides arch_first there)"""
    arch_first_spaces: tuple[str, ...] = ()
    """the spaces whose upstream code steps the architecture first (overrides arch_first there)"""
    choices: tuple[str, ...] = ()
    """how this implementation differs from (or chooses among) its upstream codes, one line each
    (shown by `ray-nas algorithms` and docs/algorithms.md)"""


ADAM = ("alpha.lr", "alpha.betas", "alpha.weight_decay")
PC_KEYS = ("partial_channels", "edge_normalization")
NB1SHOT1 = ("nb1shot1_s1", "nb1shot1_s2", "nb1shot1_s3")
#: the weight step's clip and the running statistics, as every algorithm here does them
_CLIP = (
    "weights.grad_clip: the norm is over the supernet weights' gradients only (as quark0/darts, "
    "SS-DARTS, nasbench-1shot1, RobustDARTS, gaea_release); AutoDL's NAS-Bench-201 DARTS-V1/V2 "
    "and DrNAS's NAS-Bench-201 code clip network.parameters(), whose norm also counts alpha's "
    "gradient (a choice: alpha is not a weight here)"
)
REGISTRY: dict[str, AlgorithmInfo] = {
    info.name: info
    for info in (
        AlgorithmInfo(
            "darts_v1", "ray_nas.algorithms.darts:DartsV1",
            "first-order DARTS: softmax(alpha); an Adam alpha step on d L_valid / d alpha "
            "(search.step_order upstream: weights first on nb201, architecture first elsewhere)",
            uses=ADAM, connections=True, arch_first=True, weights_first_spaces=("nb201",),
            choices=(
                "step order: weights then alpha on nb201 (AutoDL DARTS-V1.py, the paper's "
                "NAS-Bench-201 fork); alpha then weights on darts and nb1shot1_* (quark0/darts "
                "train_search.py, SS-DARTS train_search.py, nasbench-1shot1 optimizers/darts)",
                "Hessian eigenvalue: d2 L_valid / d alpha2 + alpha.weight_decay * I (R-DARTS)",
                _CLIP,
            ),
        ),
        AlgorithmInfo(
            "darts_v2", "ray_nas.algorithms.darts:DartsV2",
            "second-order DARTS: alpha step first with the unrolled (finite-difference) "
            "hypergradient, then the weight step", DartsV2Settings, ADAM, connections=True,
            choices=(
                "step order: alpha then weights in every space (AutoDL DARTS-V2.py, quark0/darts)",
                "BatchNorm running statistics: restored after the hypergradient's extra passes "
                "(upstream's passes at w, w+Rv, w-Rv update them); alpha and the weights are the "
                "same either way (train-mode forwards use batch statistics), only eval-mode "
                "numbers (valid_loss/valid_acc) can differ, and only where statistics are tracked",
                "Hessian eigenvalue: + alpha.weight_decay * I, as darts_v1",
                _CLIP,
            ),
        ),
        AlgorithmInfo(
            "gaea", "ray_nas.algorithms.gaea:Gaea",
            "GAEA: alpha on the simplex, mixed directly; exponentiated-gradient step first "
            "(no Adam, no weight decay)", GaeaSettings,
            choices=(
                "step order: alpha then weights in every space (gaea_release cnn/train_search.py)",
                "Hessian eigenvalue: d2 L_valid / d alpha2 only (GAEA's update has no L2 term; "
                "alpha.weight_decay is not read); upstream computes none",
                _CLIP,
            ),
        ),
        AlgorithmInfo(
            "drnas", "ray_nas.algorithms.drnas:Drnas",
            "DrNAS: one Dirichlet(ELU(theta)+1) sample per forward; Adam step first; records "
            "the Dirichlet mean and the concentration", DrnasSettings, ("alpha.lr", "alpha.betas"),
            choices=(
                "step order: theta then weights in every space (DrNAS train_search.py; its "
                "DARTS-space code also freezes theta for 10 epochs per stage: not modelled)",
                "Hessian eigenvalue: + drnas.reg_scale * I with reg l2 (Adam's coupled weight "
                "decay), + 0 with reg kl (the eigenvalue is then of the cross-entropy only)",
                "BatchNorm running statistics: upstream's NAS-Bench-201 supernet tracks them "
                "(TinyNetwork(track_running_stats=True)); set search.track_running_stats: true "
                "to match it",
                _CLIP,
            ),
        ),
        AlgorithmInfo(
            "sdarts_rs", "ray_nas.algorithms.sdarts:SdartsRS",
            "SDARTS-RS: DARTS (Adam step first) whose weight step mixes softmax(alpha) + U(-eps, "
            "eps), clipped back onto the simplex", SdartsRsSettings, ADAM,
            source="xiangning-chen/SmoothDARTS@d3dbfed0: attacker/perturb.py, sota/cnn/train_search.py",
            deviations="noise drawn as one [E, K] tensor (upstream: per cell type); no "
            "NAS-Bench-1Shot1; BatchNorm running statistics only with track_running_stats",
        ),
        AlgorithmInfo(
            "sdarts_adv", "ray_nas.algorithms.sdarts:SdartsADV",
            "SDARTS-ADV: as SDARTS-RS with the perturbation a PGD attack (L-inf ball, signed "
            "steps) on the weight batch", SdartsAdvSettings, ADAM,
            source="xiangning-chen/SmoothDARTS@d3dbfed0: attacker/perturb.py (Linf_PGD_alpha), "
            "attacker/linf_sgd.py",
            deviations="as sdarts_rs; the attack's backward reaches only the perturbation",
        ),
        AlgorithmInfo(
            "gdas", "ray_nas.algorithms.gdas:Gdas",
            "GDAS: one Gumbel-max hard sample per edge and forward (straight-through), tau "
            "annealed; weight step, then an Adam alpha step (nb1shot1_*: nasbench-1shot1's "
            "GDAS: a sample per cell, soft Gumbel connection weights, architecture step first, "
            "its gradient clipped)", GdasSettings, ADAM, connections=True, betas=False,
            arch_first=False,  # the weight step first, as upstream (AutoDL)
            arch_first_spaces=NB1SHOT1,  # nasbench-1shot1 optimizers/gdas: architect.step first
            source="D-X-Y/AutoDL-Projects@f46486e2: exps/NAS-Bench-201-algos/GDAS.py, "
            "search_model_gdas.py; nb1shot1_*: automl/nasbench-1shot1@cb0f0ec6: "
            "optimizers/gdas/model_search.py, architect.py, train_search.py",
            deviations="every op computed (value as upstream; non-sampled ops get DARTS's "
            "gradient, upstream a scalar one); weight clip excludes alpha; darts: DARTS's "
            "genotype rule; nb1shot1_*: tau schedule tau_max + e (tau_min - tau_max) / E as "
            "upstream, whose default tau_min is 1 (set it), valid_acc on softmax weights "
            "(upstream samples)",
        ),
        AlgorithmInfo(
            "snas", "ray_nas.algorithms.snas:Snas",
            "SNAS: a soft Gumbel-softmax sample per edge and forward, temperature annealed; "
            "weights and alpha move together on the weight batch (single level)", SnasSettings,
            ("alpha.lr",),
            arch_first=False,  # the weight step first, as upstream
            source="SNAS-Series/SNAS-Series@9a43adbd: SNAS/train_search.py, SNAS/model_search.py",
            deviations="weight pool is the loop's (objective erm = upstream's whole training "
            "set); no search drop-path; our genotype rule; NB201 is our adaptation; no "
            "NAS-Bench-1Shot1",
        ),
        AlgorithmInfo(
            "nasp", "ray_nas.algorithms.nasp:Nasp",
            "NASP: forwards mix the binarised alpha (one op per edge; darts: 2 edges per node), "
            "its gradient moves the continuous alpha by Adam, clipped to [0, 1]", NaspSettings,
            ADAM,
            source="xujinfan/NASP-codes@3bfb7060: codes/architect.py, codes/model_search.py",
            deviations="the space's ops (upstream: its own op set without none; use ops without "
            "none on darts); NB201 is our adaptation; no NAS-Bench-1Shot1",
        ),
        AlgorithmInfo(
            "sgas", "ray_nas.algorithms.sgas:Sgas",
            "SGAS: first-order DARTS, alpha step first; after epochs 10, 15, ... the undecided "
            "edge of highest score (importance x certainty, criterion 2 x stability) of each "
            "cell type is fixed to its best op and leaves alpha's Adam; a node with 2 decided "
            "inputs drops the rest (darts only, ops with none)", SgasSettings, ADAM,
            source="lightaime/sgas@9cfff65a: cnn/train_search.py, cnn/model_search.py, "
            "cnn/architect.py, cnn/utils.py",
            deviations="decided edges still compute every op (times 0); no batch-size increase "
            "after decisions (upstream +8 per decision epoch); the genotype of a partly decided "
            "supernet is DARTS's rule on the mixing weights (upstream ranks undecided edges by "
            "importance); no NB201 or NAS-Bench-1Shot1 (no upstream code)",
        ),
        AlgorithmInfo(
            "pc_darts", "ray_nas.algorithms.pc_darts:PcDarts",
            "PC-DARTS (yuhuixu1993/PC-DARTS @ b74702f): first-order DARTS, alpha step first, on "
            "the PC-DARTS supernet (search.partial_channels, search.edge_normalization: betas "
            "in alpha's Adam; preset lr_scheme: pc_darts); nb1shot1_*: nasbench-1shot1's "
            "PC-DARTS (partial_channels: 4, no edge normalisation, the connection weights in "
            "alpha's Adam)", uses=ADAM + PC_KEYS, connections=True,
            source="yuhuixu1993/PC-DARTS@b74702f: model_search.py, train_search.py, "
            "architect.py; nb1shot1_*: automl/nasbench-1shot1@cb0f0ec6: "
            "optimizers/pc_darts/model_search.py, train_search.py",
        ),
        AlgorithmInfo(
            "gaea_pc_darts", "ray_nas.algorithms.gaea_pc_darts:GaeaPcDarts",
            "GAEA+PC-DARTS (liamcli/gaea_release @ 1604615): exponentiated gradient on alpha and "
            "on the edge weights (mixed directly), step first, on the PC-DARTS supernet "
            "(edge weights with search.edge_normalization: true; preset lr_scheme: gaea_pc_darts)",
            GaeaPcDartsSettings, PC_KEYS, connections=True,
        ),
    )
}  # fmt: skip

NAMES: tuple[str, ...] = tuple(REGISTRY)
OBJECTIVES = ("bilevel", "erm")
#: search.step_order: upstream (the algorithm's upstream order in the space) | arch_first |
#: weights_first
STEP_ORDERS = ("upstream", "arch_first", "weights_first")
#: the order of each algorithm before search.step_order existed (one order in every space)
LEGACY_ARCH_FIRST: dict[str, bool] = {
    "darts_v1": False, "darts_v2": True, "gaea": True, "drnas": True,
}  # fmt: skip


def arch_first(algorithm: str, space: str, step_order: str = "upstream") -> bool:
    """Whether the architecture step comes before the weight step of each batch.

    step_order `upstream`: what the algorithm's upstream code does in that space (DARTS-V1:
    weights first on NAS-Bench-201, as AutoDL's DARTS-V1.py; architecture first on the DARTS and
    NAS-Bench-1Shot1 spaces, as quark0/darts, SS-DARTS and nasbench-1shot1; every other algorithm
    architecture first everywhere); `arch_first` / `weights_first` force one order."""
    if step_order == "arch_first":
        return True
    if step_order == "weights_first":
        return False
    info = REGISTRY[algorithm]
    if space in info.arch_first_spaces:
        return True
    return False if space in info.weights_first_spaces else info.arch_first


DRNAS_REGS = ("l2", "kl")
SDARTS_SCHEDULES = ("linear", "constant")
SDARTS_ATTACK_MODES = ("eval", "train")
SNAS_ARCH_OPTIMIZERS = ("sgd", "adam")
#: per-(epoch, edge, op) columns an algorithm may add to `alphas` (null where it has none)
EXTRA_COLUMNS: dict[str, str] = {
    "concentration": "DrNAS: the Dirichlet concentration ELU(theta) + 1 (> 0)",
}


def algorithm_class(name: str) -> type:
    """The Algorithm subclass registered as `name` (imports its module, hence torch)."""
    module, cls = REGISTRY[name].target.split(":")
    return getattr(importlib.import_module(module), cls)


def describe_algorithms() -> str:
    """Text for `ray-nas algorithms`: each algorithm, its own keys with defaults and docs."""
    lines = []
    for info in REGISTRY.values():
        lines.append(f"{info.name}: {info.summary}")
        if info.settings is not None:
            docs = _field_docs(info.settings)
            for f in dataclasses.fields(info.settings):
                lines.append(
                    f"    search.{info.name}.{f.name} = {f.default!r}  {docs.get(f.name, '')}"
                )
        if info.uses:
            lines.append(f"    reads: {', '.join('search.' + u for u in info.uses)}")
        if info.connections and "edge_normalization" in info.uses:
            also = (
                " and the connection weights (nb1shot1_*)"
                if "nasbench-1shot1" in info.source
                else ""
            )
            lines.append(f"    moves the edge-normalisation betas with alpha (nb201, darts){also}")
        elif info.connections:
            where = "nb1shot1_*; edge_normalization" if info.betas else "nb1shot1_*"
            lines.append(f"    moves the connection weights with alpha ({where})")
        if info.source:
            lines.append(f"    source: {info.source}")
        if info.deviations:
            lines.append(f"    deviations: {info.deviations}")
        for c in info.choices:
            lines.append(f"    - {c}")
    lines.append(
        "search.step_order: upstream (each algorithm's upstream order in the space, above) | "
        "arch_first | weights_first"
    )
    lines.append(
        "search.objective: bilevel (weights on search-train, architecture on search-valid) | "
        "erm (both on the whole training set, independent batches)"
    )
    return "\n".join(lines)


def _field_docs(cls: type) -> dict[str, Any]:
    """Field docstrings (the string literal after each field) from the source."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for a, b in zip(body, body[1:]):
        if (
            isinstance(a, ast.AnnAssign)
            and isinstance(b, ast.Expr)
            and isinstance(b.value, ast.Constant)
        ):
            docs[a.target.id] = " ".join(str(b.value.value).split())
    return docs
