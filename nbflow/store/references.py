"""What a history's runs refer to: the documents that signatures and garbage collection
start from."""

from __future__ import annotations

from nbflow.model.events import (
    FactRecorded,
    RunCompleted,
    RunStarted,
    StateCompleted,
    StateEntered,
)
from nbflow.store.events import EventStore


def documents_of(events: EventStore, run_ids: list[str] | None = None) -> set[str]:
    """The manifests and snapshots (checkpoints, and the values of facts) the runs
    (default: every run) name in their events."""
    roots: set[str] = set()
    for run_id in run_ids if run_ids is not None else [r.run_id for r in events.runs()]:
        for envelope in events.read_range(run_id):
            event = envelope.event
            if isinstance(event, RunStarted):
                roots |= {event.manifest_id, event.initial_snapshot_id}
            elif isinstance(event, StateEntered):
                roots.add(event.base_snapshot_id)
            elif isinstance(event, StateCompleted):
                roots.add(event.context_snapshot_id)
            elif isinstance(event, RunCompleted) and event.final_snapshot_id:
                roots.add(event.final_snapshot_id)
            elif isinstance(event, FactRecorded) and event.snapshot_id:
                roots.add(event.snapshot_id)
    return roots
