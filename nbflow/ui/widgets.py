"""Rich presentation: the DAG and timeline as pictures, the live DAG of a run, and the
run history and restart banner as ipywidgets 8 (standard widgets only: HTML, Button,
Output, boxes), so they render in JupyterLab, Notebook 7 and VS Code.

Pictures are not widgets: a DAG or a timeline is displayed as ``image/svg+xml`` and
``text/html`` (the same SVG inline), besides ``text/plain``, and the live DAG is that
display updated in place (``update_display_data``). So a saved notebook shows them where
no kernel runs (reopened, on GitHub, in nbviewer, in an HTML export), and the last
picture of a run stays. Widgets remain where there are buttons; they carry ``text/html``
and ``text/plain`` too. Every display carries the text rendering of
:class:`TextPresenter` as ``text/plain``.
"""

from __future__ import annotations

import asyncio
import html
import io
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import ipywidgets as widgets
from IPython.core.error import UsageError
from IPython.display import display

from nbflow.ui.colors import STATUS_COLORS
from nbflow.ui.live_display import LiveDisplay, picture_bundle, show_picture
from nbflow.ui.model import AttemptBar, BannerView, LiveSource, PlanView, RunRow
from nbflow.ui.presenter import RunActions
from nbflow.ui.text import TextPresenter, clock, duration


def _text_of(draw: Callable[[TextPresenter], None]) -> str:
    buffer = io.StringIO()
    draw(TextPresenter(buffer))
    return buffer.getvalue().rstrip("\n")


def show(widget: widgets.Widget, text: str, static_html: str | None = None) -> None:
    """Display ``widget`` with ``text`` as its plain-text form (and ``static_html`` for
    frontends without a kernel)."""
    bundle: dict[str, Any] = widget._repr_mimebundle_()
    bundle["text/plain"] = text
    bundle["text/html"] = static_html or f"<pre>{html.escape(text)}</pre>"
    display(bundle, raw=True)  # type: ignore[no-untyped-call]


def plan_svg(view: PlanView) -> tuple[str, str | None]:
    """The plan as SVG, and a hint when the built-in layout had to be used."""
    from nbflow.ui.dag_svg import render_plan_svg

    rendered = render_plan_svg(view)
    return rendered.svg, rendered.hint


def timeline_svg(run_id: str, bars: list[AttemptBar]) -> str:
    """A run's attempts as SVG."""
    from nbflow.ui.timeline_svg import render_timeline_svg

    return render_timeline_svg(run_id, bars)


def _status_badge(status: str) -> str:
    colors = STATUS_COLORS.get(status) or STATUS_COLORS["pending"]
    return (
        f'<span style="background:{colors.fill};color:{colors.text};border:1px solid '
        f'{colors.stroke};border-radius:8px;padding:1px 8px">{html.escape(status)}</span>'
    )


