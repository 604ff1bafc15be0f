"""lrtool: learning-rate range tests and one-cycle training for config-defined experiments.

The engine, for notebooks and scripts (the CLI is a thin layer over these):

    from lrtool import find_lr, fit_one_cycle
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "find_lr", "fit_one_cycle"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `lrtool --help` does not pay for importing torch.
    if name == "find_lr":
        from .finder import find_lr

        return find_lr
    if name == "fit_one_cycle":
        from .train import fit_one_cycle

        return fit_one_cycle
    raise AttributeError(f"module 'lrtool' has no attribute {name!r}")
