"""Plan validation and topological order.

A plan is refused before anything runs when it is empty, names a state twice, has an edge to
a state it does not declare, or has a cycle; the cycle error names the states on it.
"""

from __future__ import annotations

import heapq

from nbflow.errors import PlanError
from nbflow.model.plan import Plan, StateSpec


def topological_order(plan: Plan) -> list[StateSpec]:
    """The plan's states in an order that respects every edge; of the states that are
    ready, the one declared first goes first, so that a plan declared in a valid order
    (a notebook's cells, top to bottom) runs in exactly that order."""
    if not plan.states:
        raise PlanError(
            "empty_plan",
            f"the plan of {plan.flow_id!r} has no states",
            name=plan.flow_id,
            hint="declare at least one state with %%state NAME",
        )
    by_id: dict[str, StateSpec] = {}
    for spec in plan.states:
        if spec.id in by_id:
            raise PlanError(
                "duplicate_state_id",
                f"state {spec.id!r} is declared twice",
                name=spec.id,
                hint="give every state a unique name",
            )
        by_id[spec.id] = spec
    position = {spec.id: index for index, spec in enumerate(plan.states)}
    indegree = dict.fromkeys(by_id, 0)
    downstream: dict[str, list[str]] = {state_id: [] for state_id in by_id}
    for edge in plan.edges:
        for end in (edge.upstream, edge.downstream):
            if end not in by_id:
                other = edge.downstream if end == edge.upstream else edge.upstream
                raise PlanError(
                    "unknown_state_in_edge",
                    f"state {other!r} depends on {end!r}, which is not declared"
                    if end == edge.upstream
                    else f"an edge from {other!r} leads to undeclared state {end!r}",
                    name=end,
                    hint=f"declare {end!r} with %%state, or remove it from --after",
                    details={"edge": [edge.upstream, edge.downstream]},
                )
        downstream[edge.upstream].append(edge.downstream)
        indegree[edge.downstream] += 1
    ready = [position[spec.id] for spec in plan.states if indegree[spec.id] == 0]
    heapq.heapify(ready)
    order: list[StateSpec] = []
    while ready:
        spec = plan.states[heapq.heappop(ready)]
        order.append(spec)
        for child in downstream[spec.id]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, position[child])
    if len(order) != len(by_id):
        cycle = find_cycle(plan, {s for s, d in indegree.items() if d > 0})
        raise PlanError(
            "circular_dependency",
            "the plan has a cycle: " + " -> ".join([*cycle, cycle[0]]),
            name=cycle[0],
            hint="remove one of these --after dependencies",
            details={"cycle": cycle},
        )
    return order


def find_cycle(plan: Plan, candidates: set[str]) -> list[str]:
    """One cycle among ``candidates`` (states left with unmet dependencies), in edge order."""
    remaining = set(candidates)
    successors: dict[str, list[str]] = {state_id: [] for state_id in remaining}
    for edge in plan.edges:
        if edge.upstream in remaining and edge.downstream in remaining:
            successors[edge.upstream].append(edge.downstream)
    # States that only sit downstream of a cycle lead nowhere; prune them until every state
    # left has a successor, so that a forward walk must come back to a state it saw.
    pruned = True
    while pruned:
        pruned = False
        for state_id in list(remaining):
            if not any(s in remaining for s in successors[state_id]):
                remaining.discard(state_id)
                pruned = True
    start = next(spec.id for spec in plan.states if spec.id in remaining)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(s for s in successors[node] if s in remaining)
    return path[seen[node] :]


def validate_plan(plan: Plan) -> None:
    """Raise :class:`PlanError` if ``plan`` cannot run; see :func:`topological_order`."""
    topological_order(plan)
