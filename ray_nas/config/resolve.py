"""One search config: a `search` mapping resolved (dataclass defaults < the `lr_scheme` preset <
the explicit keys, plus the space's own defaults) into a SearchConfig and validated. A bad key or
value raises SpecError with one line naming it (`search.x`, or `grid point ...` for a trial).
"""

from __future__ import annotations

from ray_nas import spaces
from ray_nas.algorithms import (
    DRNAS_REGS,
    OBJECTIVES,
    SDARTS_ATTACK_MODES,
    SDARTS_SCHEDULES,
    SNAS_ARCH_OPTIMIZERS,
    STEP_ORDERS,
)
from ray_nas.algorithms import NAMES as ALGORITHM_NAMES
from ray_nas.algorithms import REGISTRY as ALGORITHM_INFO
from ray_nas.config.loader import deep_merge
from ray_nas.config.presets import LR_PRESETS
from ray_nas.config.schema import (
    COMPILE_MODES,
    DATASETS,
    DEVICES,
    IMPLS,
    PRECISIONS,
    SCHEDULES,
    WARMUP_RULES,
    SearchConfig,
    build,
)
from ray_nas.errors import SpecError, did_you_mean


def resolve_search(raw: dict, where: str = "search", record: bool = False) -> SearchConfig:
    """defaults < lr_scheme preset < raw explicit keys -> a validated SearchConfig.

    record: `raw` is a resolved SearchConfig's own `to_dict` (a trial's shipped or stored
    config, a job.yaml's `search`), not what a user wrote: the refusals of keys a user should
    not write (track_running_stats on a space that always tracks) are skipped, since the record
    carries every key at its resolved value."""
    raw = dict(raw or {})
    scheme = raw.get("lr_scheme", SearchConfig.lr_scheme)
    if scheme not in LR_PRESETS:
        raise SpecError(
            f"{where}.lr_scheme: unknown preset {scheme!r}; valid: {', '.join(LR_PRESETS)}"
        )
    merged = deep_merge(LR_PRESETS[scheme], raw)
    space_name = merged.get("space", SearchConfig.space)
    if space_name not in spaces.NAMES:
        hint = did_you_mean(space_name, spaces.NAMES)
        raise SpecError(
            f"{where}.space: unknown space {space_name!r}{hint} (valid: {', '.join(spaces.NAMES)})"
        )
    space = spaces.get_space(space_name)
    if "ops" not in merged and space_name != SearchConfig.space:
        merged["ops"] = list(space.ops)
    if "layers" not in merged and space.default_layers is not None:
        merged["layers"] = space.default_layers
    if (
        not record
        and merged.get("track_running_stats") is False
        and space_name != SearchConfig.space
    ):
        raise SpecError(
            f"{where}.track_running_stats: false is not available on space {space_name!r}: its "
            "search network always tracks BatchNorm running statistics (as quark0/darts and "
            "nasbench-1shot1); remove the key (only nb201 reads it)"
        )
    if "ops" in merged and isinstance(merged["ops"], (list, tuple)):
        try:
            merged["ops"] = list(space.validate_ops(merged["ops"]))
        except ValueError as e:
            raise SpecError(f"{where}.ops: {e}") from None
    cfg = build(SearchConfig, merged, where)
    validate_search(cfg, where)
    return cfg


def check_choice(value: str, valid: tuple[str, ...], key: str) -> None:
    """SpecError naming `key` unless `value` is one of `valid`."""
    if value not in valid:
        raise SpecError(
            f"{key}: unknown value {value!r}{did_you_mean(value, valid)} (valid: {', '.join(valid)})"
        )


