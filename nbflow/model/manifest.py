"""The manifest: everything a run was started with. Its canonical hash is its id."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nbflow.model.config import FORMAT_VERSION, RunConfig
from nbflow.model.plan import Plan


class Manifest(BaseModel):
    """Flow id, plan with every state's source, parameters and run config."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = Field(
        default=FORMAT_VERSION,
        ge=1,
        le=FORMAT_VERSION,
        description="Document format; a manifest from a newer nbflow is refused.",
    )
    flow_id: str = Field(description="The flow (notebook) the run belongs to.")
    plan: Plan
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON parameters; floats as tagged text (see nbflow.model.parameters).",
    )
    run_config: RunConfig = Field(default_factory=RunConfig)
