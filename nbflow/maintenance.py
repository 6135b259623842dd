"""Keeping a ``.nbflow`` folder healthy: verify every artifact, collect unreferenced ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nbflow.errors import NbflowError
from nbflow.snapshot.document import SnapshotDocument
from nbflow.store import Home
from nbflow.store.references import documents_of


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found."""

    checked: int
    damaged: tuple[str, ...]


@dataclass(frozen=True)
class GcReport:
    """What :func:`collect_garbage` removed (or would remove)."""

    kept: int
    removed: tuple[str, ...]
    bytes_removed: int


def verify(home: Home, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Re-hash every artifact; the ids whose bytes do not match."""
    damaged: list[str] = []
    checked = 0
    for artifact_id in list(home.artifacts.ids()):
        if not home.artifacts.verify(artifact_id):
            damaged.append(artifact_id)
        checked += 1
        if progress is not None:
            progress(checked)
    return VerifyReport(checked, tuple(damaged))


def referenced(home: Home) -> set[str]:
    """Every artifact some run refers to: manifests, snapshots, and what snapshots hold."""
    roots = documents_of(home.events)
    keep = set(roots)
    for root in roots:
        data = home.artifacts.raw(root)
        if data is None or b'"nbflow.namespace"' not in data:
            continue
        try:
            document = SnapshotDocument.from_bytes(data, root)
        except NbflowError:
            continue
        for variable in document.variables:
            if variable.pickle:
                keep.add(variable.pickle)
            keep.update(variable.buffers)
    return keep


def collect_garbage(home: Home, *, dry_run: bool = False) -> GcReport:
    """Delete artifacts that no run refers to (all runs are kept)."""
    keep = referenced(home)
    removed: list[str] = []
    size = 0
    for artifact_id in list(home.artifacts.ids()):
        if artifact_id in keep:
            continue
        size += home.artifacts.size(artifact_id)
        removed.append(artifact_id)
        if not dry_run:
            home.artifacts.delete(artifact_id)
    return GcReport(len(keep), tuple(removed), size)
