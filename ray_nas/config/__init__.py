"""The job spec: YAML -> frozen dataclasses, `--set` overrides, grid expansion and stable run ids.

A job file holds the search defaults every trial starts from (`search:`), a `grid:` of dotted
`search` keys whose Cartesian product gives the trials, the offline `criteria`, and where things
go (`store`, `tracking_uri`). Resolution order for one trial's search config:
dataclass defaults < the `lr_scheme` preset < the job's explicit `search` keys < the grid point.
Everything is validated here, before any work: a bad key or value raises SpecError with one line
that names the key and what would be valid.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ray_nas import spaces
from ray_nas.algorithms import (
    DRNAS_REGS,
    NAMES,
    OBJECTIVES,
    DartsV2Settings,
    DrnasSettings,
    GaeaSettings,
)
from ray_nas.algorithms import REGISTRY as ALGORITHM_INFO
from ray_nas.spaces import darts

#: data set -> side of its images in pixels (ray_nas.training.data: digits are upsampled to 16x16)
IMAGE_SIZES: dict[str, int] = {"cifar10": 32, "cifar100": 32, "imagenet16-120": 16, "digits": 16,
                               "fake": 32}  # fmt: skip
DATASETS = tuple(IMAGE_SIZES)
ALGORITHMS = NAMES
SCHEDULES = ("cosine", "constant")
#: weights.warmup_rule: how the lr schedule continues after warmup (search.weights_lr)
WARMUP_RULES = ("autodl", "restart")
IMPLS = ("fast", "reference")
PRECISIONS = ("fp32", "bf16")
#: torch.compile modes (search.compile_mode); reduce-overhead replays CUDA graphs
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DEVICES = ("auto", "cpu", "cuda")


from ray_nas.errors import SpecError  # noqa: E402,F401

# --------------------------------------------------------------------------------------------
# YAML as ML people write it: `3e-4` and `1e6` are numbers, a key written twice is an error

#: A Python float literal with an exponent and no dot or no exponent sign (`3e-4`, `1e6`, `1.0e6`,
#: `1_000e3`), which YAML 1.1 leaves as a string; the forms YAML 1.1 already reads are unchanged.
_FLOAT_RE = re.compile(
    r"^[-+]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)[eE][-+]?\d(?:_?\d)*$"
)


class JobLoader(yaml.SafeLoader):
    """yaml.SafeLoader that reads `3e-4`/`1e6` as floats and refuses a mapping key written twice."""

    yaml_implicit_resolvers = {
        k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node, deep=False):  # noqa: D102 - yaml.SafeLoader's hook
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"key {key!r} appears twice in one mapping (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}); keep one",
                    None,
                )  # fmt: skip
            if isinstance(key, typing.Hashable):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


JobLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """Parse YAML the way job files are read (JobLoader); raises yaml.YAMLError."""
    return yaml.load(text, Loader=JobLoader)  # noqa: S506 - JobLoader is a SafeLoader


def yaml_error_line(e: yaml.YAMLError) -> str:
    """A YAML error as one line: the problem and where (line, column)."""
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if problem:
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{problem}{where}"
    return " ".join(str(e).split())[:200] or "invalid YAML"


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
    epochs); see search.weights_lr. No effect without warmup"""


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
    """darts_v1 | darts_v2 | gaea | drnas (ray_nas.algorithms; `ray-nas algorithms` lists them)"""
    objective: str = "bilevel"
    """bilevel (weights on search-train, architecture on search-valid) | erm (both on the whole
    training split, independent random batches, as GAEA-ERM)"""
    darts_v2: DartsV2Settings = field(default_factory=DartsV2Settings)
    """DARTS-V2's own keys (read only when algorithm is darts_v2)"""
    gaea: GaeaSettings = field(default_factory=GaeaSettings)
    """GAEA's own keys (read only when algorithm is gaea)"""
    drnas: DrnasSettings = field(default_factory=DrnasSettings)
    """DrNAS's own keys (read only when algorithm is drnas)"""
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
    the trial's seed (as the reference's split file); null = the trial's seed (before issue 17)"""
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
    3e-4, no nesterov); explicit keys override"""
    weights: WeightsOptim = field(default_factory=WeightsOptim)
    alpha: AlphaOptim = field(default_factory=AlphaOptim)
    warmup_epochs: int = 0
    """epochs with alpha frozen (weights' lr ramps linearly from 0), before the joint ones"""
    hessian_every: int = 1
    """epochs between dominant-Hessian-eigenvalue evaluations; 0 = never"""
    track_running_stats: bool = False
    """BatchNorm running statistics in the search cells"""
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


#: lr presets (the paper's code decides the exchange scheme: both rates constant).
LR_PRESETS: dict[str, dict[str, Any]] = {
    "nb201": {
        "weights": {"lr": 0.025, "lr_min": 0.001, "schedule": "cosine"},
        "alpha": {"lr": 3.0e-4},
    },
    "exchange": {
        "weights": {"lr": 3.0e-4, "lr_min": 3.0e-4, "schedule": "constant"},
        "alpha": {"lr": 0.025},
    },
    # DARTS cnn/train_search.py: SGD (no nesterov) cosine 0.025 -> 0.001, Adam 3e-4, 50 epochs
    "darts": {
        "weights": {
            "lr": 0.025,
            "lr_min": 0.001,
            "schedule": "cosine",
            "nesterov": False,
            "weight_decay": 3.0e-4,
        },
        "alpha": {"lr": 3.0e-4},
        "epochs": 50,
        "batch_size": 64,
    },  # fmt: skip
    # SS-DARTS/train_search.py (the paper's code): cosine with eta_min = lr, i.e. constant
    "ss_darts": {
        "weights": {
            "lr": 0.025,
            "lr_min": 0.025,
            "schedule": "constant",
            "nesterov": False,
            "weight_decay": 3.0e-4,
        },
        "alpha": {"lr": 1.0e-3},
        "epochs": 75,
        "batch_size": 80,
        "ops": list(darts.PAPER_OPS),
    },  # fmt: skip
    # automl/nasbench-1shot1 optimizers/darts/train_search.py (SPACES.md B6): batch 96, 50
    # epochs, C=16, 9 cells, SGD 0.025 cosine to 0.001 (momentum 0.9, no nesterov, wd 3e-4,
    # clip 5), arch Adam 3e-4 betas (0.5, 0.999) wd 1e-3; train portion 0.5 is our 50/50 split
    "nb1shot1": {
        "weights": {
            "lr": 0.025,
            "lr_min": 0.001,
            "schedule": "cosine",
            "momentum": 0.9,
            "nesterov": False,
            "weight_decay": 3.0e-4,
            "grad_clip": 5.0,
        },
        "alpha": {"lr": 3.0e-4, "betas": [0.5, 0.999], "weight_decay": 1.0e-3},
        "epochs": 50,
        "batch_size": 96,
        "channels": 16,
        "layers": 9,
    },  # fmt: skip
}


#: Fields that say where things are, not what is searched: not part of the run_id.
NON_IDENTITY_FIELDS = (
    "data_root", "download", "device", "compile", "compile_mode", "channels_last",
)  # fmt: skip

#: Search fields added after stores existed (dotted for nested ones, e.g. "weights.warmup_rule"):
#: left out of the run_id while they hold their dataclass default, so every job written before
#: them keeps its run_ids. Every new identity field of SearchConfig is listed here, or in
#: LEGACY_FIELDS when its default changes what is computed.
ADDED_FIELDS: tuple[str, ...] = (
    "objective", "darts_v2.radius", "gaea.eta", "gaea.clamp", "drnas.reg", "drnas.reg_scale",
    "space", "layers",
)  # fmt: skip

#: Added fields whose default computes something other than the code before them did. Each is
#: left out of the run_id where it computes what the old code did (the predicate on the config
#: dict), so exactly the trials whose computation changed get new run_ids and a store written
#: before keeps its run_ids for what it holds.
LEGACY_FIELDS: dict[str, typing.Callable[[dict], bool]] = {
    # the old schedule after warmup was `restart`; without warmup both rules are one cosine
    "weights.warmup_rule": lambda d: (
        d["warmup_epochs"] == 0 or d["weights"]["warmup_rule"] == "restart"
    ),
    # the old split was seeded by the trial's seed; a split file makes it moot
    "split_seed": lambda d: d["split_file"] is not None or d["split_seed"] in (None, d["seed"]),
}


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


#: RetrainConfig fields that do not apply to NAS-Bench-201 archs (left out of their cache key)
GENOTYPE_RETRAIN_FIELDS = ("recipe", "overrides", "seeds", "gpu", "cpu")


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


def _suggest(key: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


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
                f"{full}: unknown key{_suggest(str(key), names)} (valid: {', '.join(names)})"
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


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'weights': {'lr': 1}} -> {'weights.lr': 1}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_dotted(d: dict, key: str, value: Any) -> None:
    """d['a']['b'] = value for key 'a.b', creating mappings on the way."""
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise SpecError(f"{key}: {p!r} is not a mapping")
        d = nxt
    d[parts[-1]] = value


# --------------------------------------------------------------------------------------------
# search config resolution and validation


def resolve_search(raw: dict, where: str = "search") -> SearchConfig:
    """defaults < lr_scheme preset < raw explicit keys -> a validated SearchConfig."""
    raw = dict(raw or {})
    scheme = raw.get("lr_scheme", SearchConfig.lr_scheme)
    if scheme not in LR_PRESETS:
        raise SpecError(
            f"{where}.lr_scheme: unknown preset {scheme!r}; valid: {', '.join(LR_PRESETS)}"
        )
    merged = _deep_merge(LR_PRESETS[scheme], raw)
    space_name = merged.get("space", SearchConfig.space)
    if space_name not in spaces.NAMES:
        raise SpecError(f"{where}.space: unknown space {space_name!r}{_suggest(str(space_name), spaces.NAMES)} "
                        f"(valid: {', '.join(spaces.NAMES)})")  # fmt: skip
    space = spaces.get_space(space_name)
    if "ops" not in merged and space_name != SearchConfig.space:
        merged["ops"] = list(space.ops)
    if "layers" not in merged and space.default_layers is not None:
        merged["layers"] = space.default_layers
    if "ops" in merged and isinstance(merged["ops"], (list, tuple)):
        try:
            merged["ops"] = list(space.validate_ops(merged["ops"]))
        except ValueError as e:
            raise SpecError(f"{where}.ops: {e}") from None
    cfg = build(SearchConfig, merged, where)
    _validate_search(cfg, where)
    return cfg


def _choice(value: str, valid: tuple[str, ...], key: str) -> None:
    if value not in valid:
        raise SpecError(
            f"{key}: unknown value {value!r}{_suggest(value, valid)} (valid: {', '.join(valid)})"
        )


def _positive(value: float | int | None, key: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise SpecError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _check_recipe(r: RetrainConfig, trials: list[tuple[SearchConfig, str, dict]]) -> None:
    """evaluate.retrain against the search space of every trial that can retrain: the recipe it
    names there (recipe, overrides) and the data sets it would train on (e.g. an auxiliary head
    on 16x16 images)."""
    recipes = {}
    for cfg in {(c.space, c.dataset): c for c, _rid, _p in trials}.values():
        space = spaces.get_space(cfg.space)
        if not space.recipes:
            continue
        try:
            if cfg.space not in recipes:
                recipes[cfg.space] = space.retrain_recipe(r)[1]
        except (ValueError, TypeError) as e:
            raise SpecError(f"evaluate.retrain: {e}") from None
        try:
            space.check_retrain(recipes[cfg.space], cfg.dataset, IMAGE_SIZES[cfg.dataset])
        except ValueError as e:  # its message starts with the key under evaluate.retrain
            raise SpecError(f"evaluate.retrain.{e}") from None
    if not r.seeds:
        raise SpecError("evaluate.retrain.seeds: expected at least one seed")
    _positive(r.cpu, "evaluate.retrain.cpu")
    _positive(r.gpu, "evaluate.retrain.gpu", allow_zero=True)


def _validate_search(c: SearchConfig, w: str) -> None:
    _choice(c.algorithm, ALGORITHMS, f"{w}.algorithm")
    _choice(c.objective, OBJECTIVES, f"{w}.objective")
    _choice(c.drnas.reg, DRNAS_REGS, f"{w}.drnas.reg")
    _positive(c.darts_v2.radius, f"{w}.darts_v2.radius")
    _positive(c.gaea.eta, f"{w}.gaea.eta")
    _positive(c.drnas.reg_scale, f"{w}.drnas.reg_scale", allow_zero=True)
    if not 0 < c.gaea.clamp < 1 / len(c.ops):
        raise SpecError(
            f"{w}.gaea.clamp: must be in (0, 1/len(ops) = {1 / len(c.ops):.3g}), "
            f"got {c.gaea.clamp!r}"
        )
    _choice(c.dataset, DATASETS, f"{w}.dataset")
    _choice(c.weights.schedule, SCHEDULES, f"{w}.weights.schedule")
    _choice(c.weights.warmup_rule, WARMUP_RULES, f"{w}.weights.warmup_rule")
    _choice(c.impl, IMPLS, f"{w}.impl")
    _choice(c.precision, PRECISIONS, f"{w}.precision")
    _choice(c.compile_mode, COMPILE_MODES, f"{w}.compile_mode")
    _choice(c.device, DEVICES, f"{w}.device")
    for key in ("channels", "cells", "layers", "epochs", "batch_size", "steps_per_epoch"):
        _positive(getattr(c, key), f"{w}.{key}")
    for key in ("warmup_epochs", "hessian_every", "seed", "split_seed"):
        _positive(getattr(c, key), f"{w}.{key}", allow_zero=True)
    _positive(c.weights.lr, f"{w}.weights.lr")
    _positive(c.alpha.lr, f"{w}.alpha.lr")
    for key in ("lr_min", "momentum", "weight_decay", "grad_clip"):
        _positive(getattr(c.weights, key), f"{w}.weights.{key}", allow_zero=True)
    if c.weights.lr_min > c.weights.lr:
        raise SpecError(
            f"{w}.weights.lr_min: must be <= weights.lr ({c.weights.lr}), got {c.weights.lr_min}"
        )
    _positive(c.alpha.weight_decay, f"{w}.alpha.weight_decay", allow_zero=True)
    if not all(0 <= b < 1 for b in c.alpha.betas):
        raise SpecError(f"{w}.alpha.betas: each must be in [0, 1), got {list(c.alpha.betas)}")
    if not c.ops:
        raise SpecError(
            f"{w}.ops: no op left; choose from: {', '.join(spaces.get_space(c.space).ops)}"
        )
    impls = spaces.get_space(c.space).impls
    if c.impl not in impls:
        raise SpecError(
            f"{w}.impl: {c.impl!r} is not an implementation of the {c.space} space "
            f"(valid: {', '.join(impls)})"
        )
    _check_connections(c, w)
    min_layers = spaces.get_space(c.space).min_layers
    if c.layers < min_layers:
        raise SpecError(f"{w}.layers: the {c.space} space needs >= {min_layers}, got {c.layers}")


def _check_connections(c: SearchConfig, w: str) -> None:
    """A space with connection weights (NAS-Bench-1Shot1) needs an algorithm that moves them."""
    if spaces.get_space(c.space).connection_rows() and not ALGORITHM_INFO[c.algorithm].connections:
        ok = [n for n, info in ALGORITHM_INFO.items() if info.connections]
        raise SpecError(
            f"{w}.algorithm: {c.algorithm} does not move the input/output connection weights of "
            f"{c.space}; valid there: {', '.join(ok)}"
        )


def config_json(cfg: SearchConfig) -> str:
    """Canonical JSON of a resolved config (sorted keys, no whitespace)."""
    return json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"))


def run_id(cfg: SearchConfig) -> str:
    """Short stable id of a resolved search config: the same grid point gets the same id anywhere.

    Fields in NON_IDENTITY_FIELDS (where data lies, the device) are left out, and so are the
    ADDED_FIELDS that hold their default and the LEGACY_FIELDS where they compute what the code
    before them did (the run_ids of older jobs stay as they were for what their stores hold).
    """
    d = to_dict(cfg)
    for k in NON_IDENTITY_FIELDS:
        d.pop(k, None)
    legacy = [path for path, is_old in LEGACY_FIELDS.items() if is_old(d)]
    default = to_dict(SearchConfig())
    for path in dict.fromkeys((*ADDED_FIELDS, *legacy)):
        *parents, leaf = path.split(".")
        node, base = d, default
        for p in parents:
            node, base = node[p], base[p]
        if path in legacy or node[leaf] == base[leaf]:
            del node[leaf]
        _prune_empty(d, parents)
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _prune_empty(d: dict, parents: list[str]) -> None:
    """Drop the mappings along `parents` that removing ADDED_FIELDS left empty (deepest first)."""
    for i in range(len(parents), 0, -1):
        node = d
        for p in parents[: i - 1]:
            node = node[p]
        if node.get(parents[i - 1]) == {}:
            del node[parents[i - 1]]


# --------------------------------------------------------------------------------------------
# the job


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SEARCH_KEYS = {f.name for f in dataclasses.fields(SearchConfig)}


def parse_set(items: typing.Iterable[str]) -> list[tuple[str, Any]]:
    """`key=value` strings -> (key, YAML-parsed value) pairs."""
    out = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {item!r}: expected key=value, e.g. --set search.epochs=3")
        try:
            parsed = yaml_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        out.append((key.strip(), parsed))
    return out


def load_raw(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{path}: job file not found")
    try:
        raw = yaml_load(p.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML ({yaml_error_line(e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read the job file ({e})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a job file must be a YAML mapping with at least `name:`")
    return raw


def load_spec(path: str | Path, overrides: typing.Iterable[str] = ()) -> JobSpec:
    """Load, override (`--set key=value`, dotted) and validate a job. Raises SpecError."""
    raw = load_raw(path)
    for key, value in parse_set(overrides):
        set_dotted(raw, key, value)
    return spec_from_dict(raw, source=str(path))


def spec_from_dict(raw: dict, source: str = "<dict>") -> JobSpec:
    raw = copy.deepcopy(raw)
    raw.pop("source", None)
    if "criteria" in raw and raw["criteria"] is not None:
        if not isinstance(raw["criteria"], list):
            raise SpecError("criteria: expected a list of names or {name: ..., params}")
        raw["criteria"] = tuple(raw["criteria"])
    elif "criteria" in raw:
        raw["criteria"] = ()
    if raw.get("grid") is None:
        raw["grid"] = {}
    if raw.get("search") is None:
        raw["search"] = {}
    try:
        spec = build(JobSpec, raw)
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None
    spec = dataclasses.replace(spec, source=source)
    try:
        _validate_job(spec)
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None
    return spec


def _validate_job(spec: JobSpec) -> None:
    if not _NAME_RE.match(spec.name):
        raise SpecError(
            f"name: {spec.name!r} must be letters, digits, '_', '-', '.' (it names a folder)"
        )
    if not spec.store:
        raise SpecError("store: must be a path or s3:// URI")
    _validate_tracking_uri(spec.tracking_uri)
    _positive(spec.resources.cpu, "resources.cpu", allow_zero=True)
    _positive(spec.resources.gpu, "resources.gpu", allow_zero=True)
    _positive(spec.max_failures, "max_failures", allow_zero=True)
    for key, values in spec.grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"grid.{key}: expected a non-empty list of values, got {values!r}")
        if is_bundle_axis(key, values):
            _validate_bundles(key, values)
            continue
        top = str(key).split(".")[0]
        if top not in _SEARCH_KEYS:
            raise SpecError(
                f"grid.{key}: not a search key{_suggest(top, _SEARCH_KEYS)} (grid keys are dotted "
                "keys of `search`, or a named axis whose values are mappings of search keys)"
            )
        _no_repeats([json.dumps(v, sort_keys=True, default=str) for v in values], f"grid.{key}")
    resolve_search(spec.search)  # the defaults alone must be valid
    trials = expand_grid(spec)  # and so must every grid point (each its own run_id)
    if spec.evaluate.benchmark:
        key = _benchmark_key_of(cfg.space for cfg, _rid, _point in trials)
        _check_table_metrics(spec, key, {cfg.dataset for cfg, _rid, _point in trials})
    if spec.evaluate.retrain is not None:
        r = spec.evaluate.retrain
        for key in ("epochs", "channels", "cells", "batch_size", "steps_per_epoch"):
            _positive(getattr(r, key), f"evaluate.retrain.{key}")
        _positive(r.lr, "evaluate.retrain.lr")
        _check_recipe(r, trials)
    _validate_metric(spec.evaluate.metric)
    from ray_nas import criteria  # pure numpy: cheap

    labels = []
    for i, item in enumerate(spec.criteria):
        try:
            labels.append(criteria.parse_criterion(item).label)
        except ValueError as e:
            raise SpecError(f"criteria[{i}]: {e}") from None
    _no_repeats(labels, "criteria")
    _validate_bundle_criteria(spec)
    if spec.stop is not None:
        try:
            stop = criteria.parse_criterion(spec.stop)
        except ValueError as e:
            raise SpecError(f"stop: {e}") from None
        if stop.name in ("final", "best_valid", "oracle"):
            raise SpecError(
                f"stop: {stop.name!r} cannot stop a search early (it looks at the whole run)"
            )
        if stop.info.builtin and stop.params.get("patience", 1) < 1:
            raise SpecError(
                f"stop: {stop.name} needs patience >= 1 online (with 0 the peak so far always 'fires' at epoch 1)"
            )


def benchmark_key_column(spec: JobSpec) -> str:
    """The benchmark-table column that keys the job's genotypes (its spaces'
    `benchmark_key_column`: ``arch`` for nb201, ``hash`` for the NAS-Bench-1Shot1 spaces).
    SpecError (one line) when a space of the job has no tabular benchmark or two spaces need
    differently keyed tables."""
    return _benchmark_key_of(cfg.space for cfg, _rid, _point in expand_grid(spec))


def _benchmark_key_of(names: typing.Iterable[str]) -> str:
    units = [spaces.get_space(n) for n in dict.fromkeys(names)]
    for unit in units:
        if not unit.benchmark_key_column:
            raise SpecError(
                f"evaluate.benchmark: search space {unit.name!r} has no tabular benchmark "
                "(its selections are retrained, evaluate.retrain); set evaluate.benchmark: null"
            )
    keys = {u.name: u.benchmark_key_column for u in units}
    if len(set(keys.values())) > 1:
        raise SpecError(
            "evaluate.benchmark: one table cannot score these spaces, their tables are keyed "
            f"by different columns ({', '.join(f'{n}: {k}' for n, k in keys.items())}); "
            "run them as separate jobs"
        )
    return next(iter(keys.values()))


def _check_table_metrics(spec: JobSpec, key: str, datasets: set[str]) -> None:
    """The metric that scores each trial (evaluate.metric, else its data set's test accuracy)
    must be one a table keyed by `key` can hold (a NAS-Bench-101 table: CIFAR-10 only)."""
    from ray_nas.tables import TABLE_KINDS, default_metric

    kind = TABLE_KINDS[key]

    for dataset in sorted(datasets):
        metric = spec.evaluate.metric or default_metric(dataset)
        if metric and metric not in kind.metrics:
            why = (
                "evaluate.metric"
                if spec.evaluate.metric
                else f"the {dataset} searches' test accuracy"
            )
            raise SpecError(
                f"evaluate.metric: {metric} ({why}) is not in a {kind.benchmark} table, which "
                f"holds {', '.join(kind.metrics)}; set evaluate.metric to one of them"
            )


def _no_repeats(items: list[str], key: str) -> None:
    """SpecError naming the first item of `items` that repeats an earlier one."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item in seen:
            raise SpecError(f"{key}[{i}]: {item} repeats {key}[{seen[item]}]; list each value once")
        seen[item] = i


#: tracking_uri schemes MLflow serves (a plain path is a local file store)
TRACKING_SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql")


def _validate_tracking_uri(uri: str) -> None:
    """Malformed tracking URIs (unknown scheme, `sqlite://x` with a missing slash, no host)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        if not uri.strip():
            raise SpecError("tracking_uri: empty; e.g. sqlite:///mlflow.db or http://host:5000")
        return
    if scheme not in TRACKING_SCHEMES:
        raise SpecError(
            f"tracking_uri: unknown scheme {scheme!r} in {uri!r}{_suggest(scheme, TRACKING_SCHEMES)} "
            f"(valid: {', '.join(TRACKING_SCHEMES)})"
        )
    if scheme == "sqlite" and not rest.startswith("/"):
        raise SpecError(
            f"tracking_uri: {uri!r} needs three slashes and a file, e.g. sqlite:///mlflow.db"
        )
    if scheme in ("http", "https") and not rest.split("/")[0]:
        raise SpecError(f"tracking_uri: {uri!r} names no host, e.g. http://127.0.0.1:5000")


def _validate_metric(metric: str | None) -> None:
    """evaluate.metric must be a benchmark accuracy column (or null for the data set's test one)."""
    if metric is None:
        return
    from ray_nas.tables import METRICS

    if metric not in METRICS:
        raise SpecError(
            f"evaluate.metric: unknown metric {metric!r}{_suggest(metric, METRICS)} "
            f"(valid: {', '.join(METRICS)}, or null for the data set's test accuracy)"
        )


def _validate_bundle_criteria(spec: JobSpec) -> None:
    """A bundle's `criteria` (shown by the report) must be criteria the job computes."""
    from ray_nas import criteria

    job = [criteria.parse_criterion(c) for c in spec.criteria] or criteria.default_criteria()
    labels = {c.label for c in job}
    for key, values in spec.grid.items():
        if not is_bundle_axis(key, values):
            continue
        for i, bundle in enumerate(values):
            for j, item in enumerate(bundle.get("criteria") or []):
                where = f"grid.{key}[{i}].criteria[{j}]"
                try:
                    label = criteria.parse_criterion(item).label
                except ValueError as e:
                    raise SpecError(f"{where}: {e}") from None
                if label not in labels:
                    raise SpecError(
                        f"{where}: {label!r} is not in the job's criteria (add it to `criteria:`; "
                        f"computed: {', '.join(sorted(labels))})"
                    )


def grid_points(spec: JobSpec) -> list[dict[str, Any]]:
    """The Cartesian product of the grid in a stable order (keys as written, last key fastest)."""
    keys = list(spec.grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spec.grid[k] for k in keys))]


def expand_grid(spec: JobSpec) -> list[tuple[SearchConfig, str, dict[str, Any]]]:
    """[(resolved SearchConfig, run_id, grid point)] for every grid point, in stable order.

    A bundle axis's value sets all its search keys at once; the run_id depends only on the
    resolved config (not on the axis's name, its labels or the rows' order)."""
    out = []
    for point in grid_points(spec) or [{}]:
        raw = copy.deepcopy(spec.search)
        for key, value in point.items():
            for k, v in _point_keys(key, value).items():
                set_dotted(raw, k, v)
        where = "search" if not point else "grid point " + point_text(point)
        cfg = resolve_search(raw, where)
        out.append((cfg, run_id(cfg), point))
    ids: dict[str, dict] = {}
    for _cfg, rid, point in out:
        if rid in ids:
            raise SpecError(
                f"grid: points {point_text(ids[rid])} and {point_text(point)} resolve to the same "
                f"search config (the same run_id {rid}); drop or change one"
            )
        ids[rid] = point
    return out


# --------------------------------------------------------------------------------------------
# bundle axes: grid values that set several search keys at once (e.g. the rows of Table 2)

#: keys of a bundle that are not search keys: the row's name, and the criteria (labels or
#: items as in `criteria:`) that `ray-nas report` shows for that row in its methods table
BUNDLE_META = ("label", "criteria")


def is_bundle_axis(key: str, values: Any) -> bool:
    """A grid key that is not a search key and whose values are all mappings."""
    return (
        str(key).split(".")[0] not in _SEARCH_KEYS
        and isinstance(values, list)
        and bool(values)
        and all(isinstance(v, dict) for v in values)
    )


def bundle_keys(bundle: dict) -> dict[str, Any]:
    """The dotted search keys a bundle sets ({'weights': {'lr': 1}} -> {'weights.lr': 1})."""
    return flatten({k: v for k, v in bundle.items() if k not in BUNDLE_META})


def bundle_label(bundle: dict) -> str:
    return str(bundle.get("label") or ",".join(f"{k}={v}" for k, v in bundle_keys(bundle).items()))


def _point_keys(key: str, value: Any) -> dict[str, Any]:
    return bundle_keys(value) if isinstance(value, dict) else {key: value}


def value_text(value: Any) -> str:
    """A grid value as text: a bundle by its label."""
    return bundle_label(value) if isinstance(value, dict) else str(value)


def point_text(point: dict[str, Any]) -> str:
    return ",".join(f"{k}={value_text(v)}" for k, v in point.items())


def _validate_bundles(key: str, bundles: list[dict]) -> None:
    for i, bundle in enumerate(bundles):
        where = f"grid.{key}[{i}]"
        for k in bundle_keys(bundle):
            top = k.split(".")[0]
            if top not in _SEARCH_KEYS:
                raise SpecError(
                    f"{where}.{k}: not a search key{_suggest(top, _SEARCH_KEYS)} (a bundle "
                    f"holds search keys, plus {' and '.join(BUNDLE_META)})"
                )
        crit = bundle.get("criteria")
        if crit is not None and not isinstance(crit, list):
            raise SpecError(f"{where}.criteria: expected a list of criteria, got {crit!r}")
    labels = [bundle_label(b) for b in bundles]
    if len(set(labels)) != len(labels):
        raise SpecError(f"grid.{key}: labels must differ, got {labels}")


def grid_value(spec: JobSpec, key: str, config: dict) -> tuple[int, str]:
    """(index in grid[key], display text) of a stored trial's resolved `config` on one axis;
    index len(values) when no value matches. A bundle matches when every key that any bundle
    of the axis sets has, in the config, the value that bundle resolves it to."""
    values = spec.grid[key]
    flat = flatten(config)
    if not is_bundle_axis(key, values):
        v = flat.get(key)
        v = list(v) if isinstance(v, tuple) else v
        return (values.index(v) if v in values else len(values)), _short(v)
    union = sorted({k for b in values for k in bundle_keys(b)})
    for i, bundle in enumerate(values):
        raw = copy.deepcopy(spec.search)
        for k, v in bundle_keys(bundle).items():
            set_dotted(raw, k, v)
        resolved = flatten(to_dict(resolve_search(raw)))
        if all(flat.get(k) == resolved.get(k) for k in union):
            return i, bundle_label(bundle)
    return len(values), "?"


def _short(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)


def search_config(spec: JobSpec, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """The job's `search` defaults plus dotted search-key overrides (no grid): `ray-nas search`."""
    raw = copy.deepcopy(spec.search)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return resolve_search(raw)


def resolved_job_dict(spec: JobSpec) -> dict:
    """The spec as plain data (for job.yaml and MLflow), the search defaults resolved."""
    d = to_dict(spec)
    d.pop("source", None)
    d["search"] = to_dict(resolve_search(spec.search))
    return d
