"""The states a kernel's cells declared, and their ``--after`` edges."""

from __future__ import annotations

from collections.abc import Iterable

from IPython.core.error import UsageError

from nbflow.engine import topological_order
from nbflow.kernel.arguments import StateOptions
from nbflow.kernel.usage import usage
from nbflow.model.plan import Edge, Plan, StateSpec


class DeclaredStates:
    """What ``%%state`` cells declared, in declaration order; a cycle is never kept."""

    def __init__(self, flow_id: str) -> None:
        self.flow_id = flow_id
        self.specs: dict[str, StateSpec] = {}
        self.upstream: dict[str, tuple[str, ...]] = {}
        """State id -> the states its ``--after`` names (declared or not)."""

    def declare(self, options: StateOptions, source: str) -> StateSpec:
        """Declare (or redefine) a state; a cycle is refused, naming its states."""
        spec = options.spec(source)
        specs = {**self.specs, spec.id: spec}
        upstream = {**self.upstream, spec.id: options.after}
        usage(lambda: topological_order(self._plan_of(specs, upstream, set(specs))))
        self.specs, self.upstream = specs, upstream
        return spec

    def adopt(self, plan: Plan) -> None:
        """Take a whole plan's states and edges (a notebook run declares them at once)."""
        for spec in plan.states:
            self.specs[spec.id] = spec
            self.upstream[spec.id] = plan.upstream_of(spec.id)

    def plan(self, names: Iterable[str] = ()) -> Plan:
        """The declared plan, or ``names`` and everything upstream of them; validated."""
        wanted = list(names)
        unknown = [n for n in wanted if n not in self.specs]
        if unknown:
            raise UsageError(
                f"%flow run: no state named {', '.join(map(repr, unknown))} has been declared"
            )
        selected = set(self.specs) if not wanted else self._with_upstream(wanted)
        dangling = sorted(
            f"{down!r} needs {up!r}"
            for down in selected
            for up in self.upstream.get(down, ())
            if up not in self.specs
        )
        if dangling:
            raise UsageError(
                "the plan depends on undeclared states: "
                + "; ".join(dangling)
                + ". Run the cells that declare them, or fix --after"
            )
        plan = self._plan_of(self.specs, self.upstream, selected)
        usage(lambda: topological_order(plan))
        return plan

    def downstream_of(self, state: str) -> set[str]:
        """``state`` and every declared state that depends on it, directly or not."""
        found = {state}
        frontier = [state]
        while frontier:
            current = frontier.pop()
            for other, ups in self.upstream.items():
                if current in ups and other not in found:
                    found.add(other)
                    frontier.append(other)
        return found

    def order(self) -> list[str]:
        """State ids in an order that runs each after its upstream states, when the plan
        is complete; in declaration order otherwise."""
        try:
            return [spec.id for spec in topological_order(self.plan())]
        except UsageError:
            return list(self.specs)

    def _plan_of(
        self,
        specs: dict[str, StateSpec],
        upstream: dict[str, tuple[str, ...]],
        selected: set[str],
    ) -> Plan:
        return Plan(
            flow_id=self.flow_id,
            states=tuple(spec for sid, spec in specs.items() if sid in selected),
            edges=tuple(
                Edge(upstream=up, downstream=down)
                for down in specs
                if down in selected
                for up in upstream.get(down, ())
                if up in specs
            ),
        )

    def _with_upstream(self, names: list[str]) -> set[str]:
        selected: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in selected:
                continue
            selected.add(name)
            stack.extend(self.upstream.get(name, ()))
        return selected
