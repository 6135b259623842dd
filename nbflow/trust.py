"""Adopting a history made elsewhere: ``%flow trust`` and ``nbflow trust DIR`` (DESIGN §5).

Nothing of a ``.nbflow`` that is not signed with this user's key is loaded. To adopt one
(a colleague's project, a backup from another machine), :func:`inspect` checks every
artifact against its hash and says what the history holds: its runs by notebook, their
states, its size, and how many documents would be signed. :func:`adopt` then signs them,
and refuses while any artifact is damaged. Trusting a folder is trusting whoever made it:
its pickles run code when they are restored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nbflow import maintenance
from nbflow.errors import StorageError
from nbflow.store import Home
from nbflow.store.artifacts import human_size
from nbflow.store.references import documents_of


@dataclass(frozen=True)
class FlowRuns:
    """The runs of one notebook (flow) in the history."""

    flow_id: str
    statuses: tuple[tuple[str, int], ...]
    """``(status, count)``, most frequent first."""

    @property
    def runs(self) -> int:
        """How many runs."""
        return sum(count for _, count in self.statuses)


@dataclass(frozen=True)
class TrustReport:
    """What adopting a history would trust."""

    folder: Path
    flows: tuple[FlowRuns, ...]
    artifacts: int
    bytes: int
    damaged: tuple[str, ...]
    unsigned: tuple[str, ...]
    """Documents (manifests, snapshots) not yet signed with this user's key."""

    @property
    def runs(self) -> int:
        """How many runs in all."""
        return sum(flow.runs for flow in self.flows)

    def lines(self) -> list[str]:
        """The report as text, a line each."""
        lines = [
            f"{self.folder}: {self.runs} runs of {len(self.flows)} notebooks, "
            f"{self.artifacts} artifacts ({human_size(self.bytes)})"
        ]
        for flow in self.flows:
            statuses = ", ".join(f"{count} {status}" for status, count in flow.statuses)
            lines.append(f"  {flow.flow_id}: {flow.runs} runs ({statuses})")
        if self.damaged:
            lines.append(f"  {len(self.damaged)} artifacts are damaged: " + ", ".join(self.damaged))
        elif self.unsigned:
            lines.append(f"  {len(self.unsigned)} documents are not signed with your key")
        else:
            lines.append("  everything is already signed with your key")
        return lines


def inspect(home: Home, progress: Callable[[int], None] | None = None) -> TrustReport:
    """Verify every artifact of ``home`` and say what adopting it would trust."""
    verified = maintenance.verify(home, progress)
    per_flow: dict[str, Counter[str]] = {}
    run_ids = []
    for record in home.events.runs():
        run_ids.append(record.run_id)
        per_flow.setdefault(record.flow_id or "?", Counter())[record.status] += 1
    flows = tuple(
        FlowRuns(flow_id, tuple(counter.most_common()))
        for flow_id, counter in sorted(per_flow.items())
    )
    documents = documents_of(home.events, run_ids)
    unsigned = tuple(sorted(d for d in documents if not home.artifacts.is_signed(d)))
    size = sum(home.artifacts.size(a) for a in home.artifacts.ids())
    return TrustReport(home.root, flows, verified.checked, size, verified.damaged, unsigned)


def adopt(home: Home, report: TrustReport) -> int:
    """Sign the unsigned documents of ``report`` with this user's key; how many."""
    if report.damaged:
        raise StorageError(
            "history_damaged",
            f"the history in {home.root} has {len(report.damaged)} damaged artifacts; "
            "nothing was signed",
            name=str(home.root),
            hint="a damaged history cannot be trusted as a whole; `nbflow verify` lists them",
        )
    with home.artifacts.batch():
        for artifact_id in report.unsigned:
            home.artifacts.sign(artifact_id)
    return len(report.unsigned)
