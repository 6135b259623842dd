"""Cache keys as strings: versioned, prefixed, and a hash of canonical JSON.

Python's ``hash()`` is salted per process and is never used for anything persisted.
"""

from __future__ import annotations

from typing import Any

from nbflow.hashing.canonical import canonical_json
from nbflow.hashing.ids import content_id

KEY_VERSION = 1
"""Bumped whenever what goes into a key changes: older keys then simply never match."""


def make_key(parts: dict[str, Any]) -> str:
    """``cache1:blake3:<hex>`` of ``parts`` (canonical JSON: no floats, sorted keys)."""
    return f"cache{KEY_VERSION}:" + content_id(canonical_json({"v": KEY_VERSION, **parts}))
