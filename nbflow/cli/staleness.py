"""What ``nbflow show NOTEBOOK`` says is stale: the notebook's state cells as they are on
disk now, against the facets recorded with each state's last completed attempt.

Without a kernel, only the facets that need none are compared: each state's code (as
the notebook holds it now) and its ``--inputs`` files. What code a state uses from plain
cells is judged by the kernel (``%flow show``), which has those definitions.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import nbformat

from nbflow.cache import code_facts
from nbflow.cache.facets import code_facet, inputs_facet
from nbflow.cli.notebook import notebook_plan, state_cells
from nbflow.errors import NbflowError
from nbflow.kernel.cache_policy import declared_inputs, python_of
from nbflow.kernel.views import plan_view
from nbflow.model.plan import Plan
from nbflow.store import Home
from nbflow.ui.model import PlanView


def notebook_now(path: Path) -> Plan:
    """The plan of the notebook's ``%%state`` cells as the file holds them."""
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    return notebook_plan(path.name, state_cells(notebook))


def current_facets(home: Home, plan: Plan, folder: Path) -> dict[str, dict[str, str]]:
    """Each state's ``code`` and ``inputs`` facets as they are now."""
    facets: dict[str, dict[str, str]] = {}
    for spec in plan.states:
        normalized = code_facts(python_of(spec.source)).normalized
        found = {"code": code_facet(spec.id, normalized, spec.outputs)}
        # An input unreadable now is not compared (running the state will say why).
        with contextlib.suppress(NbflowError, OSError):
            found["inputs"] = inputs_facet(declared_inputs(spec.inputs, folder, home.file_digests))
        facets[spec.id] = found
    return facets


def notebook_view(home: Home, path: Path) -> PlanView:
    """The notebook's plan now, each state with its latest status, stale ones marked."""
    plan = notebook_now(path)
    return plan_view(home.events, plan, current=current_facets(home, plan, path.parent))
