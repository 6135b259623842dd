"""The interface every presentation implements: text now, widgets later."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from nbflow.ui.model import AttemptBar, BannerView, LiveSource, PlanView, RunRow


class RunActions(Protocol):
    """What buttons may ask for; implemented by the kernel session."""

    def resume_run(self, run_id: str) -> Awaitable[None]:
        """Resume ``run_id``."""
        ...

    def restore_run(self, run_id: str) -> Awaitable[None]:
        """Restore the variables of ``run_id``'s last checkpoint."""
        ...

    def run_timeline(self, run_id: str) -> list[AttemptBar]:
        """The attempts of ``run_id``."""
        ...

    def run_rows(self, offset: int) -> list[RunRow]:
        """A page of the run history, from the ``offset``-th newest run."""
        ...


class Presenter(Protocol):
    """Shows nbflow's views to the user."""

    def message(self, text: str) -> None:
        """A one-line notice."""

    def plan(self, view: PlanView) -> None:
        """The plan with each state's status (``%flow show``)."""

    def runs(self, rows: list[RunRow], total: int) -> None:
        """The run history, newest first (``%flow runs``): ``rows``, the newest of
        ``total`` runs."""

    def timeline(self, run_id: str, bars: list[AttemptBar]) -> None:
        """A run's attempts over time (``%flow timeline``)."""

    def banner(self, view: BannerView) -> None:
        """The notice shown on load when the newest run was interrupted."""

    def progress(self, state_id: str, attempt: int, what: str) -> None:
        """A step of a run in progress: ``started``, ``completed``, ``failed: …``."""

    def live(self, run: LiveSource) -> None:
        """The run executing in this cell changed (called after each event that changes
        its picture); the presenter reads ``run`` when it draws, at most a few times a
        second, and always once more at :meth:`live_end`."""

    def live_tick(self) -> None:
        """Time passed with no event (branches running): draw what is due."""

    def live_end(self, outcome: str) -> None:
        """The run executing in this cell ended (``completed``, ``failed``, …)."""
