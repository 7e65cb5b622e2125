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
}
