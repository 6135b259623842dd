"""nbflow's errors shown as IPython usage errors: a message and a hint, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from IPython.core.error import UsageError

from nbflow.errors import NbflowError

T = TypeVar("T")


def as_usage(exc: NbflowError) -> UsageError:
    """The ``UsageError`` that shows ``exc``: its code, message and hint."""
    hint = f" ({exc.hint})" if exc.hint else ""
    return UsageError(f"[{exc.code}] {exc.message}{hint}")


def usage(action: Callable[[], T]) -> T:
    """Run ``action``; an nbflow error becomes a ``UsageError`` with its message and hint."""
    try:
        return action()
    except NbflowError as exc:
        raise as_usage(exc) from None
