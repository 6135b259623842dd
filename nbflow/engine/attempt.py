"""Turning what a state body raised into a persisted error."""

from __future__ import annotations

import traceback

from nbflow.engine.results import StateTimeout
from nbflow.errors import NbflowError
from nbflow.model.errors import ErrorCategory, ErrorInfo
from nbflow.model.plan import StateSpec

_TRACEBACK_LIMIT = 20_000


def matches_retry_on(exc: BaseException, names: tuple[str, ...]) -> bool:
    """Whether ``exc`` is an instance of a class named in ``names`` (subclasses included)."""
    wanted = set(names)
    for cls in type(exc).__mro__:
        if cls.__name__ in wanted or f"{cls.__module__}.{cls.__qualname__}" in wanted:
            return True
    return False


def error_from_exception(spec: StateSpec, exc: Exception) -> ErrorInfo:
    """The :class:`ErrorInfo` recorded when ``spec``'s body raised ``exc``."""
    text = "".join(traceback.format_exception(exc))[-_TRACEBACK_LIMIT:]
    details = {"type": type(exc).__qualname__, "module": type(exc).__module__, "traceback": text}
    if isinstance(exc, StateTimeout):
        return ErrorInfo(
            code="timeout",
            category=ErrorCategory.TIMEOUT,
            retryable=True,
            message=str(exc) or f"state {spec.id!r} exceeded its time limit",
            details=details,
        )
    if isinstance(exc, NbflowError):
        info = exc.info()
        return info.model_copy(update={"details": {**(info.details or {}), **details}})
    retryable = spec.retry_on is None or matches_retry_on(exc, spec.retry_on)
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ErrorInfo(
        code="state_raised",
        category=ErrorCategory.USER_CODE,
        retryable=retryable,
        message=message,
        details=details,
    )
