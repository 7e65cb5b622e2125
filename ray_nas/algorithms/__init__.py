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


ADAM = ("alpha.lr", "alpha.betas", "alpha.weight_decay")
PC_KEYS = ("partial_channels", "edge_normalization")
REGISTRY: dict[str, AlgorithmInfo] = {
    info.name: info
    for info in (
        AlgorithmInfo(
            "darts_v1", "ray_nas.algorithms.darts:DartsV1",
            "first-order DARTS: softmax(alpha); weight step, then an Adam alpha step", uses=ADAM,
            connections=True,
        ),
        AlgorithmInfo(
            "darts_v2", "ray_nas.algorithms.darts:DartsV2",
            "second-order DARTS: alpha step first with the unrolled (finite-difference) "
            "hypergradient, then the weight step", DartsV2Settings, ADAM, connections=True,
        ),
        AlgorithmInfo(
            "gaea", "ray_nas.algorithms.gaea:Gaea",
            "GAEA: alpha on the simplex, mixed directly; exponentiated-gradient step first "
            "(no Adam, no weight decay)", GaeaSettings,
        ),
        AlgorithmInfo(
            "drnas", "ray_nas.algorithms.drnas:Drnas",
            "DrNAS: one Dirichlet(ELU(theta)+1) sample per forward; Adam step first; records "
            "the Dirichlet mean and the concentration", DrnasSettings, ("alpha.lr", "alpha.betas"),
        ),
        AlgorithmInfo(
            "pc_darts", "ray_nas.algorithms.pc_darts:PcDarts",
            "PC-DARTS (yuhuixu1993/PC-DARTS @ b74702f): first-order DARTS, alpha step first, on "
            "the PC-DARTS supernet (search.partial_channels, search.edge_normalization: betas "
            "in alpha's Adam; preset lr_scheme: pc_darts)", uses=ADAM + PC_KEYS, connections=True,
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
DRNAS_REGS = ("l2", "kl")
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
            lines.append("    moves the edge-normalisation betas with alpha (nb201, darts)")
        elif info.connections:
            lines.append(
                "    moves the connection weights with alpha (nb1shot1_*; edge_normalization)"
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
