"""Persisted data of nbflow: pydantic models with a format version.

Its names are imported when first used (see :mod:`nbflow.lazy`): building a model's
schema takes time, and a command needs few of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbflow.lazy import exports

if TYPE_CHECKING:
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
        ReplayChecked,
        RetryScheduled,
        RunCompleted,
        RunStarted,
        RunStatus,
        StateCached,
        StateCompleted,
        StateEntered,
        StateFailed,
        StateKeyed,
        StateSkipped,
        StatesSatisfied,
    )
    from nbflow.model.lease import LeaseOwner
    from nbflow.model.manifest import Manifest
    from nbflow.model.plan import Edge, Plan, StateSpec

_PUBLIC = {
    "FORMAT_VERSION": "nbflow.model.config",
    "ExponentialBackoff": "nbflow.model.config",
    "FanOutJoin": "nbflow.model.config",
    "FixedBackoff": "nbflow.model.config",
    "RetryPolicy": "nbflow.model.config",
    "RunConfig": "nbflow.model.config",
    "Sequential": "nbflow.model.config",
    "ErrorCategory": "nbflow.model.errors",
    "ErrorInfo": "nbflow.model.errors",
    "AttemptInterrupted": "nbflow.model.events",
    "CheckpointsDiscarded": "nbflow.model.events",
    "Event": "nbflow.model.events",
    "EventEnvelope": "nbflow.model.events",
    "FactRecorded": "nbflow.model.events",
    "LeaseTakenOver": "nbflow.model.events",
    "Note": "nbflow.model.events",
    "ReplayChecked": "nbflow.model.events",
    "RetryScheduled": "nbflow.model.events",
    "RunCompleted": "nbflow.model.events",
    "RunStarted": "nbflow.model.events",
    "RunStatus": "nbflow.model.events",
    "StateCached": "nbflow.model.events",
    "StateCompleted": "nbflow.model.events",
    "StateEntered": "nbflow.model.events",
    "StateFailed": "nbflow.model.events",
    "StateKeyed": "nbflow.model.events",
    "StateSkipped": "nbflow.model.events",
    "StatesSatisfied": "nbflow.model.events",
    "LeaseOwner": "nbflow.model.lease",
    "Manifest": "nbflow.model.manifest",
    "Edge": "nbflow.model.plan",
    "Plan": "nbflow.model.plan",
    "StateSpec": "nbflow.model.plan",
}

__getattr__, __dir__ = exports(__name__, _PUBLIC, globals())

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
    "ReplayChecked",
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
    "StateSkipped",
    "StateSpec",
    "StatesSatisfied",
]
