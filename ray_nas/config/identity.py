"""A trial's identity: `run_id`, the 12-hex-digit digest of its resolved SearchConfig that names its
folder in the store, its MLflow run and its rows in every table.

The rule. The run_id is sha256 over the canonical JSON (`config_json`'s form) of every search
field that changes what the search computes, so the same grid point gets the same run_id on any
machine and in any job, and a rerun finds the trials a store already holds. Three lists keep it
stable as SearchConfig grows:
- NON_IDENTITY_FIELDS say where or how fast, not what (data_root, device, compile, ...): never
  part of the run_id.
- ADDED_FIELDS were added after stores existed and their default computes what the code before
  them did: left out while they hold that default, so a job written before them keeps its
  run_ids; a trial that sets one gets a new run_id.
- LEGACY_FIELDS were added with a default that computes something new: left out exactly where
  the config computes what the old code did (a predicate on the config), so only the trials
  whose computation changed get new run_ids.
A new identity field of SearchConfig goes into ADDED_FIELDS or LEGACY_FIELDS; the golden run_ids
in tests/test_spec.py and tests/test_paper_jobs.py fail when an old job's run_ids would move.
"""

from __future__ import annotations

import typing

from ray_nas.algorithms import LEGACY_ARCH_FIRST, arch_first
from ray_nas.config.schema import SearchConfig, to_dict
from ray_nas.digest import canonical_json, sha256_hex

#: Fields that say where things are, not what is searched: not part of the run_id.
NON_IDENTITY_FIELDS = (
    "data_root",
    "download",
    "device",
    "compile",
    "compile_mode",
    "channels_last",
)

#: Search fields added after stores existed (dotted for nested ones, e.g. "weights.warmup_rule"):
#: left out of the run_id while they hold their dataclass default, so every job written before
#: them keeps its run_ids. Every new identity field of SearchConfig is listed here, or in
#: LEGACY_FIELDS when its default changes what is computed.
ADDED_FIELDS: tuple[str, ...] = (
    "objective",
    "darts_v2.radius",
    "gaea.eta",
    "gaea.clamp",
    "drnas.reg",
    "drnas.reg_scale",
    "space",
    "layers",
    "sdarts_rs.epsilon_min",
    "sdarts_rs.epsilon_max",
    "sdarts_rs.schedule",
    "sdarts_adv.epsilon_min",
    "sdarts_adv.epsilon_max",
    "sdarts_adv.schedule",
    "sdarts_adv.steps",
    "sdarts_adv.random_start",
    "sdarts_adv.attack_mode",
    "gdas.tau_max",
    "gdas.tau_min",
    "snas.temp_init",
    "snas.temp_min",
    "snas.temp_epochs",
    "snas.init_mean",
    "snas.init_std",
    "snas.arch_optimizer",
    "snas.arch_grad_clip",
    "nasp.init",
    "gaea_pc_darts.eta",
    "gaea_pc_darts.clamp",
    "gaea_pc_darts.edge_eta",
    "gaea_pc_darts.edge_clamp",
    "partial_channels",
    "edge_normalization",
    "sgas.criterion",
    "sgas.warmup_dec_epoch",
    "sgas.decision_freq",
    "sgas.history_size",
)

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
    # the old order was one per algorithm in every space (DARTS-V1 weights first); the upstream
    # order differs for DARTS-V1 on the darts and nb1shot1_* spaces (architecture first)
    "step_order": lambda d: (
        arch_first(d["algorithm"], d["space"], d["step_order"])
        == LEGACY_ARCH_FIRST.get(d["algorithm"], True)
    ),
}


def config_json(cfg: SearchConfig) -> str:
    """Canonical JSON of a resolved config (sorted keys, no whitespace)."""
    return canonical_json(to_dict(cfg))


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
    return sha256_hex(canonical_json(d), 12)


def _prune_empty(d: dict, parents: list[str]) -> None:
    """Drop the mappings along `parents` that removing ADDED_FIELDS left empty (deepest first)."""
    for i in range(len(parents), 0, -1):
        node = d
        for p in parents[: i - 1]:
            node = node[p]
        if node.get(parents[i - 1]) == {}:
            del node[parents[i - 1]]