def check_positive(value: float | int | None, key: str, allow_zero: bool = False) -> None:
    """SpecError naming `key` unless `value` > 0 (>= 0 with allow_zero); None passes."""
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise SpecError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def validate_search(c: SearchConfig, w: str) -> None:
    """SpecError naming the first field of `c` (under `w`, e.g. `search`) with a bad value."""
    check_choice(c.algorithm, ALGORITHM_NAMES, f"{w}.algorithm")
    check_choice(c.objective, OBJECTIVES, f"{w}.objective")
    check_choice(c.step_order, STEP_ORDERS, f"{w}.step_order")
    check_choice(c.drnas.reg, DRNAS_REGS, f"{w}.drnas.reg")
    check_positive(c.darts_v2.radius, f"{w}.darts_v2.radius")
    check_positive(c.gaea.eta, f"{w}.gaea.eta")
    check_positive(c.drnas.reg_scale, f"{w}.drnas.reg_scale", allow_zero=True)
    if not 0 < c.gaea.clamp < 1 / len(c.ops):
        raise SpecError(
            f"{w}.gaea.clamp: must be in (0, 1/len(ops) = {1 / len(c.ops):.3g}), "
            f"got {c.gaea.clamp!r}"
        )
    _check_baselines(c, w)
    check_choice(c.dataset, DATASETS, f"{w}.dataset")
    check_choice(c.weights.schedule, SCHEDULES, f"{w}.weights.schedule")
    check_choice(c.weights.warmup_rule, WARMUP_RULES, f"{w}.weights.warmup_rule")
    check_choice(c.impl, IMPLS, f"{w}.impl")
    check_choice(c.precision, PRECISIONS, f"{w}.precision")
    check_choice(c.compile_mode, COMPILE_MODES, f"{w}.compile_mode")
    check_choice(c.device, DEVICES, f"{w}.device")
    for key in ("channels", "cells", "layers", "epochs", "batch_size", "steps_per_epoch"):
        check_positive(getattr(c, key), f"{w}.{key}")
    for key in ("warmup_epochs", "hessian_every", "seed", "split_seed"):
        check_positive(getattr(c, key), f"{w}.{key}", allow_zero=True)
    check_positive(c.weights.lr, f"{w}.weights.lr")
    check_positive(c.alpha.lr, f"{w}.alpha.lr")
    for key in ("lr_min", "momentum", "weight_decay", "grad_clip"):
        check_positive(getattr(c.weights, key), f"{w}.weights.{key}", allow_zero=True)
    if c.weights.lr_min > c.weights.lr:
        raise SpecError(
            f"{w}.weights.lr_min: must be <= weights.lr ({c.weights.lr}), got {c.weights.lr_min}"
        )
    check_positive(c.alpha.weight_decay, f"{w}.alpha.weight_decay", allow_zero=True)
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
    _check_pc_darts(c, w)
    _check_connections(c, w)
    min_layers = spaces.get_space(c.space).min_layers
    if c.layers < min_layers:
        raise SpecError(f"{w}.layers: the {c.space} space needs >= {min_layers}, got {c.layers}")


def _check_baselines(c: SearchConfig, w: str) -> None:
    """The keys of SDARTS-RS/ADV, GDAS, SNAS and NASP."""
    for name in ("sdarts_rs", "sdarts_adv"):
        s = getattr(c, name)
        check_choice(s.schedule, SDARTS_SCHEDULES, f"{w}.{name}.schedule")
        check_positive(s.epsilon_min, f"{w}.{name}.epsilon_min", allow_zero=True)
        check_positive(s.epsilon_max, f"{w}.{name}.epsilon_max", allow_zero=True)
    check_choice(c.sdarts_adv.attack_mode, SDARTS_ATTACK_MODES, f"{w}.sdarts_adv.attack_mode")
    check_positive(c.sdarts_adv.steps, f"{w}.sdarts_adv.steps")
    check_positive(c.gdas.tau_max, f"{w}.gdas.tau_max")
    check_positive(c.gdas.tau_min, f"{w}.gdas.tau_min")
    check_positive(c.snas.temp_init, f"{w}.snas.temp_init")
    check_positive(c.snas.temp_min, f"{w}.snas.temp_min")
    check_positive(c.snas.temp_epochs, f"{w}.snas.temp_epochs")
    check_positive(c.snas.init_std, f"{w}.snas.init_std", allow_zero=True)
    check_positive(c.snas.arch_grad_clip, f"{w}.snas.arch_grad_clip", allow_zero=True)
    check_choice(c.snas.arch_optimizer, SNAS_ARCH_OPTIMIZERS, f"{w}.snas.arch_optimizer")
    if not 0 <= c.nasp.init <= 1:
        raise SpecError(f"{w}.nasp.init: must be in [0, 1], got {c.nasp.init!r}")
    _check_sgas(c, w)


