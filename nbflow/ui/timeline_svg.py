"""A run's timeline as SVG: one row per state, one bar per attempt, on a readable time axis.

Every attempt is a ``<rect class="nbflow-attempt" data-state=… data-attempt=… data-outcome=…>``
coloured by its outcome (:data:`nbflow.ui.colors.OUTCOME_COLORS`) with a ``<title>`` for hover
text; every backoff wait is a thin hatched ``<rect class="nbflow-backoff">``. Shape backs up
colour: interruptions get a cut mark and a dashed outline, running attempts an arrowhead,
and wide bars the outcome's glyph.

Designs tried and rejected:

- A linear axis with ticks at fixed fractions of the run: labels like ``1 h 7 min 23 s``.
  Ticks are multiples of a step from a list of clock-friendly values (1, 2, 5 times 10^k ms;
  1, 2, 5, 10, 15, 30 s and min; 1, 2, 3, 6, 12 h; days) and the axis ends on a tick.
- Bars scaled strictly to time: in a 6-hour run a 200 ms attempt is a hundredth of a pixel
  and vanishes. Every bar is at least :data:`MIN_BAR_PX` wide; the hover text has the truth.
- A fixed row height: 200 states would need 4 400 px. Rows shrink (to 14 px) as states
  grow; labels stay at a legible 11 px.
"""

from __future__ import annotations

from nbflow.ui.colors import EDGE, FONT_FAMILY, FOREGROUND, OUTCOME_COLORS, OUTCOMES, Swatch
from nbflow.ui.model import AttemptBar
from nbflow.ui.svg_parts import clean_text, escape, legend_svg, picture_id, shorten, text_width
from nbflow.ui.text import duration, run_label

MIN_BAR_PX = 3.0
"""The narrowest an attempt is drawn, however short it was."""

_SVG_NS = "http://www.w3.org/2000/svg"
_MARGIN = 12.0
_MAX_LABEL_PX = 220.0
_MIN_WIDTH = 360
_MAX_HOVER_ERROR = 600
_GLYPHS = {
    "completed": "✓",
    "cached": "≡",
    "skipped": "↷",
    "failed": "✗",
    "interrupted": "‖",
    "running": "▶",
}

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_NICE_STEPS_MS = (
    *(m * 10**k for k in range(3) for m in (1, 2, 5)),
    *(s * _SECOND for s in (1, 2, 5, 10, 15, 30)),
    *(m * _MINUTE for m in (1, 2, 5, 10, 15, 30)),
    *(h * _HOUR for h in (1, 2, 3, 6, 12)),
    *(d * _DAY * 10**k for k in range(4) for d in (1, 2, 5)),
)
"""Tick steps a reader can add up in their head, shortest first."""


