"""Who drives a run: the owner recorded in a run's lease (DESIGN §3, "Two writers")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LeaseOwner(BaseModel):
    """A process that drives a run, identified well enough to tell whether it still runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(description="The host name of the machine.")
    boot_id: str = Field(description="The machine's boot id: a pid means nothing after a reboot.")
    pid: int = Field(description="The process id.")
    pid_start: int = Field(
        description="The process's start time in clock ticks since boot, so that a pid "
        "reused by another process is not mistaken for the owner."
    )
    notebook: str | None = Field(default=None, description="The notebook (flow) it runs.")

    def same_process(self, other: LeaseOwner) -> bool:
        """Whether ``other`` names the same process (the notebook does not matter)."""
        return (self.host, self.boot_id, self.pid, self.pid_start) == (
            other.host,
            other.boot_id,
            other.pid,
            other.pid_start,
        )

    def describe(self) -> str:
        """``process 1234 on host lab-3 (notebook analysis.ipynb)``."""
        notebook = f" (notebook {self.notebook})" if self.notebook else ""
        return f"process {self.pid} on host {self.host}{notebook}"
