"""What a state cell showed, kept with its cache entry, so that when ``nbflow run`` serves
the state from the cache its cell in the output notebook shows the same outputs again.

The outputs of a cell that executed are stored as one artifact and named in the cache
entry its attempt recorded. Nothing that may hold a secret is stored (a token format, a
credential assignment, the value of a credential-like environment variable): those
outputs are simply not kept, and a cell served later shows only its one-line notice.
nbflow's own lines are left out; images are kept as they are.
"""

from __future__ import annotations

import json
from typing import Any

from nbflow.errors import NbflowError
from nbflow.hashing.redact import KnownSecrets
from nbflow.hashing.secrets import find_secrets
from nbflow.store import Home

_BINARY = ("image/png", "image/jpeg", "image/gif", "image/webp")
"""Output data that is base64 pixels: not text a secret could be read from."""


def _without_own_lines(outputs: list[Any]) -> list[Any]:
    kept = []
    for output in outputs:
        if output.get("output_type") == "stream":
            text = "".join(
                line
                for line in str(output.get("text", "")).splitlines(keepends=True)
                if not line.startswith("nbflow: ")
            )
            if not text:
                continue
            output = {**output, "text": text}
        kept.append(dict(output))
    return kept


def _textual(outputs: list[Any]) -> list[Any]:
    """``outputs`` with image data left out, for the secret checks."""
    found = []
    for output in outputs:
        data = output.get("data")
        if isinstance(data, dict):
            output = {**output, "data": {k: v for k, v in data.items() if k not in _BINARY}}
        found.append(output)
    return found


def keep(home: Home, run_id: str, state_id: str, outputs: list[Any]) -> bool:
    """Store what ``state_id``'s cell showed with the entry of its attempt in ``run_id``;
    whether it was stored."""
    entry = home.cache.of_attempt(run_id, state_id)
    shown = _without_own_lines(outputs)
    if entry is None or not shown:
        return False
    text = json.dumps(shown, sort_keys=True)
    if find_secrets(_textual(shown)) or KnownSecrets().find(text):
        return False  # never on disk; the output notebook the user asked for has them
    home.cache.attach_cell_outputs(entry, home.artifacts.put(text.encode("utf-8")))
    return True


def recall(home: Home, from_run: str, from_state: str) -> list[Any]:
    """The outputs kept for the attempt a cached state was served from (none if none)."""
    entry = home.cache.of_attempt(from_run, from_state)
    if entry is None or entry.cell_outputs is None:
        return []
    try:
        shown = json.loads(home.artifacts.get(entry.cell_outputs))
    except (ValueError, OSError, NbflowError):
        return []  # gone or damaged: the cell shows its notice only
    return shown if isinstance(shown, list) else []
