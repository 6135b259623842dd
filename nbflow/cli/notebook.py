"""A notebook's ``%%state`` cells and the plan they declare, read as the magic would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError

from nbflow.cli.errors import CommandLineError
from nbflow.kernel.arguments import state_options
from nbflow.model.plan import Edge, Plan, StateSpec


@dataclass(frozen=True)
class StateCell:
    """A ``%%state`` cell of the notebook."""

    index: int
    spec: StateSpec
    after: tuple[str, ...]


def state_cells(notebook: Any) -> list[StateCell]:
    """The notebook's ``%%state`` cells, checked as the magic would."""
    found: list[StateCell] = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or not cell.source.startswith("%%state"):
            continue
        first, _, body = cell.source.partition("\n")
        try:
            options = state_options(first[len("%%state") :].strip())
        except UsageError as exc:
            raise CommandLineError(f"nbflow run: cell {index + 1}: {exc}") from None
        found.append(StateCell(index, options.spec(body), options.after))
    return found


def notebook_plan(flow_id: str, cells: list[StateCell]) -> Plan:
    """The plan of the notebook's state cells, in cell order."""
    return Plan(
        flow_id=flow_id,
        states=tuple(c.spec for c in cells),
        edges=tuple(Edge(upstream=up, downstream=c.spec.id) for c in cells for up in c.after),
    )
