"""The interface every presentation implements: text now, widgets later."""

from __future__ import annotations

from typing import Protocol

from nbflow.ui.model import AttemptBar, BannerView, PlanView, RunRow


class Presenter(Protocol):
    """Shows nbflow's views to the user."""

    def message(self, text: str) -> None:
        """A one-line notice."""

    def plan(self, view: PlanView) -> None:
        """The plan with each state's status (``%flow show``)."""

    def runs(self, rows: list[RunRow]) -> None:
        """The run history, newest first (``%flow runs``)."""

    def timeline(self, run_id: str, bars: list[AttemptBar]) -> None:
        """A run's attempts over time (``%flow timeline``)."""

    def banner(self, view: BannerView) -> None:
        """The notice shown on load when the newest run was interrupted."""

    def progress(self, state_id: str, attempt: int, what: str) -> None:
        """A step of a run in progress: ``started``, ``completed``, ``failed: …``."""
