"""Child runs as the parent's history sees them (DESIGN §3 "Child runs").

A child's identity is its key within the parent's state: the caller's ``key``, else a hash
of its target and parameters, never a call counter. Its run id is derived from the
parent's run id, the state and the key, so that the parent, retried or resumed, finds the
same child again: ``ChildRunSpawned`` is recorded before the child starts, and
``ChildRunJoined`` when its result is first taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import blake3

from nbflow.model.events import ChildRunJoined, ChildRunSpawned


@dataclass
class ChildRecord:
    """What the parent's stream says of one child."""

    spawned: ChildRunSpawned
    joined: ChildRunJoined | None = None


ChildKey = tuple[str, str]
"""``(state_id, key)``: a child's identity within its parent run."""


def default_key(target: str, parameters: dict[str, object]) -> str:
    """The key of a child the caller gave none: a hash of its target and parameters."""
    text = json.dumps({"target": target, "parameters": parameters}, sort_keys=True)
    return "auto:" + blake3.blake3(text.encode("utf-8")).hexdigest()[:20]


def child_run_id(parent_run_id: str, state_id: str, key: str) -> str:
    """The run id of the child ``key`` of ``state_id`` in ``parent_run_id`` (32 hex digits,
    like every run id)."""
    text = f"nbflow.child\0{parent_run_id}\0{state_id}\0{key}"
    return blake3.blake3(text.encode("utf-8")).hexdigest()[:32]
