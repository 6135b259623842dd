"""What a capture or a restore did, for the kernel layer to tell the user."""

from __future__ import annotations

from dataclasses import dataclass

from nbflow.snapshot.document import VariableStatus


@dataclass(frozen=True)
class VariableNote:
    """A variable that was not saved, and why."""

    name: str
    status: VariableStatus
    """``withheld`` (looks like a secret) or ``skipped`` (cannot be saved)."""
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.status.value}, {self.reason}"


@dataclass(frozen=True)
class CaptureReport:
    """The outcome of one :meth:`NamespaceCodec.capture`."""

    snapshot_id: str
    stored: tuple[str, ...]
    """Names saved (pickled or as a module reference)."""
    withheld: tuple[VariableNote, ...]
    skipped: tuple[VariableNote, ...]
    new_notes: tuple[VariableNote, ...]
    """Withheld or skipped notes that the previous capture of this codec did not have:
    tell the user these, and stay quiet about the ones already told."""
    bytes_written: int
    """Bytes of new artifacts; 0 when nothing changed."""
    artifacts_written: int
    bytes_hashed: int
    """Bytes blake3-hashed; unchanged buffers are fingerprinted instead."""
    bytes_fingerprinted: int
    seconds: float

    @property
    def notes(self) -> tuple[VariableNote, ...]:
        """Every withheld and skipped variable."""
        return self.withheld + self.skipped


@dataclass(frozen=True)
class RestoreReport:
    """The outcome of one :meth:`NamespaceCodec.restore`."""

    snapshot_id: str
    restored: tuple[str, ...]
    missing: tuple[VariableNote, ...]
    """Variables the snapshot lists but does not hold: they need their cells re-run."""
    mapped_bytes: int
    """Bytes of buffers memory-mapped rather than read."""
    seconds: float
    bytes_checksummed: int = 0
    """Bytes of mapped buffers checked against their recorded xxh3 checksums."""
    bytes_hashed: int = 0
    """Bytes of mapped buffers checked against their blake3 ids (no checksum recorded, or
    ``NBFLOW_VERIFY=full``)."""
