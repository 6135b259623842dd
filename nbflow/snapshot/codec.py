"""``NamespaceCodec``: the kernel's variables as content-addressed snapshot artifacts.

How a namespace becomes a snapshot (details in the modules named):

* :mod:`.filters` sets aside IPython's names, withholds secrets and skips live state;
* :mod:`.capture` pickles the rest as one protocol-5 stream, cut per variable, keeping
  identity across variables; :mod:`.pickling` is the pickler (cloudpickle, notebook
  functions bound to the namespace); :mod:`.scan` checks each slice for secrets;
* :mod:`.buffers` hashes out-of-band buffers in place and skips unchanged ones cheaply;
* :mod:`.document` is the JSON document that lists it all, itself an artifact;
* :mod:`.restore` maps buffers copy-on-write after verifying them and unpickles.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from nbflow.hashing.redact import KnownSecrets
from nbflow.snapshot.capture import Capture, CaptureMemory, default_workers
from nbflow.snapshot.diff import diff, same_value
from nbflow.snapshot.document import SnapshotDocument
from nbflow.snapshot.report import CaptureReport, RestoreReport
from nbflow.snapshot.restore import Restore
from nbflow.store.artifacts import ArtifactStore

_CAPTURED_KEPT = 4
"""Documents of recent captures kept in memory: a state's base and result, and a few
more."""


class NamespaceCodec:
    """Saves a namespace (``dict`` of variables) as a snapshot and loads it back.

    Implements :class:`nbflow.engine.context.ContextCodec` for ``dict[str, Any]``. One codec
    per kernel: it remembers fingerprints of the last capture so that the next one only
    hashes and writes what changed. Not thread-safe: capture from one thread at a time, and
    do not let other threads mutate the namespace meanwhile.
    """

    def __init__(
        self,
        artifacts: ArtifactStore,
        *,
        workers: int | None = None,
        secrets: KnownSecrets | None = None,
    ) -> None:
        self._artifacts = artifacts
        self.secrets = secrets if secrets is not None else KnownSecrets()
        """Secret values: withheld variables' values are added, and no slice holding one
        is written."""
        self._workers = workers if workers is not None else default_workers()
        self._memory = CaptureMemory()
        self.owned: Callable[[str, Any], bool] | None = None
        """Whether a name's value is IPython's, decided by the kernel from its shell
        (:mod:`nbflow.kernel.ipython_names`); None: IPython's names by name."""
        self._last_report: CaptureReport | None = None
        self._last_restore: RestoreReport | None = None
        self._captured: dict[str, SnapshotDocument] = {}
        """The documents of the last captures, oldest first."""

    def capture(self, context: Mapping[str, Any]) -> str:
        """Durably store the variables of ``context`` and return the snapshot id.

        IPython's own names are ignored. Variables that look like secrets are withheld and
        values that cannot be pickled are skipped; both are listed in the snapshot with the
        reason and in :attr:`last_report`, and neither stops the capture.
        """
        capture = Capture(self._artifacts, self._memory, self._workers, self.secrets, self.owned)
        snapshot_id, document, report = capture.run(context)
        self._last_report = report
        self._captured[snapshot_id] = document
        while len(self._captured) > _CAPTURED_KEPT:
            del self._captured[next(iter(self._captured))]
        return snapshot_id

    def restore(
        self,
        snapshot_id: str,
        *,
        into: dict[str, Any] | None = None,
        names: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """The variables saved as ``snapshot_id``, every artifact verified before use.

        With ``into`` (the kernel's ``user_ns``), the variables are put there and functions
        defined in the notebook get it as their globals, as if their cells had been run in
        it; names not in the snapshot are left alone. Nothing is changed if restoring
        fails: the error names the variable and, for damage, the artifact. With ``names``,
        only those variables are put back.
        """
        document = self.document(snapshot_id)
        target: dict[str, Any] = {} if into is None else into
        self._last_restore = Restore(self._artifacts, self._workers).run(
            snapshot_id, document, target, names
        )
        return target

    def verify(self, snapshot_id: str) -> None:
        """Raise if the snapshot, or an artifact it names, is unsigned, damaged or missing;
        nothing is unpickled."""
        document = self.document(snapshot_id)
        for variable in document.variables:
            checksums = dict(zip(variable.buffers, variable.checksums, strict=False))
            for artifact_id in variable.artifact_ids:
                if not self._artifacts.exists(artifact_id):
                    raise self._artifacts.not_found(artifact_id)
                recorded = (checksums[artifact_id],) if artifact_id in checksums else ()
                if not self._artifacts.verify(artifact_id, recorded):
                    raise self._artifacts.corrupt(artifact_id)

    def differing(self, before: str, after: str) -> tuple[str, ...]:
        """The variables added, removed or changed in value from snapshot ``before`` to
        ``after``.

        Stored bytes decide first. Bytes can differ where values do not: pickle shares a
        string or an object it met before in the stream, and restored objects share less
        than live ones (a function restored from a checkpoint and saved again is the same
        function in other bytes). So a variable whose bytes differ is restored from both
        snapshots and compared by value (:func:`same_value`)."""
        changes = diff(self.document(before), self.document(after))
        differing = list(changes.added + changes.removed)
        if changes.changed:
            old: dict[str, Any] = {}
            new: dict[str, Any] = {}
            Restore(self._artifacts, self._workers).run(
                before, self.document(before), old, changes.changed
            )
            Restore(self._artifacts, self._workers).run(
                after, self.document(after), new, changes.changed
            )
            for name in changes.changed:
                if name not in old or name not in new or not same_value(old[name], new[name]):
                    differing.append(name)
        return tuple(sorted(differing))

    def changes(self, before: str, after: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What went from ``before`` to ``after``: the variables created or changed in
        value, and those removed."""
        gone = set(self.document(before).names()) - set(self.document(after).names())
        changed = tuple(name for name in self.differing(before, after) if name not in gone)
        return changed, tuple(sorted(gone))

    def same_variable(self, name: str, first: str, second: str) -> bool:
        """Whether variable ``name`` has one value in snapshots ``first`` and ``second``."""
        return name not in self.differing_names(first, second, (name,))

    def differing_names(self, first: str, second: str, names: Collection[str]) -> set[str]:
        """Those of ``names`` whose values differ between two snapshots."""
        one, two = self.document(first), self.document(second)
        candidates = [n for n in names if one.variable(n) != two.variable(n)]
        if not candidates:
            return set()
        old: dict[str, Any] = {}
        new: dict[str, Any] = {}
        Restore(self._artifacts, self._workers).run(first, one, old, candidates)
        Restore(self._artifacts, self._workers).run(second, two, new, candidates)
        return {
            n for n in candidates if n not in old or n not in new or not same_value(old[n], new[n])
        }

    def compose(
        self, start: str, layers: Sequence[tuple[str, Collection[str], Collection[str]]]
    ) -> str:
        """The snapshot of ``start``'s variables with each layer applied in order: a
        layer ``(snapshot, changed, removed)`` puts ``changed`` from its snapshot and
        deletes ``removed``. How branches that ran at once are joined (DESIGN §3)."""
        namespace: dict[str, Any] = {}
        self.restore(start, into=namespace)
        for snapshot_id, changed, removed in layers:
            if changed:
                self.restore(snapshot_id, into=namespace, names=changed)
            for name in removed:
                namespace.pop(name, None)
        # A codec of its own: this capture must not reset what the kernel's next
        # capture of its own namespace can skip.
        joined = NamespaceCodec(self._artifacts, workers=self._workers, secrets=self.secrets)
        return joined.capture(namespace)

    def captured_document(self, snapshot_id: str) -> SnapshotDocument:
        """The document of ``snapshot_id``: as this codec made it, if it is one of its
        last captures (no need to read back what it wrote), else :meth:`document`. For
        reading the names and ids a document lists; a restore reads and checks it."""
        found = self._captured.get(snapshot_id)
        return found if found is not None else self.document(snapshot_id)

    def document(self, snapshot_id: str) -> SnapshotDocument:
        """The parsed, verified snapshot document of ``snapshot_id``: signed by this user
        (``untrusted_history`` otherwise), and its bytes hashed."""
        self._artifacts.require_signed(snapshot_id, "snapshot")
        return SnapshotDocument.from_bytes(self._artifacts.get(snapshot_id), snapshot_id)

    @property
    def last_report(self) -> CaptureReport | None:
        """What the last :meth:`capture` stored, withheld and skipped; None before any."""
        return self._last_report

    @property
    def last_restore(self) -> RestoreReport | None:
        """What the last :meth:`restore` brought back; None before any."""
        return self._last_restore
