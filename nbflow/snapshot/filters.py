"""Which names of a namespace are user variables, and which values must not be saved.

Three sorts of names are set aside before anything is pickled:

* IPython's own (``In``, ``Out``, ``_``, ``_i3``, ``get_ipython``, dunders, ...): not user
  variables at all, so they are not even listed in the snapshot.
* **Withheld** values: a credential-looking name (``api_token``, ``DB_PASSWORD``), a value
  of a secret type (``pydantic.SecretStr`` and anything else whose class name says
  "secret"), or a dict/list structure with a credential-looking key bound to a real string.
  These are listed with the reason and never written anywhere. The walk over containers is
  bounded (:data:`WALK_BUDGET` nodes per variable) so a list of a million records costs
  milliseconds; strings anywhere are additionally scanned in their pickled form, see
  :mod:`nbflow.snapshot.scan`.
* Values that are certainly **unpicklable** (generators, locks, sockets, open files, ...):
  skipped with a reason without trying. Anything else that fails to pickle is found by
  trying, and skipped the same way.
"""

from __future__ import annotations

import io
import itertools
import mmap
import re
import socket
import sqlite3
import threading
import types
from collections.abc import Iterator
from typing import Any

from nbflow.hashing.secrets import find_secrets, looks_like_credential_name

WALK_BUDGET = 10_000
"""Container nodes inspected per variable when looking for credential keys."""

IPYTHON_NAMES = frozenset(
    {
        "In",
        "Out",
        "_",
        "__",
        "___",
        "_i",
        "_ii",
        "_iii",
        "_oh",
        "_ih",
        "_dh",
        "_exit_code",
        "get_ipython",
        "exit",
        "quit",
    }
)
_HISTORY = re.compile(r"_i?\d+")  # _7 (output history) and _i7 (input history)

_LIVE_TYPES: tuple[type, ...] = (
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
    types.FrameType,
    types.TracebackType,
    io.IOBase,
    socket.socket,
    mmap.mmap,
    sqlite3.Connection,
    sqlite3.Cursor,
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Thread,
    threading.Condition,
    threading.Event,
    threading.Semaphore,
)
"""Types that hold live process state: pickling them fails or would be meaningless."""

LIVE_HINT = "re-create it in a state marked --always-run"


def is_ipython_name(name: str) -> bool:
    """Whether ``name`` belongs to IPython or Python rather than to the user."""
    if name.startswith("__") and name.endswith("__"):
        return True
    return name in IPYTHON_NAMES or _HISTORY.fullmatch(name) is not None


def type_name(value: Any) -> str:
    """``module.QualName`` of ``value``'s type."""
    kind = type(value)
    module = getattr(kind, "__module__", None) or "?"
    return f"{module}.{getattr(kind, '__qualname__', kind.__name__)}"


def live_state_reason(value: Any) -> str | None:
    """Why ``value`` is skipped without trying to pickle it, or None."""
    if isinstance(value, _LIVE_TYPES):
        return f"a {type_name(value)} holds live process state and cannot be saved"
    return None


def secret_strings(value: Any) -> list[str]:
    """The secret text a withheld value holds, to be known by value from now on: the value
    itself if it is text, a secret type's revealed value, or the strings under
    credential-like keys of a dict (one level)."""
    if isinstance(value, (str, bytes)):
        return [value.decode("utf-8", "replace") if isinstance(value, bytes) else value]
    reveal = getattr(value, "get_secret_value", None)
    if callable(reveal):
        try:
            revealed = reveal()
        except Exception:
            return []
        return [revealed] if isinstance(revealed, str) else []
    if isinstance(value, dict):
        return [
            item
            for key, item in itertools.islice(value.items(), WALK_BUDGET)
            if isinstance(key, str) and isinstance(item, str) and looks_like_credential_name(key)
        ]
    return []


class SecretScreen:
    """Decides which values are withheld. Keeps small caches between captures."""

    def __init__(self) -> None:
        self._name_verdicts: dict[str, bool] = {}
        self._secret_types: dict[type, bool] = {}

    def withhold_reason(self, name: str, value: Any) -> str | None:
        """Why the variable ``name`` bound to ``value`` must not be saved, or None."""
        if self._credential_key(name):
            return "its name looks like a credential"
        if type(value) in _ATOM_TYPES:  # a number or a string: its bytes are scanned later
            return None
        if self._is_secret_type(type(value)):
            return f"values of type {type_name(value)} hold secrets"
        return self._walk(value)

    def _credential_key(self, key: str) -> bool:
        verdict = self._name_verdicts.get(key)
        if verdict is None:
            if len(self._name_verdicts) > 100_000:  # keys of big data; do not grow forever
                self._name_verdicts.clear()
            verdict = self._name_verdicts[key] = looks_like_credential_name(key)
        return verdict

    def _is_secret_type(self, kind: type) -> bool:
        verdict = self._secret_types.get(kind)
        if verdict is None:
            verdict = any("secret" in base.__name__.lower() for base in kind.__mro__)
            self._secret_types[kind] = verdict
        return verdict

    def _walk(self, value: Any) -> str | None:
        budget = [WALK_BUDGET]
        for node in _nodes(value, budget):
            if isinstance(node, dict):
                reason = self._check_dict(node, budget)
                if reason is not None:
                    return reason
            elif type(node) not in _PLAIN and self._is_secret_type(type(node)):
                return f"it contains a {type_name(node)}, which holds a secret"
        return None

    def _check_dict(self, mapping: dict[Any, Any], budget: list[int]) -> str | None:
        try:
            items = list(itertools.islice(mapping.items(), max(budget[0], 0)))
        except Exception:  # a dict subclass with a broken items(): the pickle scan remains
            return None
        budget[0] -= len(items)
        for key, item in items:
            kind = type(item)
            if kind is str:
                if type(key) is str and self._credential_key(key) and find_secrets({key: item}):
                    return f"it holds a string under the credential-like key {key!r}"
            elif kind not in _PLAIN and self._is_secret_type(kind):
                return f"it holds a {type_name(item)} under the key {key!r}"
        return None


_ATOMS = (str, bytes, int, float, bool, type(None))
_ATOM_TYPES = frozenset(_ATOMS)
_PLAIN = frozenset({*_ATOMS, dict, list, tuple, set, frozenset})
"""Types that cannot be secret types themselves: skipped quickly in big containers."""


def _nodes(value: Any, budget: list[int]) -> Iterator[Any]:
    """``value`` and the non-atomic values nested in its builtin containers, depth first.

    ``budget[0]`` counts down per element looked at; the walk stops when it runs out.
    """
    stack: list[Any] = [value]
    seen: set[int] = set()
    while stack and budget[0] > 0:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        try:
            if isinstance(node, dict):
                children: Any = node.values()
            elif isinstance(node, (list, tuple, set, frozenset)):
                children = node
            else:
                continue
            for child in itertools.islice(children, max(budget[0], 0)):
                budget[0] -= 1
                if not isinstance(child, _ATOMS):
                    stack.append(child)
        except Exception:  # a container subclass that cannot be iterated: leave it to pickle
            continue
