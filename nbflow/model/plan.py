"""States, edges and plans as declared by the user."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nbflow.model.config import RetryPolicy

STATE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
"""What a state id may look like (DESIGN §1)."""


class StateSpec(BaseModel):
    """One state: its id, code and execution options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="Unique name of the state within its flow.")
    source: str = Field(default="", description="The code of the state, as written.")
    retry: RetryPolicy | None = Field(
        default=None, description="Own retry policy; the run config's default applies if None."
    )
    retry_on: tuple[str, ...] | None = Field(
        default=None,
        description="Exception class names that are retryable (subclasses too); None: any.",
    )
    timeout_ms: int | None = Field(default=None, ge=1, description="Per-attempt time limit.")
    always_run: bool = Field(
        default=False, description="Executed again instead of restored on resume and restore."
    )
    inputs: tuple[str, ...] = Field(
        default=(), description="Files and globs the state reads; their content is in its key."
    )
    outputs: tuple[str, ...] = Field(
        default=(), description="Files and globs the state writes; put back on a cache hit."
    )
    cache: bool = Field(default=True, description="False: always executed, never reused.")
    in_kernel: bool = Field(
        default=False,
        description="In a fan-out run, runs in the driving process, not in a worker.",
    )
    tags: tuple[str, ...] = Field(
        default=(), description="Labels; a run with one of them in its skip_tags skips it."
    )

    @field_validator("id")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not STATE_NAME.fullmatch(value):
            raise ValueError(
                f"state name {value!r} is not valid: use letters, digits, '_', '.', '-', "
                "starting with a letter or '_'"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [tag for tag in value if not STATE_NAME.fullmatch(tag)]
        if bad:
            raise ValueError(f"tag {bad[0]!r} is not valid: tags are spelled like state names")
        return value


class Edge(BaseModel):
    """``upstream`` must complete before ``downstream`` starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    upstream: str
    downstream: str


class Plan(BaseModel):
    """The states of a flow and the edges between them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flow_id: str = Field(description="The flow (notebook) this plan belongs to.")
    states: tuple[StateSpec, ...] = Field(description="States in declaration order.")
    edges: tuple[Edge, ...] = Field(default=(), description="Dependency edges.")

    def state(self, state_id: str) -> StateSpec:
        """The state named ``state_id``; KeyError if there is none."""
        for spec in self.states:
            if spec.id == state_id:
                return spec
        raise KeyError(state_id)

    def upstream_of(self, state_id: str) -> tuple[str, ...]:
        """Ids of the states ``state_id`` directly depends on, in edge order."""
        return tuple(e.upstream for e in self.edges if e.downstream == state_id)

    def upstream_map(self) -> dict[str, tuple[str, ...]]:
        """:meth:`upstream_of` of every state at once (one pass over the edges)."""
        found: dict[str, list[str]] = {state.id: [] for state in self.states}
        for edge in self.edges:
            found.setdefault(edge.downstream, []).append(edge.upstream)
        return {state_id: tuple(ups) for state_id, ups in found.items()}