class WidgetPresenter:
    """Shows views as widgets; buttons call back into ``actions``."""

    def __init__(self, actions: RunActions) -> None:
        self._actions = actions
        self.live_display = LiveDisplay()
        """The live DAG of the run in progress."""
        self._tasks: set[asyncio.Future[None]] = set()
        self.last_banner: widgets.VBox | None = None
        """The banner shown last (kept for inspection, e.g. by tests that click it)."""
        self.last_runs: widgets.VBox | None = None
        """The run history shown last."""

    @property
    def tasks(self) -> tuple[asyncio.Future[None], ...]:
        """Actions started by buttons that have not finished."""
        return tuple(self._tasks)

    @staticmethod
    def buttons(box: widgets.Widget) -> dict[str, widgets.Button]:
        """Every button inside ``box``, by description (the first of each)."""
        found: dict[str, widgets.Button] = {}
        stack = [box]
        while stack:
            widget = stack.pop(0)
            if isinstance(widget, widgets.Button):
                found.setdefault(widget.description, widget)
            stack.extend(getattr(widget, "children", ()))
        return found

    def message(self, text: str) -> None:
        print(text)

    def plan(self, view: PlanView) -> None:
        svg, hint = plan_svg(view)
        below = f"<div><small>{html.escape(hint)}</small></div>" if hint else ""
        show_picture(picture_bundle(svg, _text_of(lambda t: t.plan(view)), below=below))

    def timeline(self, run_id: str, bars: list[AttemptBar]) -> None:
        text = _text_of(lambda t: t.timeline(run_id, bars))
        show_picture(picture_bundle(timeline_svg(run_id, bars), text))

    def runs(self, rows: list[RunRow], total: int) -> None:
        if not rows:
            print("nbflow: no runs yet")
            return
        out = widgets.Output()
        header = widgets.HTML(
            "<b>run</b> · status · started · took · states done · last state",
            layout=widgets.Layout(margin="0 0 4px 0"),
        )
        page = widgets.VBox([self._run_line(row, out) for row in rows])
        parts: list[widgets.Widget] = [header, page]
        if total > len(rows):
            parts.append(self._pager(page, out, len(rows), total))
        self.last_runs = widgets.VBox([*parts, out])
        show(self.last_runs, _text_of(lambda t: t.runs(rows, total)))

    def _pager(
        self, page: widgets.VBox, out: widgets.Output, size: int, total: int
    ) -> widgets.HBox:
        """Newer and Older buttons that put another page of the history in ``page``."""
        newer = widgets.Button(description="Newer", icon="arrow-up", disabled=True)
        older = widgets.Button(description="Older", icon="arrow-down")
        where = widgets.HTML()
        offset = [0]

        def turn(step: int) -> None:
            start = min(max(0, offset[0] + step), max(0, total - 1))
            rows = self._actions.run_rows(start)
            if not rows:
                return
            offset[0] = start
            page.children = [self._run_line(row, out) for row in rows]
            draw(len(rows))

        def draw(shown: int) -> None:
            where.value = f"runs {offset[0] + 1:,} to {offset[0] + shown:,} of {total:,}"
            newer.disabled = offset[0] == 0
            older.disabled = offset[0] + shown >= total

        newer.on_click(lambda _: turn(-size))
        older.on_click(lambda _: turn(size))
        draw(size)
        return widgets.HBox([newer, where, older])

    def _run_line(self, row: RunRow, out: widgets.Output) -> widgets.Widget:
        info = widgets.HTML(
            f"<code>{row.run_id[:8]}</code> {_status_badge(row.status)} "
            f"{clock(row.started_us)} · {duration(row.duration_ms)} · "
            f"{row.states_done}/{row.states_total} · {html.escape(row.last_state or '')}",
            layout=widgets.Layout(width="560px"),
        )
        resume = widgets.Button(
            description="Resume",
            disabled=row.status != "interrupted",
            button_style="primary" if row.status == "interrupted" else "",
            tooltip="continue this run from its last checkpoint",
            layout=widgets.Layout(width="90px"),
        )
        restore = widgets.Button(
            description="Restore",
            tooltip="put back the variables of this run's last checkpoint",
            layout=widgets.Layout(width="90px"),
        )
        timeline = widgets.Button(description="Timeline", layout=widgets.Layout(width="90px"))
        resume.on_click(lambda _: self._launch(out, lambda: self._actions.resume_run(row.run_id)))
        restore.on_click(lambda _: self._launch(out, lambda: self._actions.restore_run(row.run_id)))
        timeline.on_click(lambda _: self._show_timeline(out, row.run_id))
        return widgets.HBox([info, resume, restore, timeline])

    def _show_timeline(self, out: widgets.Output, run_id: str) -> None:
        bars = self._actions.run_timeline(run_id)
        out.clear_output()
        with out:
            self.timeline(run_id, bars)

    def banner(self, view: BannerView) -> None:
        where = f" in state <b>{html.escape(view.state_id)}</b>" if view.state_id else ""
        when = (
            f"is running{where} right now"
            if view.running
            else f"was interrupted{where} at {clock(view.interrupted_at_us)}"
        )
        message = widgets.HTML(
            f"⚠ Run <code>{view.run_id[:8]}</code> of {html.escape(view.flow_id)} {when} "
            f"({view.states_done} of {view.states_total} states done)."
        )
        fit = widgets.Layout(width="auto", min_width="110px")
        if view.blocked:
            message.value += f"<br>{html.escape(view.blocked)}"
            dismiss_only = widgets.Button(description="Dismiss", layout=fit)
            blocked = widgets.VBox(
                [message, dismiss_only],
                layout=widgets.Layout(border="1px solid #d0a000", padding="6px"),
            )
            blocked.add_class("nbflow-banner")
            dismiss_only.on_click(lambda _: blocked.close())
            self.last_banner = blocked
            show(blocked, _text_of(lambda t: t.banner(view)))
            return
        resume = widgets.Button(
            description="Resume", button_style="primary", icon="play", layout=fit
        )
        restore = widgets.Button(description="Restore variables", icon="undo", layout=fit)
        dismiss = widgets.Button(description="Dismiss", layout=fit)
        out = widgets.Output()
        box = widgets.VBox(
            [message, widgets.HBox([resume, restore, dismiss]), out],
            layout=widgets.Layout(border="1px solid #d0a000", padding="6px"),
        )
        box.add_class("nbflow-banner")

        def finished() -> None:
            resume.disabled = restore.disabled = True

        resume.on_click(
            lambda _: self._launch(out, lambda: self._actions.resume_run(view.run_id), finished)
        )
        restore.on_click(
            lambda _: self._launch(out, lambda: self._actions.restore_run(view.run_id), finished)
        )
        dismiss.on_click(lambda _: box.close())
        self.last_banner = box
        show(box, _text_of(lambda t: t.banner(view)))

    def progress(self, state_id: str, attempt: int, what: str) -> None:
        if self.live_display.active and what in ("started", "completed"):
            return  # the live picture shows these
        TextPresenter().progress(state_id, attempt, what)

    def live(self, run: LiveSource) -> None:
        self.live_display.changed(run)

    def live_tick(self) -> None:
        self.live_display.tick()

    def live_end(self, outcome: str) -> None:
        """The run ended: its live DAG becomes its final picture."""
        self.live_display.end(outcome)

    def _launch(
        self,
        out: widgets.Output,
        action: Callable[[], Awaitable[None]],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Run an async action from a button, its output shown under the button."""

        async def run() -> None:
            with out:
                try:
                    await action()
                    if then is not None:
                        then()
                except UsageError as exc:
                    print(f"UsageError: {exc}")
                except Exception:
                    traceback.print_exc()

        task = asyncio.ensure_future(run())
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)
