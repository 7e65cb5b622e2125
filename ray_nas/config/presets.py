"""Named presets of search keys (`search.lr_scheme`): each sets the optimiser keys (and, for some,
epochs, batch size, ops, cells) of one paper's or code base's search. Resolution order:
dataclass defaults < the preset < the job's explicit `search` keys < the grid point.
"""

from __future__ import annotations

from typing import Any

from ray_nas.spaces import darts

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
    # DARTS cnn/train_search.py: SGD (no nesterov) cosine 0.025 -> 0.001, Adam 3e-4, 50 epochs,
    # architecture step before the weight step (architect.step, then the SGD step)
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
        "step_order": "arch_first",
    },
    # SS-DARTS/train_search.py (the paper's code): cosine with eta_min = lr, i.e. constant;
    # architecture step first (as quark0/darts)
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
        "step_order": "arch_first",
    },
    # automl/nasbench-1shot1 optimizers/darts/train_search.py: batch 96, 50
    # epochs, C=16, 9 cells, SGD 0.025 cosine to 0.001 (momentum 0.9, no nesterov, wd 3e-4,
    # clip 5), arch Adam 3e-4 betas (0.5, 0.999) wd 1e-3; train portion 0.5 is our 50/50 split;
    # architecture step first (every optimizer there with an architecture step)
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
        "step_order": "arch_first",
    },
    # yuhuixu1993/PC-DARTS train_search.py: batch 256, SGD 0.1 cosine to 0 over 50 epochs (no
    # nesterov, wd 3e-4), arch Adam 6e-4 (0.5, 0.999) wd 1e-3 on alpha and betas, the
    # architecture frozen for the first 15 epochs without a warm-up ramp, k = 4, edge normalisation
    "pc_darts": {
        "weights": {
            "lr": 0.1,
            "lr_min": 0.0,
            "schedule": "cosine",
            "momentum": 0.9,
            "nesterov": False,
            "weight_decay": 3.0e-4,
            "grad_clip": 5.0,
            "warmup_rule": "frozen",
        },
        "alpha": {"lr": 6.0e-4, "betas": [0.5, 0.999], "weight_decay": 1.0e-3},
        "warmup_epochs": 15,
        "epochs": 35,
        "batch_size": 256,
        "partial_channels": 4,
        "edge_normalization": True,
    },
    # liamcli/gaea_release configs/cnn (mode search_pcdarts, method_eedarts_space_pcdarts): batch
    # 256, SGD 0.1 cosine to 0 over 50 epochs (no nesterov, wd 3e-4), no architecture freeze
    "gaea_pc_darts": {
        "weights": {
            "lr": 0.1,
            "lr_min": 0.0,
            "schedule": "cosine",
            "momentum": 0.9,
            "nesterov": False,
            "weight_decay": 3.0e-4,
            "grad_clip": 5.0,
        },
        "epochs": 50,
        "batch_size": 256,
        "partial_channels": 4,
        "edge_normalization": True,
    },
}
