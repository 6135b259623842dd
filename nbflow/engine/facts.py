"""``nbflow.fact``: values that must be the same on retry and resume as the first time."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nbflow.errors import NbflowError
from nbflow.hashing.redact import KnownSecrets
from nbflow.hashing.secrets import find_secrets

T = TypeVar("T")


@dataclass
class FactScope:
    """The facts of the run an attempt belongs to, and how to record a new one."""

    facts: dict[str, Any]
    record: Callable[[str, Any], None]
    secrets: KnownSecrets = field(default_factory=KnownSecrets)
    """Values that must not be recorded; a fact holding one is refused."""


CURRENT_SCOPE: ContextVar[FactScope | None] = ContextVar("nbflow_fact_scope", default=None)


def fact(key: str, fn: Callable[[], T]) -> T:
    """Call ``fn()`` once per run and ``key``; on retry and resume return the recorded value.

    Use it inside a state for anything that must not change when the state runs again: an
    API response, a random seed, the current time. The value must be JSON (it is stored in
    the run's event log). A value that holds a secret (a token, a credential-like key
    bound to a string, the value of a credential-like environment variable) is refused
    with ``fact_secret`` and nothing of it is written. Outside a run, ``fn()`` is simply
    called.
    """
    scope = CURRENT_SCOPE.get()
    if scope is None:
        return fn()
    if key in scope.facts:
        recorded: T = scope.facts[key]
        return recorded
    value = fn()
    try:
        # Returned as it will come back from the log, so the first run and a resume agree.
        value = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise NbflowError(
            "fact_not_json",
            f"the value of fact {key!r} cannot be recorded: {exc}",
            name=key,
            hint="return a JSON value (dict, list, str, int, float, bool, None) from fn",
        ) from exc
    _refuse_secret(key, value, scope.secrets)
    scope.record(key, value)
    scope.facts[key] = value
    return value


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
