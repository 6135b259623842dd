"""The snapshot document: which artifacts hold each variable of a namespace.

A snapshot is itself an artifact: the canonical JSON of a :class:`SnapshotDocument`. It
names, per variable, its type, its status, the bytes it occupies and the artifacts that hold
it, so that listing, diffing and garbage collection never unpickle anything. Sizes are
integers because canonical JSON refuses floats; the document holds no timestamps, so an
unchanged namespace captures to the same snapshot id.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nbflow.errors import ContextError
from nbflow.hashing.canonical import canonical_bytes, canonical_json

SNAPSHOT_FORMAT_VERSION = 2
"""Version of the snapshot document; bumped on incompatible change. Version 2 added the
buffers' checksums; version 1 documents are still read (their buffers are checked with
blake3)."""
SNAPSHOT_KIND: Final = "nbflow.namespace"
PICKLE_PROTOCOL = 5


def python_version() -> str:
    """``major.minor`` of this interpreter: pickled code objects only load on the same one."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VariableStatus(str, Enum):
    """Whether a variable's value is in the snapshot."""

    STORED = "stored"
    """Saved; restore brings it back."""
    WITHHELD = "withheld"
    """Looks like a secret; never written anywhere."""
    SKIPPED = "skipped"
    """Cannot be saved (a lock, a socket, a generator, ...)."""


class Encoding(str, Enum):
    """How a stored variable is encoded."""

    PICKLE = "pickle"
    """A segment of the namespace's pickle stream plus out-of-band buffers."""
    MODULE = "module"
    """A module, restored by importing its name."""


class VariableEntry(_Frozen):
    """One variable of the namespace."""

    name: str
    type_name: str = Field(description="``module.QualName`` of the value's type.")
    status: VariableStatus
    encoding: Encoding | None = Field(default=None, description="Set when stored.")
    size: int = Field(default=0, ge=0, description="Bytes stored: in-band pickle + buffers.")
    pickle: str | None = Field(
        default=None, description="Artifact of the variable's slice of the pickle stream."
    )
    buffers: tuple[str, ...] = Field(
        default=(), description="Out-of-band buffer artifacts, in the order pickle uses them."
    )
    checksums: tuple[str, ...] = Field(
        default=(),
        description="``xxh3_128:<hex>`` of each buffer, in the order of ``buffers``: what a "
        "restore checks a memory-mapped buffer against. Empty in version 1 documents.",
    )
    module: str | None = Field(default=None, description="Module name when encoding=module.")
    reason: str | None = Field(default=None, description="Why withheld or skipped.")

    @model_validator(mode="after")
    def _one_checksum_per_buffer(self) -> VariableEntry:
        if self.checksums and len(self.checksums) != len(self.buffers):
            raise ValueError("checksums must be empty or one per buffer")
        return self

    def checksum_of(self, index: int) -> str | None:
        """The recorded checksum of buffer ``index``; None in version 1 documents."""
        return self.checksums[index] if self.checksums else None

    @property
    def artifact_ids(self) -> tuple[str, ...]:
        """Every artifact this variable's value lives in."""
        head = (self.pickle,) if self.pickle is not None else ()
        return head + self.buffers


class SnapshotDocument(_Frozen):
    """A namespace snapshot: its variables in pickle-stream order."""

    format_version: int = SNAPSHOT_FORMAT_VERSION
    kind: Literal["nbflow.namespace"] = SNAPSHOT_KIND
    pickle_protocol: int = PICKLE_PROTOCOL
    python: str = Field(description="``major.minor`` of the Python that pickled the values.")
    variables: tuple[VariableEntry, ...] = Field(
        description="In stream order (values of array libraries after the others, each "
        "group sorted by name); stored pickled variables are loaded in this order."
    )

    def variable(self, name: str) -> VariableEntry | None:
        """The entry of ``name``, or None."""
        return next((v for v in self.variables if v.name == name), None)

    def by_name(self) -> dict[str, VariableEntry]:
        """Every entry by its variable's name (for many look-ups)."""
        return {v.name: v for v in self.variables}

    def names(self, status: VariableStatus | None = None) -> tuple[str, ...]:
        """Variable names, optionally only those with ``status``."""
        return tuple(v.name for v in self.variables if status is None or v.status == status)

    def artifact_ids(self) -> frozenset[str]:
        """Every artifact the snapshot refers to (for garbage collection)."""
        return frozenset(a for v in self.variables for a in v.artifact_ids)

    def to_bytes(self) -> bytes:
        """The canonical JSON bytes whose content id is the snapshot id."""
        value = self.model_dump(mode="json")
        # The model types every field as text, whole numbers or lists of them, so no
        # float can be in it; text without a UTF-8 form (lone surrogates) is what could
        # be, and the canonical check then says where.
        try:
            return canonical_bytes(value)
        except UnicodeEncodeError:
            return canonical_json(value)

    @classmethod
    def from_bytes(cls, data: bytes, snapshot_id: str) -> SnapshotDocument:
        """Parse a stored document; :class:`ContextError` names ``snapshot_id`` if it is not one."""
        try:
            raw = json.loads(data)
        except ValueError:
            raw = None
        if not isinstance(raw, dict) or raw.get("kind") != SNAPSHOT_KIND:
            raise ContextError(
                "snapshot_not_namespace",
                f"artifact {snapshot_id} is not a namespace snapshot",
                name=snapshot_id,
                hint="pass the id of a snapshot written by NamespaceCodec.capture",
            )
        version = raw.get("format_version")
        if not isinstance(version, int) or version > SNAPSHOT_FORMAT_VERSION:
            raise ContextError(
                "snapshot_format_unsupported",
                f"snapshot {snapshot_id} has format version {version!r}; this nbflow reads "
                f"up to {SNAPSHOT_FORMAT_VERSION}",
                name=snapshot_id,
                hint="upgrade nbflow to restore it",
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ContextError(
                "snapshot_undecodable",
                f"snapshot {snapshot_id} does not match the snapshot format "
                f"({exc.error_count()} problems)",
                name=snapshot_id,
                hint="it was written by another program or a newer nbflow",
            ) from exc
