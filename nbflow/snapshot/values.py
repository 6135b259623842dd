"""Single values kept as snapshots: facts that are not small JSON (DESIGN §4).

A value is stored as a one-variable snapshot, so it gets everything a kernel variable
gets: pickle protocol 5 with its buffers written once and memory-mapped when read back,
secrets refused, every artifact verified, the document signed.
"""

from __future__ import annotations

from typing import Any

from nbflow.errors import NbflowError
from nbflow.hashing.redact import KnownSecrets
from nbflow.snapshot.codec import NamespaceCodec
from nbflow.store.artifacts import ArtifactStore

_NAME = "value"


class SnapshotValues:
    """Implements :class:`nbflow.engine.facts.FactValues` over an artifact store.

    It has a codec of its own, so that storing a value does not disturb what the kernel's
    codec remembers of the namespace."""

    def __init__(self, artifacts: ArtifactStore, secrets: KnownSecrets | None = None) -> None:
        self._codec = NamespaceCodec(artifacts, secrets=secrets)

    def put(self, key: str, value: Any) -> str:
        """Store ``value``; ``fact_secret`` or ``fact_not_storable`` when it cannot be."""
        snapshot_id = self._codec.capture({_NAME: value})
        report = self._codec.last_report
        assert report is not None
        if report.withheld:
            raise NbflowError(
                "fact_secret",
                f"fact {key!r} was not recorded: its value holds a secret "
                f"({report.withheld[0].reason})",
                name=key,
                hint="record what the state needs again (an id, a status), not the "
                "credential; read credentials from the environment in each attempt",
            )
        if report.skipped:
            raise NbflowError(
                "fact_not_storable",
                f"fact {key!r} was not recorded: its value cannot be saved "
                f"({report.skipped[0].reason})",
                name=key,
                hint="return data (numbers, text, arrays, frames), not a live object such "
                "as a connection, a lock or a generator",
            )
        return snapshot_id

    def get(self, snapshot_id: str) -> Any:
        """The value stored as ``snapshot_id``."""
        return self._codec.restore(snapshot_id)[_NAME]
