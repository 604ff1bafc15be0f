"""lrtool: learning-rate range tests and one-cycle training for config-defined experiments.

What a command does, for notebooks and scripts (the CLI is a thin layer over these):

    import lrtool
    exp = lrtool.load_experiment("exp.yaml")
    run = lrtool.run_train(exp, lr_max="auto", refind=True)  # lrtool train --lr-max auto --refind

The engine, on objects you built yourself:

    from lrtool import find_lr, fit_one_cycle
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Imported on first use, so `lrtool --help` does not pay for importing torch.
_LAZY = {
    "find_lr": "finder",
    "fit_one_cycle": "train",
    "load_experiment": "workflows",
    "run_find": "workflows",
    "run_train": "workflows",
    "run_verify": "workflows",
    "run_smoke": "workflows",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lrtool' has no attribute {name!r}")
