"""The IPython extension: ``%%state`` and ``%flow`` magics over the engine.

Its names are imported when first used: the command line reads this package's views
without loading IPython.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbflow.kernel.extension import load, unload
    from nbflow.kernel.session import KernelSession

_PUBLIC = {
    "load": "nbflow.kernel.extension",
    "unload": "nbflow.kernel.extension",
    "KernelSession": "nbflow.kernel.session",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'nbflow.kernel' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["KernelSession", "load", "unload"]
