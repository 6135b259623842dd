"""Appending one run's events with the sequence number the writer expects."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nbflow.engine.secret_guard import SecretGuard
from nbflow.model.events import Event, EventEnvelope
from nbflow.store.events import EventStore


class RunWriter:
    """Appends a run's events, tracking its head; a conflicting writer raises on append.

    Every event passes the ``guard`` first (see :mod:`.secret_guard`).

    ``stage`` holds an event back so that it is committed together with the next append:
    the engine stages ``StateCompleted`` and commits it with the next ``StateEntered``, one
    durable transaction per state instead of two. Nothing runs between the two, so the
    window is no wider than the commit itself; :meth:`flush` commits whatever is staged.
    """

    def __init__(
        self,
        events: EventStore,
        run_id: str,
        head_seq: int,
        listeners: Sequence[Callable[[EventEnvelope], None]] = (),
        guard: SecretGuard | None = None,
    ) -> None:
        self._events = events
        self._guard = guard
        self._listeners = listeners
        self.run_id = run_id
        self.head_seq = head_seq
        self._staged: list[Event] = []

    def append(self, *events: Event) -> list[EventEnvelope]:
        """Durably append the staged events and ``events``."""
        batch = [*self._staged, *events]
        if not batch:
            return []
        if self._guard is not None:
            batch = [self._guard.check(event) for event in batch]
        envelopes = self._events.append(self.run_id, self.head_seq, batch)
        self._staged.clear()
        self.head_seq = envelopes[-1].seq
        for listener in self._listeners:
            for envelope in envelopes:
                listener(envelope)
        return envelopes

    def stage(self, event: Event) -> None:
        """Queue ``event`` to be committed with the next append or flush."""
        self._staged.append(event)

    def flush(self) -> None:
        """Commit staged events, if any."""
        self.append()
