"""The IPython extension: ``%%state`` and ``%flow`` magics over the engine."""

from nbflow.kernel.extension import load, unload
from nbflow.kernel.session import KernelSession

__all__ = ["KernelSession", "load", "unload"]
