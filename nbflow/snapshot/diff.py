"""Which variables differ between two snapshots, read from their documents alone."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import cloudpickle

from nbflow.snapshot.document import SnapshotDocument, VariableEntry


@dataclass(frozen=True)
class SnapshotDiff:
    """Names added, removed, changed and unchanged from ``before`` to ``after``."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        """Whether the two snapshots hold the same variables with the same bytes."""
        return not (self.added or self.removed or self.changed)


def _content(entry: VariableEntry) -> tuple[object, ...]:
    # Stored bytes are compared through their content ids. A variable pickled after one
    # whose structure changed may get different bytes without changing itself (pickle's
    # memo numbers shift); it then shows as changed: a diff of bytes, never a false "same".
    return (
        entry.status,
        entry.encoding,
        entry.type_name,
        entry.module,
        entry.pickle,
        entry.buffers,
        entry.reason,
    )


def diff(before: SnapshotDocument, after: SnapshotDocument) -> SnapshotDiff:
    """Compare two snapshot documents variable by variable (no artifact is read)."""
    old = {v.name: v for v in before.variables}
    new = {v.name: v for v in after.variables}
    return SnapshotDiff(
        added=tuple(sorted(new.keys() - old.keys())),
        removed=tuple(sorted(old.keys() - new.keys())),
        changed=tuple(
            sorted(n for n in old.keys() & new.keys() if _content(old[n]) != _content(new[n]))
        ),
        unchanged=tuple(
            sorted(n for n in old.keys() & new.keys() if _content(old[n]) == _content(new[n]))
        ),
    )


def same_value(a: Any, b: Any) -> bool:
    """Whether two restored values are the same value: pickled alone, in the same way,
    they give the same bytes and buffers (compared in place, never copied)."""
    try:
        a_buffers: list[pickle.PickleBuffer] = []
        b_buffers: list[pickle.PickleBuffer] = []
        a_bytes = cloudpickle.dumps(a, protocol=5, buffer_callback=a_buffers.append)
        b_bytes = cloudpickle.dumps(b, protocol=5, buffer_callback=b_buffers.append)
    except Exception:  # what cannot be pickled alone is not judged equal
        return False
    if a_bytes != b_bytes or len(a_buffers) != len(b_buffers):
        return False
    return all(x.raw() == y.raw() for x, y in zip(a_buffers, b_buffers, strict=True))