def render_timeline_svg(
    run_id: str,
    bars: list[AttemptBar],
    *,
    snapshot_sizes: dict[tuple[str, int], int] | None = None,
    width: int = 960,
) -> str:
    """Draw the attempts of run ``run_id`` over time as an SVG document.

    ``bars`` come from :func:`nbflow.kernel.views.attempt_bars`; ``snapshot_sizes`` maps
    ``(state, attempt)`` to the size in bytes of the snapshot that attempt wrote, shown in
    the hover text when known. ``width`` is the picture's width in pixels; the height grows
    with the number of states.
    """
    width = max(width, _MIN_WIDTH)
    if not bars:
        return _empty_svg(run_id, width)
    rows: dict[str, int] = {}
    for bar in bars:
        rows.setdefault(bar.state_id, len(rows))
    total_ms = max(max(bar.start_ms + bar.duration_ms for bar in bars), 10)
    row_height, font = (22.0, 12.0) if len(rows) <= 30 else (16.0, 11.0)
    if len(rows) > 80:
        row_height = 14.0
    label_width = min(max(text_width(s, font) for s in rows) + 12, _MAX_LABEL_PX)
    label_chars = int((_MAX_LABEL_PX - 12) / (font * 0.62))
    x0, x1 = _MARGIN + label_width, width - _MARGIN - 24  # room for the last tick's label
    ticks = _ticks(total_ms, max(3, min(10, int((x1 - x0) // 80))))
    scale = (x1 - x0) / ticks[-1]
    hatch = f"nbflow-hatch-{picture_id(run_id, bars)}"

    attempts = sum(bar.outcome != "backoff" and bar.child is None for bar in bars)
    children = sum(bar.child is not None for bar in bars)
    states = len({bar.state_id for bar in bars if bar.child is None})
    spawned = f" · {children} child runs" if children else ""
    counts = f"{states} states · {attempts} attempts{spawned}"
    title = f"{run_label(run_id)} · {counts} · {duration(total_ms)}"
    legend, legend_height = legend_svg(_outcome_legend(hatch), _MARGIN, 30, width - 2 * _MARGIN)
    axis_y = 30 + legend_height + 18
    top = axis_y + 6
    bottom = top + len(rows) * row_height
    both_axes = len(rows) > 25
    height = bottom + (26 if both_axes else 0) + _MARGIN

    parts = [
        f'<svg xmlns="{_SVG_NS}" class="nbflow-timeline" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}" font-family="{FONT_FAMILY}" style="{FOREGROUND}" '
        f'role="img" aria-label="{escape(title)}">',
        _hatch_pattern(hatch),
        f'<text x="{_MARGIN}" y="20" font-size="13" font-weight="600" fill="currentColor">'
        f"{escape(title)}</text>",
        legend,
    ]
    for state, row in rows.items():
        y = top + row * row_height
        if row % 2 == 0:  # zebra stripes guide the eye along 200 rows
            parts.append(
                f'<rect x="{_MARGIN}" y="{y:.1f}" width="{width - 2 * _MARGIN}" '
                f'height="{row_height}" fill="currentColor" fill-opacity="0.06"/>'
            )
        parts.append(
            f'<text class="nbflow-row" data-state="{escape(state)}" x="{x0 - 8:.1f}" '
            f'y="{y + row_height / 2 + font * 0.36:.1f}" text-anchor="end" font-size="{font}" '
            f'fill="currentColor"><title>{escape(state)}</title>'
            f"{escape(shorten(state, label_chars))}</text>"
        )
    parts.append(_axis(ticks, x0, scale, axis_y, top, bottom, "nbflow-axis"))
    if both_axes:
        parts.append(_axis(ticks, x0, scale, bottom + 18, None, None, "nbflow-axis-bottom"))
    # Waits first, so that attempts drawn at the same spot stay on top.
    for bar in sorted(bars, key=lambda b: b.outcome != "backoff"):
        y = top + rows[bar.state_id] * row_height
        x = x0 + bar.start_ms * scale
        w = max(MIN_BAR_PX, bar.duration_ms * scale)
        if bar.outcome == "backoff":
            parts.append(_backoff(bar, x, w, y, row_height, hatch))
        else:
            size = (snapshot_sizes or {}).get((bar.state_id, bar.attempt), bar.snapshot_bytes)
            parts.append(_attempt(bar, x, w, y + 3, row_height - 6, size))
    parts.append("</svg>")
    return "".join(parts)


# --- the time axis --------------------------------------------------------------------------


def _ticks(total_ms: int, max_ticks: int) -> list[int]:
    """Tick offsets from 0 to the first multiple of a nice step at or after ``total_ms``."""
    step = next(
        (s for s in _NICE_STEPS_MS if -(-total_ms // s) <= max_ticks - 1), _NICE_STEPS_MS[-1]
    )
    count = max(1, -(-total_ms // step))
    return [i * step for i in range(count + 1)]


def format_offset(ms: int) -> str:
    """An offset on the axis: ``0``, ``250 ms``, ``1.5 s``, ``2 min 30 s``, ``1 h 30 min``."""
    if ms == 0:
        return "0"
    if ms < _SECOND:
        return f"{ms} ms"
    if ms < _MINUTE:
        return f"{ms / _SECOND:g} s"
    if ms < _HOUR:
        minutes, rest = divmod(ms, _MINUTE)
        return f"{minutes} min" + (f" {rest / _SECOND:g} s" if rest else "")
    if ms < 10 * _DAY:
        hours, rest = divmod(ms, _HOUR)
        return f"{hours} h" + (f" {rest // _MINUTE} min" if rest >= _MINUTE else "")
    return f"{ms // _DAY} d"


def _axis(
    ticks: list[int],
    x0: float,
    scale: float,
    label_y: float,
    grid_top: float | None,
    grid_bottom: float | None,
    css_class: str,
) -> str:
    parts = [f'<g class="{css_class}" font-size="11" fill="currentColor" text-anchor="middle">']
    for tick in ticks:
        x = x0 + tick * scale
        if grid_top is not None and grid_bottom is not None:
            parts.append(
                f'<line x1="{x:.1f}" y1="{grid_top - 4:.1f}" x2="{x:.1f}" y2="{grid_bottom:.1f}" '
                f'stroke="{EDGE}" stroke-opacity="0.45" stroke-width="1"/>'
            )
        parts.append(
            f'<text class="nbflow-tick" data-ms="{tick}" x="{x:.1f}" y="{label_y:.1f}">'
            f"{format_offset(tick)}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


# --- bars -----------------------------------------------------------------------------------


def size_text(size: int) -> str:
    """A byte count for people: ``512 B``, ``12.3 kB``, ``4.5 MB``."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _attempt_hover(bar: AttemptBar, snapshot_size: int | None) -> str:
    if bar.child is not None:
        return f"{bar.child.hover()}\nstart: +{duration(bar.start_ms)}"
    lines = [
        f"{bar.state_id} · attempt #{bar.attempt}",
        f"outcome: {bar.outcome}",
        f"start: +{duration(bar.start_ms)}",
        f"duration: {duration(bar.duration_ms)}" + (" so far" if bar.outcome == "running" else ""),
    ]
    if bar.worker:
        lines.append(f"worker: {bar.worker}")
    if snapshot_size is not None:
        lines.append(f"snapshot: {size_text(snapshot_size)}")
    if bar.error:
        lines.append(f"error: {shorten(bar.error.strip(), _MAX_HOVER_ERROR)}")
    return "\n".join(lines)


def _attempt(
    bar: AttemptBar, x: float, w: float, y: float, h: float, snapshot_size: int | None
) -> str:
    color = _swatch(bar.outcome)
    dash = ' stroke-dasharray="3 2"' if bar.outcome == "interrupted" else ""
    parts = [
        f'<rect class="nbflow-attempt" data-state="{escape(bar.state_id)}" '
        f'data-attempt="{bar.attempt}" data-outcome="{escape(bar.outcome)}" '
        f'x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="2" '
        f'fill="{color.fill}" stroke="{color.stroke}" stroke-width="1"{dash}>'
        f"<title>{escape(_attempt_hover(bar, snapshot_size))}</title></rect>"
    ]
    glyph = _GLYPHS.get(bar.outcome)
    worker = worker_label(bar.worker) if bar.worker else ""
    if worker and w >= text_width(worker, h - 6) + h + 8:  # the worker, left in the bar
        parts.append(
            f'<text class="nbflow-worker" x="{x + 4:.1f}" y="{y + h / 2 + (h - 6) * 0.36:.1f}" '
            f'font-size="{h - 6:.0f}" fill="{color.text}" pointer-events="none">'
            f"{escape(worker)}</text>"
        )
        glyph = ""
    if glyph and w >= h + 4:
        parts.append(
            f'<text x="{x + w / 2:.1f}" y="{y + h / 2 + (h - 3) * 0.36:.1f}" '
            f'font-size="{h - 3:.0f}" text-anchor="middle" fill="{color.text}" '
            f'pointer-events="none">{glyph}</text>'
        )
    end = x + w
    if bar.outcome == "interrupted":  # a cut through the end of the bar
        parts.append(
            f'<path class="nbflow-interrupt-mark" d="M{end - 1.5:.1f},{y - 2.5:.1f} '
            f'l3,{h / 3 + 1:.1f} l-3,{h / 3:.1f} l3,{h / 3 + 1:.1f}" fill="none" '
            f'stroke="{color.stroke}" stroke-width="1.6" pointer-events="none"/>'
        )
    elif bar.outcome == "running":  # still going: an arrowhead past the end
        parts.append(
            f'<path d="M{end + 1:.1f},{y:.1f} l{h / 2:.1f},{h / 2:.1f} l{-h / 2:.1f},'
            f'{h / 2:.1f} z" fill="{color.stroke}" pointer-events="none"/>'
        )
    return "".join(parts)


def worker_label(worker: str) -> str:
    """A worker's short name for a bar: ``worker 2`` of ``worker 2 (pid 123)``, the host
    and port of a Dask worker's address."""
    short = worker.split(" (", 1)[0]
    return short.split("://", 1)[-1]


def _backoff(bar: AttemptBar, x: float, w: float, y: float, row_height: float, hatch: str) -> str:
    color = OUTCOME_COLORS["backoff"]
    h = max(4.0, (row_height - 6) * 0.5)
    hover = (
        f"{bar.state_id} · backoff before attempt #{bar.attempt + 1}\n"
        f"start: +{duration(bar.start_ms)}\nwait: {duration(bar.duration_ms)}"
    )
    return (
        f'<rect class="nbflow-backoff" data-state="{escape(bar.state_id)}" '
        f'data-attempt="{bar.attempt}" x="{x:.1f}" y="{y + (row_height - h) / 2:.1f}" '
        f'width="{w:.1f}" height="{h:.1f}" fill="url(#{hatch})" stroke="{color.stroke}" '
        f'stroke-width="0.8"><title>{escape(hover)}</title></rect>'
    )


def _hatch_pattern(pattern_id: str) -> str:
    color = OUTCOME_COLORS["backoff"]
    return (
        f'<defs><pattern id="{pattern_id}" patternUnits="userSpaceOnUse" width="5" height="5" '
        'patternTransform="rotate(45)">'
        f'<rect width="5" height="5" fill="{color.fill}" fill-opacity="0.3"/>'
        f'<line x1="1" y1="0" x2="1" y2="5" stroke="{color.stroke}" stroke-width="1.6"/>'
        "</pattern></defs>"
    )


def _swatch(outcome: str) -> Swatch:
    return OUTCOME_COLORS.get(outcome, OUTCOME_COLORS["running"])


def _outcome_legend(hatch: str) -> list[tuple[str, str]]:
    items = []
    for outcome in OUTCOMES:
        color = OUTCOME_COLORS[outcome]
        if outcome == "backoff":
            swatch = (
                f'<rect x="0" y="4" width="14" height="6" fill="url(#{hatch})" '
                f'stroke="{color.stroke}" stroke-width="0.8"/>'
            )
            label = "backoff wait"
        else:
            dash = ' stroke-dasharray="3 2"' if outcome == "interrupted" else ""
            swatch = (
                f'<rect x="0.5" y="2" width="13" height="10" rx="2" fill="{color.fill}" '
                f'stroke="{color.stroke}"{dash}/>'
            )
            label = f"{_GLYPHS[outcome]} {outcome}"
        items.append((swatch, label))
    return items


def _empty_svg(run_id: str, width: int) -> str:
    message = clean_text(f"No attempts recorded in {run_label(run_id)} yet.")
    return (
        f'<svg xmlns="{_SVG_NS}" class="nbflow-timeline" width="{width}" height="44" '
        f'viewBox="0 0 {width} 44" font-family="{FONT_FAMILY}" style="{FOREGROUND}" role="img" '
        f'aria-label="{escape(message)}"><text x="{_MARGIN}" y="27" font-size="13" '
        f'fill="currentColor">{escape(message)}</text></svg>'
    )
