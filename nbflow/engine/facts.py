"""``nbflow.fact``, ``nbflow.now``, ``nbflow.seed``: values that must be the same on retry,
resume and replay as the first time (DESIGN §4, seed "live IO").

A fact's value is recorded in the run's stream: small JSON values inline in the event,
anything else a snapshot can hold (a DataFrame, a NumPy array, bytes) as artifacts through
a :class:`FactValues` store, named by the event. A replay run (``RunConfig.replay_of``)
serves facts from the replayed run's record only: one it does not hold fails with
``fact_missing`` and the live function is never called.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets as random_source
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from nbflow.engine.children import ChildKey, ChildRecord
from nbflow.errors import NbflowError
from nbflow.hashing.redact import KnownSecrets
from nbflow.hashing.secrets import find_secrets
from nbflow.model.events import Event

T = TypeVar("T")

INLINE_LIMIT = 64 * 1024
"""JSON values up to this many bytes are kept in the event; larger ones as artifacts."""


@dataclass(frozen=True)
class StoredFact:
    """A recorded fact whose value is held by artifacts: the snapshot that holds it."""

    snapshot_id: str


class FactValues(Protocol):
    """Stores fact values that are not small JSON, and loads them back."""

    def put(self, key: str, value: Any) -> str:
        """Store ``value`` and return the id of the snapshot holding it; ``fact_secret``
        if it holds a secret, ``fact_not_storable`` if it cannot be saved."""
        ...

    def get(self, snapshot_id: str) -> Any:
        """The value stored as ``snapshot_id``, every artifact verified."""
        ...


Recorder = Callable[[str, Any, str | None], None]
"""Appends ``FactRecorded(key, value, snapshot_id)`` to the run's stream."""


@dataclass
class FactScope:
    """The facts of the run an attempt belongs to, and how to record a new one."""

    facts: dict[str, Any]
    """Key → JSON value, or :class:`StoredFact`: what this run recorded so far."""
    record: Recorder
    secrets: KnownSecrets = field(default_factory=KnownSecrets)
    """Values that must not be recorded; a fact holding one is refused."""
    values: FactValues | None = None
    """Where values that are not small JSON go; without it only JSON can be recorded."""
    replaying: Mapping[str, Any] | None = None
    """In a replay: the replayed run's facts, the only source of facts."""
    replay_of: str = ""
    run_id: str = ""
    """The run the attempt belongs to (a child's parent)."""
    append: Callable[[Event], None] | None = None
    """Appends a domain event to the run's stream (child runs record theirs with it)."""
    children: dict[ChildKey, ChildRecord] = field(default_factory=dict)
    """The child runs this run recorded so far."""
    replayed_children: Mapping[ChildKey, ChildRecord] | None = None
    """In a replay: the child runs of the replayed run, the only source of results."""
    home: str = ""
    """Where this run's history is (a child names it as its parent's)."""
    state_id: str = ""
    """The state whose attempt runs now (for the keys of ``now()`` and ``seed()``)."""
    _calls: dict[str, int] = field(default_factory=dict)

    def begin(self, state_id: str) -> None:
        """An attempt of ``state_id`` starts: call positions count from 0 again."""
        self.state_id = state_id
        self._calls = {}

    def position_key(self, kind: str) -> str:
        """``kind``'s key for its next call in this attempt: state and call position."""
        position = self._calls.get(kind, 0)
        self._calls[kind] = position + 1
        return f"nbflow.{kind}:{self.state_id}:{position}"

    def recorded(self, key: str) -> tuple[bool, Any]:
        """Whether ``key`` was recorded (in this run, or in the run being replayed, which
        is then recorded in this one too), and its value."""
        if key in self.facts:
            return True, self._value(self.facts[key])
        if self.replaying is None:
            return False, None
        if key not in self.replaying:
            raise NbflowError(
                "fact_missing",
                f"this run replays run {self.replay_of[:8]}, which recorded no fact {key!r}; "
                "nothing was called",
                name=key,
                hint="a replay can only serve what the replayed run recorded; run the plan "
                "normally to call it live",
                retryable=False,
            )
        held = self.replaying[key]
        if isinstance(held, StoredFact):
            self.record(key, None, held.snapshot_id)
        else:
            self.record(key, held, None)
        self.facts[key] = held
        return True, self._value(held)

    def _value(self, held: Any) -> Any:
        if isinstance(held, StoredFact):
            if self.values is None:
                raise NbflowError(
                    "fact_not_storable",
                    "a recorded fact is held by artifacts, and this run has no store to load "
                    "it from",
                    name=held.snapshot_id,
                )
            return self.values.get(held.snapshot_id)
        return json.loads(json.dumps(held))  # a copy: an attempt may change what it got

    def store(self, key: str, value: Any) -> Any:
        """Record ``value`` as fact ``key``; the value the caller gets back."""
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            text = None
        if text is not None and len(text) <= INLINE_LIMIT:
            inline = json.loads(text)  # as it will come back from the log
            _refuse_secret(key, inline, self.secrets)
            self.record(key, inline, None)
            self.facts[key] = inline
            return json.loads(text)
        if self.values is None:
            raise NbflowError(
                "fact_not_json",
                f"the value of fact {key!r} cannot be recorded: it is not a small JSON value "
                "and this run keeps no other values",
                name=key,
                hint="return a JSON value from fn, or run it where snapshots are kept",
            )
        snapshot_id = self.values.put(key, value)
        self.record(key, None, snapshot_id)
        self.facts[key] = StoredFact(snapshot_id)
        return value


