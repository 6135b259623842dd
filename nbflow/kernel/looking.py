"""What a kernel session shows: the plan, the runs, a timeline, the restart banner, the
status (``%flow show|runs|timeline|status``, and the banner of ``%load_ext``)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from nbflow.errors import NbflowError
from nbflow.kernel.child_views import find_child_run
from nbflow.kernel.views import (
    banner_view,
    plan_view,
    run_bars,
    run_page,
    run_row,
    session_bars,
    snapshot_size,
)
from nbflow.model.plan import Edge, Plan
from nbflow.store import Home
from nbflow.ui.model import RUNS_PAGE

if TYPE_CHECKING:
    from nbflow.kernel.session import KernelSession


class SessionViews:
    """The views of one kernel session, drawn by its presenter."""

    def __init__(self, session: KernelSession) -> None:
        self._session = session

    def show(self) -> None:
        """``%flow show``."""
        session = self._session
        plan = Plan(
            flow_id=session.flow_id,
            states=tuple(session.declared.specs.values()),
            edges=tuple(
                Edge(upstream=up, downstream=down)
                for down, ups in session.declared.upstream.items()
                for up in ups
                if up in session.declared.specs
            ),
        )
        session.presenter.plan(
            plan_view(
                session.home.events,
                plan,
                restored=frozenset(session.restored),
                current=session.current_facets(plan),
            )
        )

    def runs(self, every: bool = False) -> None:
        """``%flow runs [--all]``: the newest page of the history, or all of it."""
        session = self._session
        rows = run_page(
            session.home.events,
            session.state_counts,
            session.flow_id,
            limit=None if every else RUNS_PAGE,
        )
        session.presenter.runs(rows, session.home.events.count_runs(session.flow_id))

    def timeline(self, run: str | None) -> None:
        """``%flow timeline [RUN]``; RUN may also be a child run this notebook started,
        whose history is in its own folder. Without RUN, in run mode: every state this
        kernel ran, across its one-state runs, on one axis."""
        session = self._session
        if run is None and session.mode == "run" and session.session_runs:
            bars = session_bars(
                session.home.events, list(session.session_runs), self.snapshot_size_of
            )
            runs = len(session.session_runs)
            session.presenter.timeline(f"this kernel ({runs} run{'s' * (runs != 1)})", bars)
            return
        child = None
        if run is not None and not session.home.events.find_runs(run):
            child = find_child_run(session.home.events, session.flow_id, run)
        if child is None:
            run_id = session.resolve_run(run)
            stream = session.home.events.read_range(run_id)
            session.presenter.timeline(run_id, run_bars(stream, self.snapshot_size_of))
            return
        with Home(child.home) as home:
            stream = home.events.read_range(child.child_run_id)
            size = partial(snapshot_size, home.artifacts)
            session.presenter.timeline(child.child_run_id, run_bars(stream, size))

    def snapshot_size_of(self, snapshot_id: str) -> int | None:
        """The size of the variables a snapshot holds (for the timeline's hover text)."""
        return snapshot_size(self._session.home.artifacts, snapshot_id)

    def banner(self) -> None:
        """The restart banner, when the newest run of this notebook was interrupted."""
        session = self._session
        newest = session.home.events.runs(flow_id=session.flow_id, limit=1)
        if not newest or newest[0].status != "running":
            return
        record = newest[0]
        owner = session.home.leases.live_owner(record.run_id)
        view = banner_view(
            session.home.events,
            session.flow_id,
            session.state_counts(record.manifest_id),
            self._why_not_resumable(record.run_id),
            running=owner is not None,
        )
        if view is not None:
            session.presenter.banner(view)

    def _why_not_resumable(self, run_id: str) -> str | None:
        """Why an interrupted run cannot be resumed from this kernel, or None."""
        session = self._session
        owner = session.home.leases.live_owner(run_id)
        if owner is not None:
            return f"It runs in {owner.describe()}: follow it there, or wait for it to end."
        try:
            history = session.engine.history(run_id)
        except NbflowError as exc:
            return f"Its history cannot be read: {exc.message}."
        documents = (history.started.manifest_id, history.last_checkpoint)
        if not all(session.home.artifacts.is_signed(d) for d in documents):
            return (
                "This history was made elsewhere (it is not signed with your key), so "
                "nothing of it is loaded: run `%flow trust` to check it and adopt it."
            )
        return None

    def status(self) -> None:
        """``%flow status``: where the history is, the mode, the plan and the newest run."""
        session = self._session
        session.presenter.message(
            f"nbflow: {session.flow_id} (found by {session.location.found_by}), history in "
            f"{session.home.root}, mode {session.mode}, "
            f"{len(session.declared.specs)} states declared, "
            f"{len(session.satisfied)} done in this kernel"
        )
        newest = session.home.events.runs(flow_id=session.flow_id, limit=1)
        if newest:
            total = session.state_counts(newest[0].manifest_id)
            session.presenter.runs([run_row(session.home.events, newest[0], total, live=False)], 1)
