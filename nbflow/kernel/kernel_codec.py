"""The kernel's context codec: snapshots of ``user_ns``, restored in place, with notices."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbflow.kernel.session import KernelSession


class KernelCodec:
    """Snapshots of the kernel's ``user_ns``, restored in place, with notices."""

    def __init__(self, session: KernelSession) -> None:
        self._session = session

    def capture(self, context: dict[str, Any]) -> str:
        """Snapshot the namespace; tell the user once about withheld or skipped names.

        The kernel's namespace is not captured again when certainly nothing changed it
        since its last capture (:mod:`.quiet`): that capture's id is the answer."""
        session = self._session
        snapshots = session.snapshots
        namespace = session.shell.user_ns
        if context is namespace:
            unchanged = session.quiet.unchanged(namespace)
            if unchanged is not None:
                return unchanged
        snapshot_id = snapshots.capture(context)
        if context is namespace:
            session.quiet.mark(snapshot_id, namespace)
        report = snapshots.last_report
        if report is not None and report.new_notes:
            self._session.presenter.message(
                "nbflow: not saved: " + "; ".join(str(note) for note in report.new_notes)
            )
        return snapshot_id

    def verify(self, snapshot_id: str) -> None:
        """Raise if the snapshot or one of its artifacts is damaged, missing or foreign."""
        self._session.snapshots.verify(snapshot_id)

    def differing(self, before: str, after: str) -> tuple[str, ...]:
        """The variables that differ between two snapshots."""
        return self._session.snapshots.differing(before, after)

    def changes(self, before: str, after: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Variables created or changed, and removed, from ``before`` to ``after``."""
        return self._session.snapshots.changes(before, after)

    def load(self, snapshot_id: str) -> dict[str, Any]:
        """The snapshot's variables in a namespace of their own (``user_ns`` untouched)."""
        return self._session.snapshots.restore(snapshot_id)

    def same_variable(self, name: str, first: str, second: str) -> bool:
        """Whether ``name`` has one value in both snapshots."""
        return self._session.snapshots.same_variable(name, first, second)

    def compose(
        self, start: str, layers: Sequence[tuple[str, Collection[str], Collection[str]]]
    ) -> str:
        """``start`` with the layers' changes put on top (joining branches)."""
        return self._session.snapshots.compose(start, layers)

    def restore(self, snapshot_id: str) -> dict[str, Any]:
        """Put the snapshot's variables into ``user_ns``; always-run states run next."""
        session = self._session
        session.quiet.forget()
        session.snapshots.restore(snapshot_id, into=session.shell.user_ns)
        session.replay_pending = list(session.replay_plan)
        return session.shell.user_ns