CURRENT_SCOPE: ContextVar[FactScope | None] = ContextVar("nbflow_fact_scope", default=None)

IN_BRANCH: ContextVar[str | None] = ContextVar("nbflow_in_branch", default=None)
"""Set to the state's id while a parallel branch runs in a worker process, where nothing
can be recorded: facts are refused there rather than silently not recorded."""


def refuse_in_branch(what: str, code: str) -> None:
    """Raise ``code`` if a parallel branch in a worker calls ``what``."""
    state = IN_BRANCH.get()
    if state is not None:
        raise NbflowError(
            code,
            f"state {state!r} calls {what} in a worker process, where nothing is recorded "
            "(only the kernel writes a run's events)",
            name=state,
            hint=f"mark the state --in-kernel (in_kernel=True for a Flow): it then runs in "
            f"the kernel, between the branches, and {what} is recorded",
        )


def fact(key: str, fn: Callable[[], T]) -> T:
    """Call ``fn()`` once per run and ``key``; on retry, resume and replay return the
    recorded value without calling it.

    Use it inside a state for anything that must not change when the state runs again: an
    API response, a query's DataFrame, a download. Small JSON values are kept in the run's
    event log; anything else a snapshot can hold is stored as artifacts (a NumPy array's
    buffer is written once and memory-mapped when read back). A value that holds a secret
    (a token, a credential-like key bound to a string, the value of a credential-like
    environment variable) is refused with ``fact_secret`` and nothing of it is written.
    Outside a run, ``fn()`` is simply called.
    """
    scope = CURRENT_SCOPE.get()
    if scope is None:
        refuse_in_branch("nbflow.fact", "fact_in_branch")
        return fn()
    if not isinstance(key, str) or not key:
        raise NbflowError("fact_key_invalid", f"a fact's key is a non-empty string, not {key!r}")
    found, value = scope.recorded(key)
    if found:
        return cast(T, value)
    return cast(T, scope.store(key, fn()))


def now(key: str | None = None) -> dt.datetime:
    """The current time (timezone-aware, UTC) as a recorded fact: the same on retry,
    resume and replay. Without ``key``, each call is keyed by its state and its position
    among the state's ``now()`` calls."""
    scope = CURRENT_SCOPE.get()
    if scope is None:
        refuse_in_branch("nbflow.now", "fact_in_branch")
        return dt.datetime.now(dt.timezone.utc)
    recorded = fact(
        key if key is not None else scope.position_key("now"),
        lambda: dt.datetime.now(dt.timezone.utc).isoformat(),
    )
    return dt.datetime.fromisoformat(recorded)


def seed(key: str | None = None) -> int:
    """A random seed (a non-negative 63-bit int) as a recorded fact: the same on retry,
    resume and replay. Without ``key``, keyed like :func:`now`."""
    scope = CURRENT_SCOPE.get()
    if scope is None:
        refuse_in_branch("nbflow.seed", "fact_in_branch")
        return random_source.randbits(63)
    return fact(
        key if key is not None else scope.position_key("seed"),
        lambda: random_source.randbits(63),
    )


def _refuse_secret(key: str, value: Any, secrets: KnownSecrets) -> None:
    findings = [f.kind for f in find_secrets(value)]
    findings += [f"the value of {source}" for source in secrets.find(json.dumps(value))]
    if findings:
        raise NbflowError(
            "fact_secret",
            f"fact {key!r} was not recorded: its value holds a secret ({'; '.join(findings)})",
            name=key,
            hint="record what the state needs again (an id, a status), not the credential; "
            "read credentials from the environment in each attempt",
        )
