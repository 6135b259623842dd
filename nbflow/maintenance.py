"""Keeping a ``.nbflow`` folder healthy: verify every artifact, collect unreferenced ones.

Garbage collection keeps every artifact a run or the cache refers to. With a size limit
(``keep_bytes``), it keeps, whatever their size, the manifests of all runs and every
checkpoint of each notebook's newest run and of every interrupted run (so restore and
resume keep working); then the cache entries, most recently used first, while what
they need beyond those stays within the limit. Entries that do not fit are evicted from
the index, and the checkpoints of older runs that nothing kept refers to are deleted:
those runs keep their history (events), but can no longer be restored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from nbflow.errors import NbflowError
from nbflow.snapshot.document import SnapshotDocument
from nbflow.store import Home
from nbflow.store.cache_index import CacheEntry
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
    bytes_kept: int = 0
    entries_kept: int = 0
    entries_evicted: int = 0


def verify(home: Home, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Re-hash every artifact; the ids whose bytes do not match, or do not match the
    checksum a snapshot recorded for them (what a restore checks them against)."""
    damaged: list[str] = []
    checked = 0
    recorded = recorded_checksums(home)
    for artifact_id in list(home.artifacts.ids()):
        if not home.artifacts.verify(artifact_id, recorded.get(artifact_id, ())):
            damaged.append(artifact_id)
        checked += 1
        if progress is not None:
            progress(checked)
    return VerifyReport(checked, tuple(damaged))


def recorded_checksums(home: Home) -> dict[str, set[str]]:
    """For each buffer artifact, the checksums the snapshots of runs and cache entries
    record for it."""
    found: dict[str, set[str]] = {}
    roots = documents_of(home.events) | {entry.snapshot_id for entry in home.cache.entries()}
    for document in _documents(home, roots):
        for variable in document.variables:
            for artifact_id, checksum in zip(variable.buffers, variable.checksums, strict=False):
                found.setdefault(artifact_id, set()).add(checksum)
    return found


def _documents(home: Home, roots: Iterable[str]) -> Iterator[SnapshotDocument]:
    """The namespace snapshot documents among ``roots`` that parse."""
    for root in roots:
        data = home.artifacts.raw(root)
        if data is None or b'"nbflow.namespace"' not in data:
            continue
        try:
            yield SnapshotDocument.from_bytes(data, root)
        except NbflowError:
            continue


def closure(home: Home, roots: Iterable[str]) -> set[str]:
    """``roots`` and, for the snapshot documents among them, every artifact they hold."""
    keep = set(roots)
    for document in _documents(home, list(keep)):
        for variable in document.variables:
            if variable.pickle:
                keep.add(variable.pickle)
            keep.update(variable.buffers)
    return keep


def _entry_needs(home: Home, entry: CacheEntry) -> set[str]:
    return closure(home, [entry.snapshot_id]) | _entry_artifacts(entry)


def _entry_artifacts(entry: CacheEntry) -> set[str]:
    """What an entry names besides its checkpoint: its ``--outputs`` files, and what its
    cell showed (``nbflow run``)."""
    named = {artifact for _, artifact in entry.files}
    return named | {entry.cell_outputs} if entry.cell_outputs else named


def referenced(home: Home) -> set[str]:
    """Every artifact some run or cache entry refers to: manifests, snapshots, what the
    snapshots hold, and the ``--outputs`` files and cell outputs of cache entries."""
    keep = closure(home, documents_of(home.events))
    for entry in home.cache.entries():
        keep |= _entry_artifacts(entry)
    return keep


def _protected(home: Home) -> set[str]:
    """What a size limit never removes: every manifest; every checkpoint of each flow's
    newest run and of every interrupted run."""
    records = home.events.runs()
    newest: dict[str, str] = {}
    for record in records:  # newest first
        newest.setdefault(record.flow_id or "", record.run_id)
    whole = set(newest.values()) | {r.run_id for r in records if r.status == "running"}
    manifests = {r.manifest_id for r in records if r.manifest_id is not None}
    return closure(home, documents_of(home.events, sorted(whole)) | manifests)


def parse_size(text: str) -> int:
    """``10GB``, ``500 MB``, ``1.5GiB``, ``2048`` (bytes) as a number of bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not a size (e.g. 10GB, 500MB, 2GiB)")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    power = " kmgt".index(unit.lower()) if unit else 0
    return int(float(number) * base**power)


def collect_garbage(
    home: Home, *, dry_run: bool = False, keep_bytes: int | None = None
) -> GcReport:
    """Delete artifacts that nothing kept refers to; see the module's docstring."""
    entries = home.cache.entries()
    evicted: list[CacheEntry] = []
    if keep_bytes is None:
        keep = referenced(home)
        kept_entries = len(entries)
    else:
        keep = _protected(home)
        used = 0  # the limit is for what the cache keeps beyond the protected runs
        kept_entries = 0
        full = False
        for entry in sorted(entries, key=lambda e: e.used_us, reverse=True):
            needs = _entry_needs(home, entry) - keep
            extra = sum(_size(home, artifact) for artifact in needs)
            if entry.invalidated or full or used + extra > keep_bytes:
                full = full or not entry.invalidated  # least recently used: all older go
                evicted.append(entry)
                continue
            keep |= needs
            used += extra
            kept_entries += 1
        if evicted and not dry_run:
            home.cache.delete(evicted)
    removed: list[str] = []
    size = 0
    kept_size = 0
    for artifact_id in list(home.artifacts.ids()):
        if artifact_id in keep:
            kept_size += _size(home, artifact_id)
            continue
        size += home.artifacts.size(artifact_id)
        removed.append(artifact_id)
        if not dry_run:
            home.artifacts.delete(artifact_id)
    return GcReport(len(keep), tuple(removed), size, kept_size, kept_entries, len(evicted))


def describe(report: GcReport, dry_run: bool) -> str:
    """One line saying what :func:`collect_garbage` did."""
    verb = "would remove" if dry_run else "removed"
    line = (
        f"{verb} {len(report.removed)} artifacts ({_bytes(report.bytes_removed)}); "
        f"{report.kept} referenced artifacts kept ({_bytes(report.bytes_kept)})"
    )
    if report.entries_evicted:
        evict = "would evict" if dry_run else "evicted"
        entries = "entry" if report.entries_evicted == 1 else "entries"
        line += f"; {evict} {report.entries_evicted} cache {entries}, {report.entries_kept} kept"
    return line


def _bytes(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _size(home: Home, artifact_id: str) -> int:
    try:
        return home.artifacts.size(artifact_id)
    except (NbflowError, OSError):
        return 0  # gone already: it takes no room
