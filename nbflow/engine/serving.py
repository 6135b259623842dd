"""Serving a state from the cache: the first intact entry with the state's key, and the
attempt recorded as served from it (DESIGN §3 "Cache").

Used by the sequential engine and by fan-out alike; :mod:`.caching` decides keys and
what an entry holds, this module only finds one and writes what serving it means.
"""

from __future__ import annotations

from functools import partial

from nbflow.engine.caching import RunCache
from nbflow.engine.context import C, ContextCodec
from nbflow.engine.logs import RunLogger
from nbflow.engine.writer import RunWriter
from nbflow.errors import NbflowError
from nbflow.model.events import StateCached, StateCompleted
from nbflow.model.plan import StateSpec
from nbflow.store.cache_index import CacheEntry


def cached_outputs(
    codec: ContextCodec[C],
    cache: RunCache[C],
    key: str,
    base_snapshot_id: str,
    context: C,
    run_id: str,
) -> tuple[CacheEntry, str, C] | None:
    """The first intact entry with ``key``, the snapshot of ``context`` with its outputs
    put in, and that context; None if there is none."""
    for entry in cache.index.find(key, cache.manifest.flow_id):
        try:
            reused = cache.policy.reuse(entry, context, base_snapshot_id)
            if not reused.changed:
                snapshot_id = base_snapshot_id  # its outputs were there already
            elif entry.base_snapshot_id == base_snapshot_id:
                snapshot_id = entry.snapshot_id
            else:
                snapshot_id = codec.capture(reused.context)
        except NbflowError as exc:  # damaged or gone: try the next, or run the code
            RunLogger(run_id).warning("cache entry not usable: %s", exc.message)
            continue
        return entry, snapshot_id, reused.context
    return None


def record_served(
    cache: RunCache[C],
    entry: CacheEntry,
    key: str,
    spec: StateSpec,
    snapshot_id: str,
    writer: RunWriter,
) -> None:
    """Record the open attempt of ``spec`` as served from ``entry``."""
    writer.append(
        StateCached(
            state_id=spec.id,
            from_run=entry.run_id,
            from_state=entry.state_id,
            key=key,
            saved_ms=entry.took_ms,
            computed_us=entry.created_us,
        )
    )
    writer.stage(
        StateCompleted(state_id=spec.id, context_snapshot_id=snapshot_id),
        partial(cache.index.touch_in, entry=entry),
    )
