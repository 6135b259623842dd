"""Canonical JSON: one byte string per JSON value, so that equal documents hash equally.

Keys are sorted, separators are compact, text is UTF-8 and floats are refused: their text
form differs between writers, and a manifest whose hash depends on float formatting could not
be recognised again.
"""

from __future__ import annotations

import json
from typing import Any


class FloatNotAllowed(ValueError):  # noqa: N818 - names the rule it enforces
    """A float was found where canonical JSON is required; ``path`` names where."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"floats are not allowed in canonical JSON (at {path})")


class NotJsonValue(ValueError):  # noqa: N818 - names what was found
    """A value that JSON cannot represent was found; ``path`` names where."""

    def __init__(self, path: str, type_name: str) -> None:
        self.path = path
        super().__init__(f"value of type {type_name} at {path} is not JSON")


def check_canonical(value: Any, path: str = "$") -> None:
    """Raise if ``value`` holds a float, a non-string key, or a non-JSON value."""
    if isinstance(value, str):
        _check_text(value, path)
        return
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        raise FloatNotAllowed(path)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJsonValue(f"{path}.<key {key!r}>", type(key).__name__)
            _check_text(key, f"{path}.<key>")
            check_canonical(item, f"{path}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_canonical(item, f"{path}[{index}]")
        return
    raise NotJsonValue(path, type(value).__name__)


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from undecodable file names) have no UTF-8 form.
        raise NotJsonValue(path, "str with a lone surrogate") from None


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 bytes of ``value``; raises :class:`FloatNotAllowed` on floats."""
    check_canonical(value)
    return canonical_bytes(value)


def canonical_bytes(value: Any) -> bytes:
    """The canonical UTF-8 bytes of a ``value`` known to hold no float (its type says
    so); :func:`canonical_json` checks that first. ``UnicodeEncodeError`` on text that has
    no UTF-8 form."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
