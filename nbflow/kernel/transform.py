"""Rewriting cells so that state code runs inside a coroutine cell (see :mod:`.execution`).

``%%state NAME ...`` cells, and top-level ``%flow run|resume|replay|restore`` lines, become an
``await`` of the session. Everything else is left to IPython.
"""

from __future__ import annotations

import re

HANDLE = "__nbflow__"
"""Name of the session's handle in ``user_ns`` (dunder: never snapshotted)."""

_STATE = re.compile(r"%%state(?:[ \t]+(?P<args>.*))?")
_FLOW = re.compile(r"%flow[ \t]+(?P<command>(?:run|resume|replay|restore)\b.*)")


def transform_cell(lines: list[str]) -> list[str]:
    """IPython input transformer (cleanup stage): the rewritten lines of a cell."""
    if not lines:
        return lines
    first = lines[0].rstrip("\r\n")
    match = _STATE.fullmatch(first)
    if match is not None:
        args = match.group("args") or ""
        body = "".join(lines[1:])
        return [f"await {HANDLE}.state_cell({args!r}, {body!r})\n"]
    out: list[str] = []
    for line in lines:
        flow = _FLOW.fullmatch(line.rstrip("\r\n"))
        if flow is None:
            out.append(line)
        else:
            out.append(f"await {HANDLE}.flow_line({flow.group('command')!r})\n")
    return out