def _check_sgas(c: SearchConfig, w: str) -> None:
    """SGAS's keys, and where it runs (lightaime/sgas: the DARTS space, an op list with none)."""
    s, k = c.sgas, f"{w}.sgas"
    if s.criterion not in (1, 2):
        raise SpecError(f"{k}.criterion: must be 1 or 2, got {s.criterion!r}")
    check_positive(s.warmup_dec_epoch, f"{k}.warmup_dec_epoch", allow_zero=True)
    check_positive(s.decision_freq, f"{k}.decision_freq")
    check_positive(s.history_size, f"{k}.history_size")
    if c.algorithm != "sgas":
        return
    if c.space != "darts":
        raise SpecError(
            f"{w}.algorithm: sgas runs on darts (lightaime/sgas has no {c.space} code), "
            f"not {c.space}"
        )
    if "none" not in c.ops:
        raise SpecError(
            f"{w}.ops: sgas needs `none` among the ops (its edge importance is the weight off "
            f"none), got {list(c.ops)}"
        )
    if c.edge_normalization or c.partial_channels > 1:
        raise SpecError(
            f"{w}.algorithm: sgas runs on DARTS's supernet without PC-DARTS's options "
            "(partial_channels: 1, edge_normalization: false)"
        )


def _check_pc_darts(c: SearchConfig, w: str) -> None:
    """PC-DARTS's supernet options: where they exist, and the algorithms that need them."""
    check_positive(c.partial_channels, f"{w}.partial_channels")
    pc = c.partial_channels > 1 or c.edge_normalization
    if c.algorithm == "gaea_pc_darts" and c.space not in ("nb201", "darts"):
        raise SpecError(
            f"{w}.algorithm: gaea_pc_darts runs on nb201 and darts (PC-DARTS's supernet), "
            f"not {c.space}"
        )
    if c.edge_normalization and c.space not in ("nb201", "darts"):
        raise SpecError(
            f"{w}.edge_normalization: PC-DARTS's edge normalisation exists on nb201 and darts, "
            f"not {c.space} (nasbench-1shot1's PC-DARTS has none; its partial_channels is)"
        )
    if c.channels % c.partial_channels:
        raise SpecError(
            f"{w}.partial_channels: must divide channels ({c.channels}), got {c.partial_channels}"
        )
    if pc and c.impl != "reference" and c.space == "nb201":
        raise SpecError(
            f"{w}.impl: {c.impl} has no PC-DARTS options (partial_channels > 1, "
            "edge_normalization); set impl: reference"
        )
    if c.algorithm == "gaea_pc_darts":
        s, k = c.gaea_pc_darts, f"{w}.gaea_pc_darts"
        check_positive(s.eta, f"{k}.eta")
        check_positive(s.edge_eta, f"{k}.edge_eta")
        if not 0 < s.clamp < 1 / len(c.ops):
            raise SpecError(
                f"{k}.clamp: must be in (0, 1/len(ops) = {1 / len(c.ops):.3g}), got {s.clamp!r}"
            )
        if not 0 <= s.edge_clamp < 0.2:
            raise SpecError(f"{k}.edge_clamp: must be in [0, 0.2), got {s.edge_clamp!r}")


def _check_connections(c: SearchConfig, w: str) -> None:
    """A search with connection weights (NAS-Bench-1Shot1's, PC-DARTS's edge normalisation) needs
    an algorithm that moves them."""
    rows = spaces.get_space(c.space).connection_rows(c)
    if c.edge_normalization and not ALGORITHM_INFO[c.algorithm].betas:
        raise SpecError(
            f"{w}.algorithm: {c.algorithm} moves NAS-Bench-1Shot1's connection weights, not the "
            "edge-normalisation betas (edge_normalization: true); set edge_normalization: false"
        )
    if rows and not ALGORITHM_INFO[c.algorithm].connections:
        ok = [
            n
            for n, info in ALGORITHM_INFO.items()
            if info.connections
            and (c.edge_normalization or n != "gaea_pc_darts")
            and (info.betas or not c.edge_normalization)
        ]  # gaea_pc_darts needs gaea_release's supernets (nb201, darts)
        what = (
            "edge-normalisation betas (edge_normalization: true)"
            if c.edge_normalization
            else f"input/output connection weights of {c.space} ({c.algorithm} runs on nb201 "
            "and darts)"
        )
        raise SpecError(
            f"{w}.algorithm: {c.algorithm} does not move the {what}; valid there: {', '.join(ok)}"
        )
