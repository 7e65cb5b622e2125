"""The job spec's types: the frozen dataclasses a job file becomes (SearchConfig, JobSpec, ...),
the vocabularies their string fields take, and the coercion of plain YAML values into them
(`build`, one-line SpecError naming the key) and back (`to_dict`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from ray_nas import spaces
from ray_nas.algorithms import (
    DartsV2Settings,
    DrnasSettings,
    GaeaPcDartsSettings,
    GaeaSettings,
    GdasSettings,
    NaspSettings,
    SdartsAdvSettings,
    SdartsRsSettings,
    SgasSettings,
    SnasSettings,
)
from ray_nas.errors import SpecError, did_you_mean

#: data set -> side of its images in pixels (ray_nas.training.data: digits are upsampled to 16x16)
IMAGE_SIZES: dict[str, int] = {
    "cifar10": 32,
    "cifar100": 32,
    "imagenet16-120": 16,
    "digits": 16,
    "fake": 32,
}
DATASETS = tuple(IMAGE_SIZES)
SCHEDULES = ("cosine", "constant")
#: weights.warmup_rule: how the lr schedule continues after warmup (search.weights_lr)
WARMUP_RULES = ("autodl", "restart", "frozen")
IMPLS = ("fast", "reference")
PRECISIONS = ("fp32", "bf16")
#: torch.compile modes (search.compile_mode); reduce-overhead replays CUDA graphs
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class WeightsOptim:
    """SGD on the supernet weights (search-train batches)."""

    lr: float = 0.025
    """initial learning rate (after warmup)"""
    lr_min: float = 0.001
    """cosine floor, reached after `epochs` joint epochs"""
    schedule: str = "cosine"
    """cosine (stepped once per epoch) | constant"""
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5.0e-4
    grad_clip: float = 5.0
    """max global L2 norm of the weight gradients; 0 = no clipping"""
    warmup_rule: str = "autodl"
    """with warmup_epochs W > 0: autodl (the reference's scheduler: cosine indexed from the end of
    warmup over `epochs`, lr_min for the last W epochs) | restart (cosine restarted over the joint
    epochs) | frozen (PC-DARTS: no ramp, one cosine over warmup + joint epochs from epoch 0); see
    search.weights_lr. No effect without warmup"""


@dataclass(frozen=True)
class AlphaOptim:
    """Adam on the architecture parameters (search-valid batches)."""

    lr: float = 3.0e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1.0e-3
    """L2 on alpha (Adam's coupled weight decay, as the reference)"""


@dataclass(frozen=True)
class SearchConfig:
    """One search = one trial. Defaults are the paper's S.1 (NAS-Bench-201's DARTS-V1)."""

    algorithm: str = "darts_v1"
    """darts_v1 | darts_v2 | gaea | drnas | sdarts_rs | sdarts_adv | gdas | snas | nasp | sgas |
    pc_darts | gaea_pc_darts (ray_nas.algorithms; `ray-nas algorithms` lists them)"""
    objective: str = "bilevel"
    """bilevel (weights on search-train, architecture on search-valid) | erm (both on the whole
    training split, independent random batches, as GAEA-ERM)"""
    step_order: str = "upstream"
    """upstream (the algorithm's upstream code's order in the space: DARTS-V1 weights first on
    nb201, as AutoDL's DARTS-V1.py, architecture first on darts and nb1shot1_*, as quark0/darts,
    SS-DARTS and nasbench-1shot1; DARTS-V2, GAEA, DrNAS architecture first everywhere) |
    arch_first | weights_first (the architecture step before / after each batch's weight step)"""
    darts_v2: DartsV2Settings = field(default_factory=DartsV2Settings)
    """DARTS-V2's own keys (read only when algorithm is darts_v2)"""
    gaea: GaeaSettings = field(default_factory=GaeaSettings)
    """GAEA's own keys (read only when algorithm is gaea)"""
    drnas: DrnasSettings = field(default_factory=DrnasSettings)
    """DrNAS's own keys (read only when algorithm is drnas)"""
    sdarts_rs: SdartsRsSettings = field(default_factory=SdartsRsSettings)
    """SDARTS-RS's own keys (read only when algorithm is sdarts_rs)"""
    sdarts_adv: SdartsAdvSettings = field(default_factory=SdartsAdvSettings)
    """SDARTS-ADV's own keys (read only when algorithm is sdarts_adv)"""
    gdas: GdasSettings = field(default_factory=GdasSettings)
    """GDAS's own keys (read only when algorithm is gdas)"""
    snas: SnasSettings = field(default_factory=SnasSettings)
    """SNAS's own keys (read only when algorithm is snas)"""
    nasp: NaspSettings = field(default_factory=NaspSettings)
    """NASP's own keys (read only when algorithm is nasp)"""
    gaea_pc_darts: GaeaPcDartsSettings = field(default_factory=GaeaPcDartsSettings)
    """GAEA+PC-DARTS's own keys (read only when algorithm is gaea_pc_darts)"""
    sgas: SgasSettings = field(default_factory=SgasSettings)
    """SGAS's own keys (read only when algorithm is sgas)"""
    partial_channels: int = 1
    """PC-DARTS's partial channel connections: each mixed op sees 1/k of its input's channels (the
    rest bypass it), then a channel shuffle with k groups; 1 = off (PC-DARTS: 4). nb201 (impl:
    reference), darts and nb1shot1_* (nasbench-1shot1's PC-DARTS: 4); must divide `channels`"""
    edge_normalization: bool = False
    """PC-DARTS's edge normalisation: a further architecture parameter (betas) per edge; each
    edge's output is multiplied by the softmax of its node's betas (gaea_pc_darts: the betas on
    the simplex, directly), and the darts genotype rule ranks edges by weight x edge weight. Stored
    as connection rows (cell beta_<cell type>). nb201 (impl: reference) and darts; the algorithms
    that move them: darts_v1, darts_v2, pc_darts, gaea_pc_darts"""
    dataset: str = "cifar10"
    """cifar10 | cifar100 | imagenet16-120 | digits | fake"""
    data_root: str = "data"
    """directory holding the data set in its own on-disk format"""
    download: bool = False
    """let torchvision download CIFAR into data_root when missing"""
    split_file: str | None = None
    """an NB201 split file (cifar-split.txt, ...), or null for a seeded 50/50 split"""
    split_seed: int | None = 0
    """seed of the 50/50 split when there is no split_file: fixed, so the split does not change with
    the trial's seed (as the reference's split file); null = the trial's seed (as stores written
    before split_seed existed)"""
    space: str = "nb201"
    """the search space (ray_nas.spaces): nb201 (NAS-Bench-201's cell) | darts (DARTS's normal and
    reduction cells, 14 edges each) | nb1shot1_s1 | nb1shot1_s2 | nb1shot1_s3 (NAS-Bench-1Shot1's
    spaces: one row per choice block, plus input/output connection weights; darts_v1/v2 only)"""
    ops: tuple[str, ...] = spaces.get_space(spaces.DEFAULT).ops
    """candidate ops on every edge, by name (stored in the space's op order); default: all of the
    space's (darts: its 8 with `none`; the paper's code used 7, without `none`: preset ss_darts)"""
    channels: int = 16
    """C: channels of the first stage"""
    cells: int = 5
    """nb201: N, search cells per stage (not read by the other spaces: they take `layers`)"""
    layers: int = 8
    """darts: cells of the search network (reductions at layers//3 and 2*layers//3);
    nb1shot1_*: cells of the supernet (max-pool and channel doubling before layers//3 and
    2*layers//3), 9 when not set"""
    epochs: int = 50
    """joint (weights + alpha) epochs, after `warmup_epochs`"""
    batch_size: int = 64
    steps_per_epoch: int | None = None
    """cap on batches per epoch (also on evaluation batches); null = the whole split"""
    lr_scheme: str = "nb201"
    """preset: nb201 (S.1) | exchange (EX-DARTS) | darts (DARTS's search defaults) | ss_darts (the
    paper's code for Table 4: 75 epochs, batch 80, constant weights lr, alpha lr 1e-3, 7 ops) |
    nb1shot1 (NAS-Bench-1Shot1's DARTS defaults: batch 96, 50 epochs, C=16, 9 cells, weight decay
    3e-4, no nesterov) | pc_darts (PC-DARTS: batch 256, lr 0.1 -> 0, alpha lr 6e-4, 15 frozen +
    35 epochs, partial_channels 4, edge_normalization) | gaea_pc_darts (GAEA+PC-DARTS: batch 256,
    lr 0.1 -> 0, 50 epochs, partial_channels 4, edge_normalization); explicit keys override"""
    weights: WeightsOptim = field(default_factory=WeightsOptim)
    alpha: AlphaOptim = field(default_factory=AlphaOptim)
    warmup_epochs: int = 0
    """epochs with alpha frozen (weights' lr ramps linearly from 0), before the joint ones"""
    hessian_every: int = 1
    """epochs between dominant-Hessian-eigenvalue evaluations; 0 = never"""
    track_running_stats: bool = False
    """BatchNorm running statistics in the search cells (nb201; the darts and nb1shot1_* search
    networks always track them, as quark0/darts and nasbench-1shot1, and refuse false)"""
    seed: int = 0
    impl: str = "fast"
    """nb201: supernet implementation, the same function: fast (work shared across edges) |
    reference (per-op modules); the darts space has one implementation (fast; reference is
    refused). A space's `impls` lists what it supports"""
    precision: str = "fp32"
    """fp32 | bf16 (autocast around the forwards of the weight and alpha steps; for GPUs)"""
    compile: bool = False
    """torch.compile the supernet for the weight and alpha steps (evaluation and Hessian stay eager)"""
    compile_mode: str = "default"
    """torch.compile's mode when `compile` is true: default | reduce-overhead (CUDA graphs: one
    launch per graph instead of one per kernel) | max-autotune | max-autotune-no-cudagraphs"""
    channels_last: bool = False
    """channels-last (NHWC) memory layout of the supernet, the one GPU convolutions prefer. Not for
    CPU float32: torch's CPU channels-last BatchNorm sums sequentially in float32, which puts
    results ~10x further from float64 than NCHW's (benchmarks/equivalence.py)"""
    device: str = "auto"
    """auto (cuda when available) | cpu | cuda"""

    @property
    def total_epochs(self) -> int:
        return self.warmup_epochs + self.epochs

    @property
    def data_split_seed(self) -> int:
        """The seed of the 50/50 split without a split_file: split_seed, or the trial's seed if null."""
        return self.seed if self.split_seed is None else self.split_seed


#: the top-level keys of `search:` (SearchConfig's fields)
SEARCH_KEYS = {f.name for f in dataclasses.fields(SearchConfig)}


@dataclass(frozen=True)
class Resources:
    """Per-trial resource request for Ray; a fractional gpu packs trials onto one GPU."""

    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class RetrainConfig:
    """Retraining of selected archs where no benchmark covers the data set; each trial's search
    space says how (ray_nas.spaces.base.Space, its evaluation part). Every run is a Ray task with
    `gpu`/`cpu` under `ray-nas sweep` (or `evaluate` with RAY_ADDRESS).

    NAS-Bench-201 archs: the discrete NB201 network under epochs/channels/cells/batch_size/lr,
    seed 0, cached by (arch, dataset, settings). DARTS-space genotypes: NetworkCIFAR under a
    named `recipe`, once per seed in `seeds` (checkpointed every epoch on the store, resumed
    after a lost node), cached by (genotype, recipe, seed, dataset)."""

    epochs: int = 10
    """NB201 archs: epochs (a DARTS recipe's own epochs unless `overrides` sets them)"""
    channels: int = 16
    cells: int = 5
    batch_size: int = 64
    lr: float = 0.1
    steps_per_epoch: int | None = None
    """cap on batches per epoch (both kinds; quick looks and tests)"""
    recipe: str | None = None
    """spaces with named recipes (DARTS: darts | drnas | proxy, ray_nas.spaces.darts.train.RECIPES);
    null = the space's default_recipe (DARTS: darts)"""
    overrides: dict = field(default_factory=dict)
    """spaces with named recipes: recipe fields to change, e.g. {epochs: 100, layers: 8}"""
    seeds: tuple[int, ...] = (0,)
    """DARTS-space genotypes: one retrain per seed; the table reports mean and std"""
    gpu: float = 0.0
    """GPUs per retraining Ray task"""
    cpu: float = 1.0
    """CPUs per retraining Ray task"""


@dataclass(frozen=True)
class EvaluateConfig:
    benchmark: str | None = None
    """nb201 (the built-in test-accuracy table), a compact NB201 table (Parquet), a NAS-Bench-101
    table from `ray-nas benchmark convert-nb101` (the nb1shot1_* spaces: cells by graph hash), or
    null; the table must have the column the job's spaces are keyed by (benchmark_key_column)"""
    metric: str | None = None
    """benchmark metric for the summary and the oracle; null = the search data set's test metric"""
    retrain: RetrainConfig | None = field(default_factory=RetrainConfig)
    """null = never retrain"""


@dataclass(frozen=True)
class Estimate:
    """What `--dry-run` assumes to estimate a job's GPU-hours: trials x total epochs x this.

    The default is NAS-Bench-201's DARTS-V1 reference: 10,890 s for 50 epochs = 217.8 s per epoch
    of CIFAR-10 (25k search-train + 25k search-valid images) at batch 64 on one (older) GPU, one
    trial per GPU. Kept per epoch, not per step: a larger batch sees the same images per epoch
    (and runs somewhat faster: the paper's SS-DARTS took 7,330 s at batch 256, ~147 s per epoch).
    Warmup epochs (no alpha step) are counted as full epochs, so the estimate errs high.
    """

    gpu_seconds_per_epoch: float = 218.0
    """seconds of one whole GPU per search epoch (warmup or joint); measure yours and set it"""
    retrain_gpu_seconds_per_epoch: float = 150.0
    """DARTS-space retraining: seconds of one GPU per epoch of the `darts` recipe (20 cells, C=36,
    50k images): ~2.5 min on a V100 at batch 128 (quark0/darts issue 80); measure yours"""

    def __post_init__(self) -> None:
        for key in ("gpu_seconds_per_epoch", "retrain_gpu_seconds_per_epoch"):
            if not getattr(self, key) > 0:
                raise SpecError(f"estimate.{key}: must be > 0, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class JobSpec:
    name: str
    """job name: the store folder and the MLflow experiment"""
    store: str = "runs"
    tracking_uri: str = "sqlite:///mlflow.db"
    resources: Resources = field(default_factory=Resources)
    search: dict = field(default_factory=dict)
    """the raw `search` mapping as written (explicit keys only); see resolve_search"""
    stop: dict | None = None
    """online early stop (Algorithm 1): {name: criterion, **params}"""
    max_failures: int = 2
    keep_checkpoints: bool = True
    """false: delete a trial's checkpoint once it completes (13.7 MB at C=16 N=5); a
    completed trial is never resumed, so only a rerun with more epochs would need it"""
    grid: dict = field(default_factory=dict)
    """dotted search key -> list of values"""
    criteria: tuple = ()
    """criteria items as written (name or {name, **params}); empty = the paper's set"""
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    estimate: Estimate = field(default_factory=Estimate)
    """cost assumptions behind the GPU-hour estimate of `ray-nas sweep --dry-run`"""
    source: str = ""
    """where the spec was loaded from (for messages)"""

    @property
    def job_dir(self) -> str:
        return f"{self.store.rstrip('/')}/{self.name}"


# --------------------------------------------------------------------------------------------
# coercion of plain YAML values into dataclass fields


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to field type `tp`, or raise SpecError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SpecError(f"{key}: expected a mapping, got {value!r}")
        return build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():  # 1e3, as ML people write it
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise SpecError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SpecError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{key}: expected a mapping, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise SpecError(f"{key}: expected a list of {len(args)} items, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{key}: expected a list, got {value!r}")
        return tuple(value)
    raise TypeError(f"unsupported field type {tp} at {key}")


def build(cls: type, raw: dict, prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from a plain mapping; unknown keys get a close-match hint."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise SpecError(
                f"{full}: unknown key{did_you_mean(str(key), names)} (valid: {', '.join(names)})"
            )
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise SpecError(f"{prefix or cls.__name__}: {e}") from None


def to_dict(obj: Any) -> Any:
    """Plain (JSON/YAML-ready) form of a dataclass tree; tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
