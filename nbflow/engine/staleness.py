"""Which states are stale: their result no longer matches their code and inputs.

A state is stale when one of its key's facets (:mod:`nbflow.cache.facets`) as it would be
now differs from the one recorded with its last completed attempt (its code, what code
it uses, its ``--inputs`` files), when an upstream state is stale, or when an upstream
state has executed again since the state last completed (its inputs are newer than its
result). Everything is read from the event history: the facets travel in ``StateKeyed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nbflow.cache.facets import FACETS
from nbflow.model.events import EventEnvelope, StateCached, StateCompleted, StateEntered, StateKeyed
from nbflow.store.events import EventStore

HISTORY_DEPTH = 200
"""How many recent runs are read to find each state's last completed attempt."""

_CHANGED = {
    "code": "its code changed",
    "uses": "a function, class or module it uses changed",
    "inputs": "its --inputs files changed",
}


@dataclass(frozen=True)
class Completion:
    """A state's last completed attempt."""

    run_id: str
    completed_us: int
    cached: bool
    """Served from the cache (its result is an earlier execution's)."""
    facets: Mapping[str, str] = field(default_factory=dict)


def completions_in(run_id: str, stream: Iterable[EventEnvelope]) -> dict[str, Completion]:
    """The last completed attempt of each state in one run's stream."""
    found: dict[str, Completion] = {}
    facets: dict[str, dict[str, str]] = {}
    cached: set[str] = set()
    for envelope in stream:
        event = envelope.event
        if isinstance(event, StateEntered):
            facets.pop(event.state_id, None)
            cached.discard(event.state_id)
        elif isinstance(event, StateKeyed):
            facets[event.state_id] = dict(event.facets)
        elif isinstance(event, StateCached):
            cached.add(event.state_id)
        elif isinstance(event, StateCompleted):
            found[event.state_id] = Completion(
                run_id,
                envelope.at_us,
                event.state_id in cached,
                facets.get(event.state_id, {}),
            )
    return found


def last_completions(
    events: EventStore, flow_id: str, state_ids: Iterable[str], depth: int = HISTORY_DEPTH
) -> dict[str, Completion]:
    """Each state's last completed attempt across the flow's ``depth`` newest runs."""
    wanted = set(state_ids)
    latest: dict[str, Completion] = {}
    for record in events.runs(flow_id=flow_id, limit=depth):
        if wanted <= latest.keys():
            break
        memo = (record.run_id, record.head_seq)
        found = _SEEN.get(memo)
        if found is None:
            found = completions_in(record.run_id, events.read_range(record.run_id))
            if len(_SEEN) >= _SEEN_LIMIT:
                _SEEN.pop(next(iter(_SEEN)))
            _SEEN[memo] = found
        for state_id, completion in found.items():
            latest.setdefault(state_id, completion)
    return latest


_SEEN: dict[tuple[str, int], dict[str, Completion]] = {}
"""Completions of runs already read, by run and head: a stream whose head did not move
has the same events (they are append-only), so each run is read once per process."""
_SEEN_LIMIT = 4096


def stale_states(
    order: Iterable[tuple[str, tuple[str, ...]]],
    last: Mapping[str, Completion],
    current: Mapping[str, Mapping[str, str]],
) -> dict[str, str]:
    """``state id -> why it is stale`` for the stale ones.

    ``order``: each state with its upstream, in topological order; ``last``: each state's
    last completion; ``current``: each state's facets as they would be now (a facet that
    cannot be computed now, or was not recorded then, is not compared).
    """
    stale: dict[str, str] = {}
    for state_id, upstream in order:
        done = last.get(state_id)
        if done is None:
            continue  # never completed: pending, not stale
        now = current.get(state_id, {})
        changed = [
            facet
            for facet in FACETS
            if facet in now and facet in done.facets and now[facet] != done.facets[facet]
        ]
        if changed:
            stale[state_id] = _CHANGED[changed[0]]
            continue
        for up in upstream:
            if up in stale:
                stale[state_id] = f"upstream {up} is stale"
                break
            before = last.get(up)
            if before is not None and not before.cached and before.completed_us > done.completed_us:
                stale[state_id] = f"upstream {up} ran again since"
                break
    return stale
