"""The durable run engine: plan validation, start, resume, attempts and backoff.

Its names are imported when first used (see :mod:`nbflow.lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbflow.lazy import exports

if TYPE_CHECKING:
    from nbflow.engine.context import ContextCodec, JsonContextCodec
    from nbflow.engine.contract import manifest_id_of, read_manifest, store_manifest
    from nbflow.engine.core import Engine, Listener
    from nbflow.engine.facts import fact
    from nbflow.engine.failpoints import Failpoints
    from nbflow.engine.history import RunHistory, read_history
    from nbflow.engine.plan import topological_order, validate_plan
    from nbflow.engine.results import (
        Body,
        BodyResolver,
        RunPhase,
        RunResult,
        StartRequest,
        StateTimeout,
    )

_PUBLIC = {
    "ContextCodec": "nbflow.engine.context",
    "JsonContextCodec": "nbflow.engine.context",
    "manifest_id_of": "nbflow.engine.contract",
    "read_manifest": "nbflow.engine.contract",
    "store_manifest": "nbflow.engine.contract",
    "Engine": "nbflow.engine.core",
    "Listener": "nbflow.engine.core",
    "fact": "nbflow.engine.facts",
    "Failpoints": "nbflow.engine.failpoints",
    "RunHistory": "nbflow.engine.history",
    "read_history": "nbflow.engine.history",
    "topological_order": "nbflow.engine.plan",
    "validate_plan": "nbflow.engine.plan",
    "Body": "nbflow.engine.results",
    "BodyResolver": "nbflow.engine.results",
    "RunPhase": "nbflow.engine.results",
    "RunResult": "nbflow.engine.results",
    "StartRequest": "nbflow.engine.results",
    "StateTimeout": "nbflow.engine.results",
}

__getattr__, __dir__ = exports(__name__, _PUBLIC, globals())

__all__ = [
    "Body",
    "BodyResolver",
    "ContextCodec",
    "Engine",
    "Failpoints",
    "JsonContextCodec",
    "Listener",
    "RunHistory",
    "RunPhase",
    "RunResult",
    "StartRequest",
    "StateTimeout",
    "fact",
    "manifest_id_of",
    "read_history",
    "read_manifest",
    "store_manifest",
    "topological_order",
    "validate_plan",
]
