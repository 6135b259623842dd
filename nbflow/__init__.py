"""nbflow: durable, resumable notebook workflows.

States run in order, every state is checkpointed, every step is an event in a log beside
the notebook, and a run cut off by a crash continues where it stopped.

The public names are imported when first used, so that ``nbflow runs`` and the kernel
extension load only the parts they need.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nbflow.lazy import exports

if TYPE_CHECKING:
    from nbflow.children import ChildResult, ChildRun, child, run_child
    from nbflow.engine import Engine, Failpoints, RunPhase, RunResult, StartRequest, fact
    from nbflow.engine.facts import now, seed
    from nbflow.errors import NbflowError
    from nbflow.flow import Flow

__version__ = "0.1.0"

# A library does not configure logging; applications and the kernel extension do.
logging.getLogger("nbflow").addHandler(logging.NullHandler())

_PUBLIC = {
    "ChildResult": "nbflow.children",
    "ChildRun": "nbflow.children",
    "child": "nbflow.children",
    "run_child": "nbflow.children",
    "Engine": "nbflow.engine",
    "Failpoints": "nbflow.engine",
    "RunPhase": "nbflow.engine",
    "RunResult": "nbflow.engine",
    "StartRequest": "nbflow.engine",
    "fact": "nbflow.engine",
    "now": "nbflow.engine.facts",
    "seed": "nbflow.engine.facts",
    "NbflowError": "nbflow.errors",
    "Flow": "nbflow.flow",
}
"""Public name → the module that defines it."""


__getattr__, __dir__ = exports(__name__, _PUBLIC, globals())


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext nbflow``: register the magics and open the notebook's history."""
    from nbflow.kernel import load

    load(ipython)  # type: ignore[arg-type]


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext nbflow``."""
    from nbflow.kernel import unload

    unload(ipython)  # type: ignore[arg-type]


__all__ = [
    "ChildResult",
    "ChildRun",
    "Engine",
    "Failpoints",
    "Flow",
    "NbflowError",
    "RunPhase",
    "RunResult",
    "StartRequest",
    "__version__",
    "child",
    "fact",
    "load_ipython_extension",
    "now",
    "run_child",
    "seed",
    "unload_ipython_extension",
]
