"""Child runs in the pictures: read from the parent's stream (``ChildRunSpawned`` and
``ChildRunJoined``) and from each child's own history, wherever its folder is."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from nbflow.errors import NbflowError
from nbflow.model.events import ChildRunJoined, ChildRunSpawned, EventEnvelope
from nbflow.store import Home
from nbflow.store.events import EventStore
from nbflow.ui.model import AttemptBar, ChildView


@dataclass(frozen=True)
class ChildSpan:
    """A child run of one state, and when it ran."""

    state_id: str
    key: str
    home: str
    view: ChildView
    started_us: int
    ended_us: int | None


def _status(run_status: str, driven: bool) -> str:
    if run_status == "running":
        return "running" if driven else "interrupted"
    return {"completed": "completed", "failed": "failed"}.get(run_status, "interrupted")


def child_spans(stream: list[EventEnvelope]) -> list[ChildSpan]:
    """The child runs a parent run's ``stream`` started, in spawn order, with their status
    and times read from their own histories (a history that is gone: as the parent saw)."""
    spawned: dict[tuple[str, str], tuple[ChildRunSpawned, int]] = {}
    joined: dict[tuple[str, str], tuple[ChildRunJoined, int]] = {}
    for envelope in stream:
        event = envelope.event
        if isinstance(event, ChildRunSpawned):
            spawned.setdefault((event.state_id, event.key), (event, envelope.at_us))
        elif isinstance(event, ChildRunJoined):
            joined.setdefault((event.state_id, event.key), (event, envelope.at_us))
    spans = []
    for identity, (event, at_us) in spawned.items():
        started, ended, status = at_us, None, "pending"
        if identity in joined:
            ended, status = joined[identity][1], _status(joined[identity][0].status, False)
        found = _own_record(event.home, event.child_run_id)
        if found is not None:
            started, ended, status = found
        duration = (ended - started) // 1000 if ended is not None else None
        view = ChildView(event.child_run_id, event.target, status, duration)
        spans.append(ChildSpan(event.state_id, event.key, event.home, view, started, ended))
    return spans


def _own_record(home_path: str, run_id: str) -> tuple[int, int | None, str] | None:
    """``(started_us, ended_us, status)`` of ``run_id`` from its own history, if there."""
    if not (Path(home_path) / "nbflow.db").exists():
        return None
    with contextlib.suppress(NbflowError, OSError), Home(home_path) as home:
        record = home.events.run(run_id)
        if record is None:
            return None
        driven = record.status == "running" and home.leases.live_owner(run_id) is not None
        return record.started_us, record.finished_us, _status(record.status, driven)
    return None


def row_name(span: ChildSpan) -> str:
    """The timeline row of a child run (drawn under its state's row): what it runs, and
    which child it is (its key, or its run id)."""
    which = span.key if not span.key.startswith("auto:") else span.view.run_id[:8]
    return f"↳ {span.view.short_target} {which}"


def _bar(span: ChildSpan, origin: int, last_us: int) -> AttemptBar:
    end = span.ended_us if span.ended_us is not None else last_us
    outcome = span.view.status if span.view.status != "pending" else "running"
    return AttemptBar(
        row_name(span),
        0,
        max(0, span.started_us - origin) // 1000,
        max(0, end - span.started_us) // 1000,
        outcome,
        child=span.view,
    )


def with_children(bars: list[AttemptBar], stream: list[EventEnvelope]) -> list[AttemptBar]:
    """``bars`` of a run's attempts with a bar per child run on the same time axis, each
    placed after the last bar of the state that started it."""
    spans = child_spans(stream)
    if not spans:
        return bars
    origin, last_us = stream[0].at_us, stream[-1].at_us
    by_state: dict[str, list[AttemptBar]] = {}
    for span in spans:
        by_state.setdefault(span.state_id, []).append(_bar(span, origin, last_us))
    last_of: dict[str, int] = {bar.state_id: i for i, bar in enumerate(bars)}
    placed: list[AttemptBar] = []
    for i, bar in enumerate(bars):
        placed.append(bar)
        if last_of.get(bar.state_id) == i:
            placed += by_state.pop(bar.state_id, [])
    for rest in by_state.values():
        placed += rest
    return placed


def find_child_run(events: EventStore, flow_id: str, prefix: str) -> ChildRunSpawned | None:
    """The child run whose id starts with ``prefix`` among those the runs of ``flow_id``
    started (its history may be in another folder)."""
    for record in events.runs(flow_id=flow_id):
        for envelope in events.read_range(record.run_id):
            event = envelope.event
            if isinstance(event, ChildRunSpawned) and event.child_run_id.startswith(prefix):
                return event
    return None
