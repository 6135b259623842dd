"""Persisted data of nbflow: pydantic models with a format version."""

from nbflow.model.config import (
    FORMAT_VERSION,
    ExponentialBackoff,
    FanOutJoin,
    FixedBackoff,
    RetryPolicy,
    RunConfig,
    Sequential,
)
from nbflow.model.errors import ErrorCategory, ErrorInfo
from nbflow.model.events import (
    AttemptInterrupted,
    CheckpointsDiscarded,
    Event,
    EventEnvelope,
    FactRecorded,
    LeaseTakenOver,
    Note,
    RetryScheduled,
    RunCompleted,
    RunStarted,
    RunStatus,
    StateCached,
    StateCompleted,
    StateEntered,
    StateFailed,
    StateKeyed,
    StatesSatisfied,
)
from nbflow.model.lease import LeaseOwner
from nbflow.model.manifest import Manifest
from nbflow.model.plan import Edge, Plan, StateSpec

__all__ = [
    "FORMAT_VERSION",
    "AttemptInterrupted",
    "CheckpointsDiscarded",
    "Edge",
    "ErrorCategory",
    "ErrorInfo",
    "Event",
    "EventEnvelope",
    "ExponentialBackoff",
    "FactRecorded",
    "FanOutJoin",
    "FixedBackoff",
    "LeaseOwner",
    "LeaseTakenOver",
    "Manifest",
    "Note",
    "Plan",
    "RetryPolicy",
    "RetryScheduled",
    "RunCompleted",
    "RunConfig",
    "RunStarted",
    "RunStatus",
    "Sequential",
    "StateCached",
    "StateCompleted",
    "StateEntered",
    "StateFailed",
    "StateKeyed",
    "StateSpec",
    "StatesSatisfied",
]
