"""The durable run engine: plan validation, start, resume, attempts and backoff."""

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
