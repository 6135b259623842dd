"""The live DAG in the running cell: a header above the picture, updated in place.

Two displays, so that an update sends only what changed: the header (progress bar, the
states running, and the style sheet that recolours the picture, :mod:`.live_dag`) is
updated at most every :data:`LIVE_INTERVAL_S`; the picture is sent again only when the
plan is laid out again (a child run adds a node) and once at the end, when it is drawn
anew with every detail as the run's final picture. Each display's ``text/plain`` stays
the same across updates, so a consumer that keeps only the first one (nbval) sees what a
saved notebook holds.

An update that is not due yet is sent by a timer thread when it is, so the picture never
lags behind a state that runs for long. ipykernel sends a thread's messages with the
current cell's parent header, through its IOPub thread.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

from IPython.display import display

from nbflow.ui.dag_svg import render_plan_svg
from nbflow.ui.live_dag import LivePicture
from nbflow.ui.model import LiveFrame, LiveSource
from nbflow.ui.svg_parts import picture_id
from nbflow.ui.text import duration

LIVE_INTERVAL_S = 0.25
"""The header is updated at most this often (four times a second)."""


def picture_bundle(svg: str, text: str, above: str = "", below: str = "") -> dict[str, str]:
    """A picture as SVG, as HTML (the SVG inline, with lines ``above`` and ``below`` it)
    and as text."""
    inline = f'<div class="nbflow-picture" style="overflow:auto">{above}{svg}{below}</div>'
    return {"image/svg+xml": svg, "text/html": inline, "text/plain": text}


def show_picture(bundle: dict[str, str]) -> Any:
    """Display a picture bundle; the display's handle (to update it in place)."""
    return display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]


class LiveDisplay:
    """The live DAG of the run executing in this cell."""

    def __init__(self, interval: float = LIVE_INTERVAL_S) -> None:
        self._interval = interval
        self._lock = threading.RLock()
        self._source: LiveSource | None = None
        self._picture: LivePicture | None = None
        self._header: Any = None
        self._image: Any = None
        self._started = 0.0
        self._sent_at = 0.0
        self._due = False
        self._timer: threading.Timer | None = None
        self.messages = 0
        """Display messages sent to the frontend (first displays and updates)."""
        self.last_svg = ""
        """The picture sent last."""

    @property
    def active(self) -> bool:
        """A run's live DAG is shown and being updated."""
        return self._header is not None

    def changed(self, source: LiveSource) -> None:
        """``source`` changed: send it now if an update is due, else when it is."""
        with self._lock:
            self._source = source
            self._due = True
            wait = self._sent_at + self._interval - time.monotonic()
            if self._header is None or wait <= 0:
                self._send()
            elif self._timer is None:
                self._start_timer(wait)

    def _start_timer(self, wait: float) -> None:
        self._timer = threading.Timer(wait, self._on_timer)
        self._timer.name = "nbflow-live-update"
        self._timer.daemon = True
        self._timer.start()

    def tick(self) -> None:
        """Send what is due (the kernel's thread, waiting for branches)."""
        with self._lock:
            if self._due and time.monotonic() - self._sent_at >= self._interval:
                self._send()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if not self._due or self._source is None:
                return
            # The kernel's thread may have sent an update since this timer was set.
            wait = self._sent_at + self._interval - time.monotonic()
            if wait > 0:
                self._start_timer(wait)
            else:
                self._send()

    def _send(self) -> None:
        source = self._source
        assert source is not None
        self._due = False
        frame = source.frame()
        if self._header is None:
            self._started = time.monotonic()
        picture = self._picture
        relayout = False
        if picture is None or picture.nodes != frame.nodes:
            relayout = True
            token = picture_id(frame.nodes, self._started, id(self))
            picture = self._picture = LivePicture(
                source.view(), frame.nodes, f"nbflow-live-{token}"
            )
        header = self._header_bundle(frame, picture, None)
        if self._header is None:  # the header goes first: it stands above the picture
            self._header = self._display(header)
            self._image = self._display(self._picture_bundle(picture.svg, frame))
        else:
            if relayout:
                self._image = self._display(self._picture_bundle(picture.svg, frame), self._image)
            self._header = self._display(header, self._header)
        # From when it was sent: the frontend sees updates at least an interval apart.
        self._sent_at = time.monotonic()

    def end(self, outcome: str) -> None:
        """The run ended: the picture is drawn anew, with every detail, as its final one."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            source = self._source
            if source is not None and self._header is not None:
                frame = source.frame()
                final = render_plan_svg(source.view())
                below = f"<div><small>{html.escape(final.hint)}</small></div>" if final.hint else ""
                self._image = self._display(
                    self._picture_bundle(final.svg, frame, below), self._image
                )
                self._header = self._display(
                    self._header_bundle(frame, None, outcome), self._header
                )
            self._source = self._picture = self._header = self._image = None
            self._due = False

    def _display(self, bundle: dict[str, str], handle: Any = None) -> Any:
        self.messages += 1
        if "image/svg+xml" in bundle:
            self.last_svg = bundle["image/svg+xml"]
        if handle is None:
            return show_picture(bundle)
        handle.update(bundle, raw=True)
        return handle

    def _picture_bundle(self, svg: str, frame: LiveFrame, below: str = "") -> dict[str, str]:
        return picture_bundle(svg, f"nbflow: running {frame.total} states", below=below)

    def _header_bundle(
        self, frame: LiveFrame, picture: LivePicture | None, outcome: str | None
    ) -> dict[str, str]:
        elapsed = int((time.monotonic() - self._started) * 1000)
        if outcome is not None:
            now = f" · {html.escape(outcome)}"
        elif frame.current:
            now = f" · running <b>{html.escape(_first(frame.current))}</b>"
        else:
            now = ""
        style = f"<style>{picture.style(frame.statuses)}</style>" if picture else ""
        content = (
            f'<div class="nbflow-live"><progress value="{frame.done}" '
            f'max="{max(frame.total, 1)}"></progress> {frame.done}/{frame.total} states{now} '
            f"· {duration(elapsed)}{style}</div>"
        )
        return {"text/html": content, "text/plain": f"nbflow: a run of {frame.total} states"}


def _first(current: str, limit: int = 6) -> str:
    """At most ``limit`` names of a comma-separated list, and how many more."""
    names = current.split(", ")
    if len(names) <= limit:
        return current
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"
