"""The nbflow error hierarchy.

Every error raised by nbflow derives from :class:`NbflowError` and carries a stable ``code``,
the offending ``name`` where there is one, and a ``hint`` telling the user how to fix it.
Control-flow signals that must not be swallowed by user code's ``except Exception`` derive
from ``BaseException`` instead (see :class:`nbflow.engine.failpoints.FailpointStop`).
"""

from __future__ import annotations

from typing import Any

from nbflow.model.errors import ErrorCategory, ErrorInfo


class NbflowError(Exception):
    """Root of every error nbflow raises on purpose."""

    category: ErrorCategory = ErrorCategory.PLAN

    def __init__(
        self,
        code: str,
        message: str,
        *,
        name: str | None = None,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
        retryable: bool = False,
    ) -> None:
        self.code = code
        self.message = message
        self.name = name
        self.hint = hint
        self.details = dict(details or {})
        self.retryable = retryable
        super().__init__(self._render())

    def _render(self) -> str:
        text = f"[{self.code}] {self.message}"
        if self.hint:
            text += f" Hint: {self.hint}"
        return text

    def info(self) -> ErrorInfo:
        """This error as the persisted :class:`ErrorInfo` payload."""
        details = dict(self.details)
        if self.name is not None:
            details.setdefault("name", self.name)
        return ErrorInfo(
            code=self.code,
            category=self.category,
            retryable=self.retryable,
            message=self.message,
            details=details or None,
        )


class PlanError(NbflowError):
    """The plan or the run's contract is invalid; nothing was run."""

    category = ErrorCategory.PLAN


class ManifestError(NbflowError):
    """A manifest is malformed, not canonical, holds secrets, or does not match its id."""

    category = ErrorCategory.MANIFEST


class HistoryError(NbflowError):
    """A run's event stream contradicts itself and cannot be resumed safely."""

    category = ErrorCategory.HISTORY


class StorageError(NbflowError):
    """The store is missing something, is damaged, or cannot be written."""

    category = ErrorCategory.STORAGE


class ArtifactCorruptError(StorageError):
    """An artifact's bytes do not hash to its id; the bytes were not used."""


class SequenceConflictError(NbflowError):
    """Another writer appended to the same run first."""

    category = ErrorCategory.CONFLICT


class ContextError(NbflowError):
    """A context (the variables a state works on) could not be captured or restored."""

    category = ErrorCategory.CONTEXT
