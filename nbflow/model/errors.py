"""Error payloads as they are persisted in events and returned to callers."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorCategory(str, Enum):
    """Broad family of an error, for grouping in views and for retry decisions."""

    PLAN = "plan"
    MANIFEST = "manifest"
    HISTORY = "history"
    STORAGE = "storage"
    CONTEXT = "context"
    CONFLICT = "conflict"
    USER_CODE = "user_code"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    TRUST = "trust"


class ErrorInfo(BaseModel):
    """A persisted description of a failure; `code` is a stable machine-readable string."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(description="Stable identifier such as `manifest_corrupt`.")
    category: ErrorCategory = Field(description="Family of the error.")
    retryable: bool = Field(description="Whether a retry of the same attempt may succeed.")
    message: str = Field(description="One-line human explanation.")
    details: dict[str, Any] | None = Field(
        default=None, description="Structured extras: offending names, exception type, traceback."
    )
