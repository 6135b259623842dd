"""Large plans drawn so that a person can scan them: long chains folded into one node.

A generated plan (one state per month, per region, per model) is often a chain or a few
chains of many states; drawn a box per state it is a picture thousands of pixels long
in which nothing stands out. Above :data:`FOLD_ABOVE` nodes, every chain of more than
:data:`MIN_FOLDED` states that run one after the other (each with one upstream state and
one downstream state) is drawn as one node: the names of its ends, how many states it
holds, and (on hover) each state and its status.
The node takes the status that most needs attention among them (a failure over a running
state over a pending one, completed only when all are), so the picture still shows where
a run is and what went wrong; the hover text lists the states. The fold depends on the
plan's shape only, never on statuses, so a live DAG keeps one layout for the whole run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from nbflow.ui.model import PlanView, StateView

FOLD_ABOVE = 60
"""Plans with more nodes than this have their long chains folded."""
MIN_FOLDED = 3
"""A chain folds when more than this many states lie between its ends."""

_ATTENTION = (
    "failed",
    "interrupted",
    "retrying",
    "running",
    "stale",
    "pending",
    "restored",
    "skipped",
    "cached",
    "completed",
)
"""Statuses in the order a folded node takes them: the first one any member has."""


@dataclass(frozen=True)
class Fold:
    """States drawn as one node."""

    node_id: str
    members: tuple[str, ...]


def group_status(statuses: Iterable[str]) -> str:
    """The status a folded node shows for its members' ``statuses``."""
    present = set(statuses)
    for status in _ATTENTION:
        if status in present:
            if status in ("cached", "skipped", "restored") and "completed" in present:
                return "completed"  # a mix of results: done
            return status
    return "pending"


def find_folds(view: PlanView) -> list[Fold]:
    """The chains of ``view`` that fold (none for a plan of at most :data:`FOLD_ABOVE`
    nodes)."""
    if len(view.states) <= FOLD_ABOVE:
        return []
    known = {state.state_id for state in view.states}
    children: dict[str, list[str]] = {state.state_id: [] for state in view.states}
    parents: dict[str, tuple[str, ...]] = {}
    for state in view.states:
        ups = tuple(up for up in state.upstream if up in known)
        parents[state.state_id] = ups
        for up in ups:
            children[up].append(state.state_id)
    foldable = {
        state.state_id
        for state in view.states
        if state.child is None
        and len(parents[state.state_id]) == 1
        and len(children[state.state_id]) == 1
    }
    """Inner states of chains: one way in, one way out."""
    folds: list[Fold] = []
    seen: set[str] = set()
    for state in view.states:
        start = state.state_id
        if start not in foldable or start in seen:
            continue
        if parents[start][0] in foldable:
            continue  # not the first inner state of its chain
        run = [start]
        while children[run[-1]][0] in foldable and children[run[-1]][0] not in seen:
            run.append(children[run[-1]][0])
        seen.update(run)
        if len(run) > MIN_FOLDED:
            folds.append(Fold(f"{run[0]} … {run[-1]}", tuple(run)))
    return folds


def fold_view(view: PlanView, folds: list[Fold]) -> PlanView:
    """``view`` with each fold drawn as one node, its status :func:`group_status`."""
    if not folds:
        return view
    by_id = {state.state_id: state for state in view.states}
    node_of = {member: fold.node_id for fold in folds for member in fold.members}
    first = {fold.members[0]: fold for fold in folds}
    states: list[StateView] = []
    for state in view.states:
        fold = first.get(state.state_id)
        if fold is not None:
            members = [by_id[m] for m in fold.members]
            states.append(
                StateView(
                    fold.node_id,
                    state.upstream,
                    group_status(m.status for m in members),
                    members=fold.members,
                    member_statuses=tuple(m.status for m in members),
                )
            )
        elif state.state_id not in node_of:
            ups = tuple(node_of.get(up, up) for up in state.upstream)
            states.append(replace(state, upstream=ups) if ups != state.upstream else state)
    return PlanView(view.flow_id, tuple(states))


def fold_statuses(statuses: Mapping[str, str], folds: list[Fold]) -> dict[str, str]:
    """Node statuses of a folded picture from each state's status."""
    folded = dict(statuses)
    for fold in folds:
        folded[fold.node_id] = group_status(statuses.get(m, "pending") for m in fold.members)
        for member in fold.members:
            folded.pop(member, None)
    return folded
