"""The cache as the engine sees it (DESIGN §3 "Cache").

Before a state runs, the engine asks the run's :class:`CachePolicy` for the state's key.
If an earlier completed attempt of the same flow has that key, its outputs are put into
the context and the state is entered and completed on them, with a ``StateCached`` event:
its code does not run. Otherwise the state runs, and its key, checkpoint and outputs are
indexed in the same transaction as its ``StateCompleted``.

What a key covers, and how outputs are put back, depends on the context: JSON documents
for the Python API (:class:`DocumentCache`), the kernel's variables in a notebook
(``nbflow.kernel.cache_policy``). The engine only decides when to ask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol

from nbflow.cache import KeyParts, Uncacheable, make_key
from nbflow.engine.context import C
from nbflow.errors import NbflowError
from nbflow.hashing.code_digest import normalized_code
from nbflow.model.manifest import Manifest
from nbflow.model.plan import StateSpec
from nbflow.store.cache_index import CacheEntry, SqliteCacheIndex
from nbflow.store.events import Within, now_us


@dataclass(frozen=True)
class Keyed:
    """A state's key, or why it has none (it then always runs)."""

    key: str | None
    reason: str | None = None
    facets: Mapping[str, str] = field(default_factory=dict)
    """Keys of the parts of ``key`` known without the data, by part (``code``, ``uses``,
    ``inputs``); see :mod:`nbflow.engine.staleness`."""


@dataclass(frozen=True)
class Outputs:
    """What an attempt changed, as recorded for reuse; ``reason``: not reusable, why."""

    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    reason: str | None = None


@dataclass(frozen=True)
class Reused(Generic[C]):
    """The context with a cache entry's outputs put in; ``changed``: whether that changed
    it (when not, it is still the attempt's base, and needs no new checkpoint)."""

    context: C
    changed: bool = True


class CachePolicy(Protocol, Generic[C]):
    """How the states of one kind of context are keyed and served from the cache."""

    def key(self, manifest: Manifest, spec: StateSpec, base_snapshot_id: str, context: C) -> Keyed:
        """The key of ``spec`` about to run on ``context`` (saved as ``base_snapshot_id``)."""
        ...

    def outputs(self, spec: StateSpec, base_snapshot_id: str, snapshot_id: str) -> Outputs:
        """What the attempt that went from ``base_snapshot_id`` to ``snapshot_id`` changed."""
        ...

    def reuse(self, entry: CacheEntry, context: C, base_snapshot_id: str) -> Reused[C]:
        """``context`` (saved as ``base_snapshot_id``) with ``entry``'s outputs put in;
        raises NbflowError if it cannot."""
        ...


class DocumentCache(Generic[C]):
    """Keys for JSON contexts of the Python API: the state's code and the helpers it
    calls, the whole base context (by its content id), and the run's parameters."""

    def __init__(self, code_of: Any, restore: Any) -> None:
        self._code_of = code_of
        """``state id -> the state's function`` (None when it has none)."""
        self._restore = restore

    def key(self, manifest: Manifest, spec: StateSpec, base_snapshot_id: str, context: C) -> Keyed:
        """See :class:`CachePolicy`."""
        if not spec.cache:
            return Keyed(None, "it is marked not to be cached")
        if spec.always_run:
            return Keyed(None, "it is marked --always-run")
        body = self._code_of(spec.id)
        # A state's source here may be a label; the code that runs is the function's.
        code = normalized_code(spec.source)
        parts = KeyParts({}, lambda _name: None, homes=())
        helpers: Any = None
        try:
            if body is not None:
                homes = (getattr(body, "__module__", "__main__"),)
                parts = KeyParts({"body": body}, lambda _name: None, homes=homes)
                parts.read("body")
                helpers = parts.parts
        except Uncacheable as exc:
            return Keyed(None, exc.reason)
        return Keyed(
            make_key(
                {
                    "state": spec.id,
                    "code": code,
                    "helpers": helpers,
                    "base": base_snapshot_id,
                    "parameters": manifest.parameters,
                }
            )
        )

    def outputs(self, spec: StateSpec, base_snapshot_id: str, snapshot_id: str) -> Outputs:
        """The whole context is the output of a document state."""
        return Outputs()

    def reuse(self, entry: CacheEntry, context: C, base_snapshot_id: str) -> Reused[C]:
        """The context the earlier attempt left (its base was the same document)."""
        restored: C = self._restore(entry.snapshot_id)
        return Reused(restored)


@dataclass(frozen=True)
class RunCache(Generic[C]):
    """The cache as one run uses it."""

    policy: CachePolicy[C]
    index: SqliteCacheIndex
    manifest: Manifest

    def key(self, spec: StateSpec, base_snapshot_id: str, context: C) -> Keyed:
        """The state's key (or why none), never an error: an unkeyable state just runs."""
        try:
            return self.policy.key(self.manifest, spec, base_snapshot_id, context)
        except NbflowError as exc:
            return Keyed(None, exc.message)

    def record(
        self,
        key: str,
        spec: StateSpec,
        run_id: str,
        base_snapshot_id: str,
        snapshot_id: str,
        took_ms: int,
    ) -> Within | None:
        """The index row of a completed attempt, to be written with its StateCompleted."""
        outputs = self.policy.outputs(spec, base_snapshot_id, snapshot_id)
        if outputs.reason is not None:
            return None
        now = now_us()
        entry = CacheEntry(
            key=key,
            flow_id=self.manifest.flow_id,
            state_id=spec.id,
            run_id=run_id,
            base_snapshot_id=base_snapshot_id,
            snapshot_id=snapshot_id,
            changed=outputs.changed,
            deleted=outputs.deleted,
            files=outputs.files,
            took_ms=took_ms,
            bytes=0,
            created_us=now,
            used_us=now,
        )
        return partial(self.index.insert_in, entry=entry)
