"""The parts of a cache key that can be judged before a state runs again.

A state's full key needs the content ids of the values it reads, which exist only once
the snapshot at the start of its attempt has been taken. Staleness is shown earlier (in
``%flow show``, the live DAG, ``nbflow show``), so each key is also recorded as *facets*,
the keys of the parts that need no data:

- ``code``: the state's normalized code, its name and its declared ``--outputs``;
- ``uses``: what it reads that is code: notebook functions and classes followed
  transitively, modules and library functions with their distributions' versions (data
  values count only as "a value", not by content);
- ``inputs``: the content of its ``--inputs`` files.

A facet that differs from the one recorded with the state's last completed attempt makes
the state stale. A value changed by a plain cell is not seen here; the full key sees it
when the state runs, so it is never served stale.
"""

from __future__ import annotations

from typing import Any

from nbflow.cache.keys import make_key

FACETS = ("code", "uses", "inputs")
"""Every facet, in the order their changes are told."""


def without_data(part: Any) -> Any:
    """``part`` without the values it reads (``["value", id]``, ``["literal", ...]``):
    what remains is code, modules and versions. A value is left out, not replaced, so that
    a name an upstream state has not made yet (in a fresh kernel) counts as unchanged."""
    if isinstance(part, list):
        return [without_data(item) for item in part if not _is_data(item)]
    if isinstance(part, dict):
        return {name: without_data(item) for name, item in part.items() if not _is_data(item)}
    return part


def _is_data(part: Any) -> bool:
    return isinstance(part, list) and bool(part) and part[0] in ("value", "literal")


def code_facet(state_id: str, normalized: str, outputs: tuple[str, ...]) -> str:
    """The ``code`` facet."""
    return make_key(
        {"facet": "code", "state": state_id, "code": normalized, "outputs": list(outputs)}
    )


def uses_facet(parts: dict[str, Any]) -> str:
    """The ``uses`` facet of a key's read parts (see :class:`nbflow.cache.KeyParts`)."""
    return make_key({"facet": "uses", "reads": without_data(parts)})


def inputs_facet(inputs: list[list[str]]) -> str:
    """The ``inputs`` facet of the declared input files' digests."""
    return make_key({"facet": "inputs", "inputs": inputs})
