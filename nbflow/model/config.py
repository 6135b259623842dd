"""Run configuration: execution mode and retry policy."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
"""Version of every persisted nbflow document; bumped on incompatible change."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Sequential(_Frozen):
    """Run states one after another in topological order."""

    kind: Literal["sequential"] = "sequential"


class FanOutJoin(_Frozen):
    """Run independent branches in parallel. Refused by the engine until it is built."""

    kind: Literal["fan_out_join"] = "fan_out_join"
    max_parallel: int = Field(ge=1, description="Most branches running at once.")


ExecutionMode = Annotated[Sequential | FanOutJoin, Field(discriminator="kind")]


class FixedBackoff(_Frozen):
    """Wait the same delay before every retry."""

    kind: Literal["fixed"] = "fixed"
    delay_ms: int = Field(ge=0, description="Delay before each retry, in milliseconds.")


class ExponentialBackoff(_Frozen):
    """Wait ``base_ms * 2**attempt`` before a retry, capped at ``max_ms``."""

    kind: Literal["exponential"] = "exponential"
    base_ms: int = Field(ge=0, description="Delay before the first retry, in milliseconds.")
    max_ms: int = Field(ge=0, description="Upper bound of any delay, in milliseconds.")


Backoff = Annotated[FixedBackoff | ExponentialBackoff, Field(discriminator="kind")]


class RetryPolicy(_Frozen):
    """How often a failing state is tried and how long to wait in between."""

    max_attempts: int = Field(default=1, ge=1, description="Attempts in all, the first included.")
    backoff: Backoff = Field(default_factory=lambda: FixedBackoff(delay_ms=0))

    def delay_ms(self, attempt: int) -> int:
        """Milliseconds to wait after failed ``attempt`` (numbered from 0) before the next."""
        if isinstance(self.backoff, FixedBackoff):
            return self.backoff.delay_ms
        shift = min(attempt, 31)
        scaled = self.backoff.base_ms * (1 << shift)
        return min(scaled, self.backoff.max_ms)


class RunConfig(_Frozen):
    """Settings a run is started with; part of the manifest."""

    execution_mode: ExecutionMode = Field(default_factory=Sequential)
    retry_policy: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="Default policy for states that do not declare their own.",
    )
    skip_tags: tuple[str, ...] = Field(
        default=(), description="States carrying one of these tags are skipped (not run)."
    )
    replay_of: str | None = Field(
        default=None,
        description="A replay: facts and child results come from this run's record only; "
        "a fact it does not hold fails with fact_missing, and nothing live is called.",
    )
