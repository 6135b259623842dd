"""The IPython extension: ``%%state`` and ``%flow`` magics over the engine.

Its names are imported when first used: the command line reads this package's views
without loading IPython.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbflow.lazy import exports

if TYPE_CHECKING:
    from nbflow.kernel.extension import load, unload
    from nbflow.kernel.session import KernelSession

_PUBLIC = {
    "load": "nbflow.kernel.extension",
    "unload": "nbflow.kernel.extension",
    "KernelSession": "nbflow.kernel.session",
}


__getattr__, __dir__ = exports(__name__, _PUBLIC, globals())


__all__ = ["KernelSession", "load", "unload"]
