"""Plain-text presentation, for terminals, text exports and logs."""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections import Counter
from typing import TextIO

from nbflow.ui.dag_groups import find_folds, fold_view
from nbflow.ui.model import AttemptBar, BannerView, LiveSource, PlanView, RunRow

MARKS = {
    "pending": "·",
    "running": "▶",
    "completed": "✓",
    "cached": "≡",
    "stale": "!",
    "skipped": "↷",
    "failed": "✗",
    "retrying": "↻",
    "interrupted": "‖",
    "restored": "↺",
}


TIMELINE_LINES = 60
"""A timeline of more bars than this is summarised a line per state."""
SUMMARY_STATES = 40
"""States listed by a summarised timeline."""

_RUN_ID = re.compile(r"[0-9a-f]{32}")


def run_label(run_id: str) -> str:
    """``run 3f2a91c0`` for a run id; any other label (a kernel's session) as it is."""
    return f"run {run_id[:8]}" if _RUN_ID.fullmatch(run_id) else run_id


def clock(at_us: int) -> str:
    """Local wall-clock time of ``at_us``."""
    return dt.datetime.fromtimestamp(at_us / 1e6).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: int | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class TextPresenter:
    """Writes every view as text to ``stream`` (default: the current ``sys.stdout``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def _print(self, text: str) -> None:
        print(text, file=self._stream or sys.stdout)

    def message(self, text: str) -> None:
        self._print(text)

    def plan(self, view: PlanView) -> None:
        if not view.states:
            self._print(f"nbflow: no states declared in {view.flow_id} yet")
            return
        self._print(f"plan of {view.flow_id}:")
        view = fold_view(view, find_folds(view))
        width = min(40, max(len(s.state_id) for s in view.states))
        for state in view.states:
            if state.members:
                counts = Counter(state.member_statuses)
                said = ", ".join(f"{n} {status}" for status, n in counts.most_common())
                self._print(
                    f"  {MARKS[state.status]} {state.state_id:<{width}}  {state.status:<11}"
                    f"  {len(state.members)} states in a chain: {said}"
                )
                continue
            after = f"  after {', '.join(state.upstream)}" if state.upstream else ""
            extra = ""
            if state.last_attempt is not None:
                extra = f"  (attempt {state.last_attempt}, {duration(state.last_duration_ms)})"
            if state.last_error:
                extra += f"  {state.last_error}"
            if state.stale:
                extra += f"  ({state.stale})"
            self._print(
                f"  {MARKS[state.status]} {state.state_id:<{width}}  {state.status:<11}"
                f"{after}{extra}"
            )

    def runs(self, rows: list[RunRow], total: int) -> None:
        if not rows:
            self._print("nbflow: no runs yet")
            return
        self._print(f"{'run':<10} {'status':<11} {'started':<19}  {'took':>12}  states  last state")
        listed = {row.run_id for row in rows}
        nested = {child.run_id for row in rows for child in row.children} & listed
        by_id = {row.run_id: row for row in rows}
        for row in rows:
            if row.run_id not in nested:  # a child listed here is shown under its parent
                self._run_tree(row, by_id, "")
        if total > len(rows):
            self._print(
                f"… and {total - len(rows):,} older runs (%flow runs --all, nbflow runs --all "
                "or --limit N lists more)"
            )

    def _run_tree(self, row: RunRow, by_id: dict[str, RunRow], indent: str) -> None:
        parent = f"  (child of {row.parent[:8]})" if row.parent and not indent else ""
        self._print(
            f"{indent}{row.run_id[:8]:<10} {row.status:<11} {clock(row.started_us)}  "
            f"{duration(row.duration_ms):>12}  {row.states_done:>2}/{row.states_total:<3}  "
            f"{row.last_state or ''}{parent}"
        )
        for child, state in zip(row.children, row.child_states, strict=True):
            nested = by_id.get(child.run_id)
            if nested is not None and len(indent) < 12:
                self._print(f"{indent}  └ {state} ↳ {child.target}")
                self._run_tree(nested, by_id, indent + "    ")
                continue
            took = duration(child.duration_ms) if child.duration_ms is not None else "-"
            self._print(
                f"{indent}  └ {state} ↳ {child.target}: run {child.run_id[:8]} "
                f"{child.status}, {took}"
            )

    def timeline(self, run_id: str, bars: list[AttemptBar]) -> None:
        self._print(f"timeline of {run_label(run_id)}:")
        if not bars:
            self._print("  (no attempts)")
            return
        if len(bars) > TIMELINE_LINES:
            self._timeline_summary(bars)
            return
        width = max(len(b.state_id) for b in bars)
        for bar in bars:
            label = "wait" if bar.outcome == "backoff" else f"#{bar.attempt}"
            error = f"  {bar.error}" if bar.error else ""
            worker = f"  on {bar.worker}" if bar.worker else ""
            self._print(
                f"  {bar.state_id:<{width}} {label:>5}  +{duration(bar.start_ms):>12}"
                f"  {duration(bar.duration_ms):>12}  {bar.outcome}{worker}{error}"
            )

    def _timeline_summary(self, bars: list[AttemptBar]) -> None:
        """A long timeline as a line per state (the first :data:`SUMMARY_STATES` of them):
        its attempts by outcome, when it started and how long it took in all."""
        by_state: dict[str, list[AttemptBar]] = {}
        for bar in bars:
            by_state.setdefault(bar.state_id, []).append(bar)
        attempts = [b for b in bars if b.outcome != "backoff"]
        outcomes = Counter(b.outcome for b in attempts)
        said = ", ".join(f"{n:,} {outcome}" for outcome, n in outcomes.most_common())
        waits = len(bars) - len(attempts)
        self._print(
            f"  {len(attempts):,} attempts of {len(by_state):,} states ({said})"
            + (f", {waits:,} backoff waits" if waits else "")
        )
        width = min(40, max(len(state_id) for state_id in by_state))
        for state_id, own in list(by_state.items())[:SUMMARY_STATES]:
            tries = [b for b in own if b.outcome != "backoff"]
            start = min(b.start_ms for b in own)
            end = max(b.start_ms + b.duration_ms for b in own)
            counts = Counter(b.outcome for b in tries)
            outcome = ", ".join(f"{n} {o}" for o, n in counts.items())
            self._print(
                f"  {state_id:<{width}} {len(tries):>3} tries +{duration(start):>12}"
                f"  {duration(end - start):>12}  {outcome}"
            )
        if len(by_state) > SUMMARY_STATES:
            self._print(
                f"  … and {len(by_state) - SUMMARY_STATES:,} more states (the picture, or "
                "nbflow show RUN --json, has every attempt)"
            )

    def banner(self, view: BannerView) -> None:
        where = f" in state {view.state_id!r}" if view.state_id else ""
        what = (
            f"        {view.blocked}"
            if view.blocked
            else "        %flow resume continues it; %flow restore brings back the variables; "
            "%flow cancel ends it."
        )
        when = (
            f"is running{where} right now"
            if view.running
            else f"was interrupted{where} at {clock(view.interrupted_at_us)}"
        )
        self._print(
            f"nbflow: run {view.run_id[:8]} of {view.flow_id} {when} ({view.states_done} of "
            f"{view.states_total} states done).\n{what}"
        )

    def progress(self, state_id: str, attempt: int, what: str) -> None:
        label = f"{state_id} #{attempt}" if attempt >= 0 else state_id
        self._print(f"[nbflow] {label}: {what}")

    def live(self, run: LiveSource) -> None:
        """Text shows progress line by line through :meth:`progress` instead."""

    def live_tick(self) -> None:
        pass

    def live_end(self, outcome: str) -> None:
        """Nothing to close in text."""
