"""Namespace snapshots: the kernel's variables as content-addressed artifacts."""

from nbflow.snapshot.codec import NamespaceCodec
from nbflow.snapshot.diff import SnapshotDiff, diff
from nbflow.snapshot.document import (
    SNAPSHOT_FORMAT_VERSION,
    Encoding,
    SnapshotDocument,
    VariableEntry,
    VariableStatus,
)
from nbflow.snapshot.filters import is_ipython_name
from nbflow.snapshot.report import CaptureReport, RestoreReport, VariableNote

__all__ = [
    "SNAPSHOT_FORMAT_VERSION",
    "CaptureReport",
    "Encoding",
    "NamespaceCodec",
    "RestoreReport",
    "SnapshotDiff",
    "SnapshotDocument",
    "VariableEntry",
    "VariableNote",
    "VariableStatus",
    "diff",
    "is_ipython_name",
]
