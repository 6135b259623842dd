"""Test-only fault injection at the store's write points.

A disk that fills up, returns EIO or loses power cannot be conjured on demand in a test,
so each write point of the store calls :func:`hit` with its name, and a test may *arm* a
point: the next hit then raises ``OSError(EIO)`` or ``OSError(ENOSPC)``, or kills the
process with SIGKILL (the torture bench's white-box kill points). Nothing is armed in
normal use, and an unarmed hit costs one truthiness test.

Processes started by tests arm points through the environment:
``NBFLOW_FAULTS="artifact.rename=kill@3,event.commit=eio"`` (``@N``: on the N-th hit).
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass

POINTS = (
    "artifact.write",
    "artifact.fsync",
    "artifact.rename",
    "artifact.dirsync",
    "event.commit",
    "event.committed",
    "wal.checkpoint",
)
"""Every write point, in the order a state's checkpoint meets them."""

ACTIONS = ("eio", "enospc", "kill")


@dataclass
class _Armed:
    action: str
    countdown: int


_armed: dict[str, _Armed] = {}
_loaded_environment = False


def arm(point: str, action: str, *, on_hit: int = 1) -> None:
    """Make the ``on_hit``-th next hit of ``point`` fail with ``action``."""
    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}; known: {', '.join(POINTS)}")
    if action not in ACTIONS:
        raise ValueError(f"unknown fault action {action!r}; known: {', '.join(ACTIONS)}")
    _armed[point] = _Armed(action, on_hit)


def disarm_all() -> None:
    """Disarm every point."""
    _armed.clear()


def hit(point: str) -> None:
    """Called by the store at ``point``; fails there if a test armed it."""
    global _loaded_environment
    if not _loaded_environment:
        _loaded_environment = True
        _arm_from_environment()
    if not _armed:
        return
    armed = _armed.get(point)
    if armed is None:
        return
    armed.countdown -= 1
    if armed.countdown > 0:
        return
    del _armed[point]
    if armed.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    code = errno.EIO if armed.action == "eio" else errno.ENOSPC
    raise OSError(code, os.strerror(code))


def _arm_from_environment() -> None:
    spec = os.environ.get("NBFLOW_FAULTS", "")
    for item in filter(None, (part.strip() for part in spec.split(","))):
        point, _, rest = item.partition("=")
        action, _, count = rest.partition("@")
        arm(point, action, on_hit=int(count) if count else 1)
