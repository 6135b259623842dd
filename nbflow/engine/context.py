"""The context interface: how the engine saves and loads what a state works on.

A *context* is the value a state body receives and returns: in plain Python a JSON document,
in a notebook the kernel's variables. A codec turns a context into a snapshot artifact and
back. The engine only ever handles snapshot ids; what a snapshot contains is the codec's.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, Protocol, TypeVar

from nbflow.errors import ContextError
from nbflow.hashing.redact import KnownSecrets
from nbflow.hashing.secrets import find_secrets, might_hold_secret
from nbflow.store.artifacts import ArtifactStore

C = TypeVar("C")


class ContextCodec(Protocol[C]):
    """Saves a context as a snapshot artifact and loads it back."""

    def capture(self, context: C) -> str:
        """Durably store ``context`` and return its snapshot id (an artifact id)."""
        ...

    def restore(self, snapshot_id: str) -> C:
        """Load the context saved as ``snapshot_id``; verifies every artifact read."""
        ...

    def verify(self, snapshot_id: str) -> None:
        """Raise if ``snapshot_id`` or an artifact it needs is damaged or missing."""
        ...


class JsonContextCodec:
    """Contexts that are JSON documents, stored as one artifact each.

    Equal documents give equal ids, so a state that changes nothing writes nothing. A
    context that holds a secret is refused (``secrets_detected``) and nothing is written.
    """

    def __init__(self, artifacts: ArtifactStore, secrets: KnownSecrets | None = None) -> None:
        self._artifacts = artifacts
        self._secrets = secrets if secrets is not None else KnownSecrets()

    def capture(self, context: Any) -> str:
        """Store ``context`` as sorted, compact JSON, after checking it for secrets."""
        try:
            data = json.dumps(
                context, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ContextError(
                "context_not_json",
                f"the context is not a JSON document: {exc}",
                hint="return only dicts, lists, strings, numbers, booleans and None from a state",
            ) from exc
        text = data.decode("utf-8")
        findings = []
        if might_hold_secret(text):
            findings += [f"{f.kind} at {f.where}" for f in find_secrets(context)]
        findings += [f"the value of {source}" for source in self._secrets.find(text)]
        if findings:
            raise ContextError(
                "secrets_detected",
                f"the context would persist secrets: {'; '.join(findings)}; nothing was written",
                hint="keep credentials out of the context: read them from the environment "
                "inside the state that needs them",
                details={"findings": findings},
            )
        # Not signed: a JSON document is parsed, never unpickled or run (see signing.py).
        return self._artifacts.put(data)

    def verify(self, snapshot_id: str) -> None:
        """Raise if the document ``snapshot_id`` is damaged or missing."""
        self.restore(snapshot_id)

    def differing(self, before: str, after: str) -> tuple[str, ...]:
        """The top-level keys that differ between two documents (all of it: ``""``)."""
        old, new = self.restore(before), self.restore(after)
        if not isinstance(old, dict) or not isinstance(new, dict):
            return () if old == new else ("",)
        keys = old.keys() | new.keys()
        return tuple(sorted(k for k in keys if k not in old or k not in new or old[k] != new[k]))

    def changes(self, before: str, after: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Top-level keys created or changed from ``before`` to ``after``, and removed."""
        old, new = self.restore(before), self.restore(after)
        if not isinstance(old, dict) or not isinstance(new, dict):
            raise ContextError(
                "context_not_mapping",
                "a state that runs in parallel must take and return a JSON object",
                hint="return a dict from each state, or run the flow with parallel=1",
            )
        changed = tuple(sorted(k for k in new if k not in old or old[k] != new[k]))
        return changed, tuple(sorted(k for k in old if k not in new))

    def load(self, snapshot_id: str) -> Any:
        """The document saved as ``snapshot_id`` (as :meth:`restore`)."""
        return self.restore(snapshot_id)

    def same_variable(self, name: str, first: str, second: str) -> bool:
        """Whether key ``name`` has one value in documents ``first`` and ``second``."""
        one, two = self.restore(first), self.restore(second)
        return bool(name in one and name in two and one[name] == two[name])

    def compose(
        self, start: str, layers: Sequence[tuple[str, Collection[str], Collection[str]]]
    ) -> str:
        """``start``'s document with each layer ``(snapshot, changed, removed)`` applied."""
        document = self.restore(start)
        for snapshot_id, changed, removed in layers:
            values = self.restore(snapshot_id)
            for key in changed:
                document[key] = values[key]
            for key in removed:
                document.pop(key, None)
        return self.capture(document)

    def restore(self, snapshot_id: str) -> Any:
        """The JSON document saved as ``snapshot_id``."""
        data = self._artifacts.get(snapshot_id)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ContextError(
                "context_undecodable",
                f"snapshot {snapshot_id} is not a JSON document",
                name=snapshot_id,
            ) from exc
