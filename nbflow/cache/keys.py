"""Cache keys as strings: versioned, prefixed, and a hash of canonical JSON.

Python's ``hash()`` is salted per process and is never used for anything persisted.
"""

from __future__ import annotations

import json
from typing import Any

from nbflow.hashing.ids import content_id

KEY_VERSION = 1
"""Bumped whenever what goes into a key changes: older keys then simply never match."""


def make_key(parts: dict[str, Any]) -> str:
    """``cache1:blake3:<hex>`` of ``parts``, as JSON with sorted keys and no spaces (the
    parts are strings, whole numbers, lists and string-keyed objects, which this writes
    the same way in every process)."""
    data = json.dumps(
        {"v": KEY_VERSION, **parts}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return f"cache{KEY_VERSION}:" + content_id(data.encode("utf-8", "surrogatepass"))
