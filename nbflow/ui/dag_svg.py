"""The plan as an SVG picture: Graphviz's ``dot`` when installed, a built-in layout otherwise.

Both engines draw the same thing: one rounded box per state, filled with its status colour
(:data:`nbflow.ui.colors.STATUS_COLORS`) and marked with the status glyph (so colour is
never the only cue), one arrow per edge, a legend, and a ``<title>`` per state for hover
text. Every state is a ``<g class="nbflow-state" data-state=… data-status=…>`` and every edge
carries the class ``nbflow-edge``, whichever engine drew it, so tests and widgets find them.

Designs tried and rejected:

- ``graphviz.Source.pipe``: it has no timeout, and a pathological plan must not hang the
  kernel, so the DOT text built with the ``graphviz`` package is piped through ``dot`` by
  :func:`subprocess.run`, which has one.
- Graphviz's own ``tooltip`` attribute: it wraps every node in an ``<a xlink:title>``; the
  ``<title>`` that ``dot`` already writes per node is set to the hover text instead, so both
  engines produce the same structure.
- Always top-to-bottom: a 200-way fan-out became 20 000 px wide. The direction is chosen so
  that the longer side of the layering runs down the page, where notebooks scroll.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from nbflow.ui.colors import EDGE, FONT_FAMILY, FOREGROUND, STATUS_COLORS, Swatch
from nbflow.ui.dag_groups import find_folds, fold_view
from nbflow.ui.dag_layout import choose_direction
from nbflow.ui.dag_layout import layout as dag_layout
from nbflow.ui.model import STATUSES, PlanView, StateView
from nbflow.ui.svg_parts import clean_text, escape, legend_svg, picture_id, shorten, text_width
from nbflow.ui.text import MARKS, duration

DOT_TIMEOUT_S = 10.0
"""How long ``dot`` may take before the built-in layout is used instead."""

NO_DOT_HINT = (
    "Graphviz's dot was not found; install it (e.g. apt-get install graphviz, "
    "brew install graphviz, conda install graphviz) for a better layout."
)

_SVG_NS = "http://www.w3.org/2000/svg"
_FONT_SIZE = 12
_NODE_HEIGHT = 28
_NODE_PAD = 10
_MAX_LABEL = 40
_MARGIN = 12
_MIN_WIDTH = 600.0
"""Narrowest picture: the legend fits in two rows."""
_MAX_HOVER_ERROR = 600
_MAX_HOVER_MEMBERS = 40


@dataclass(frozen=True)
class RenderedSvg:
    """A drawn plan."""

    svg: str
    """The picture: a complete ``<svg>`` document."""
    engine: Literal["dot", "builtin"]
    """Who laid it out: Graphviz's ``dot``, or nbflow's own layered layout."""
    hint: str | None
    """A one-line notice for the user (how to get Graphviz), or ``None``."""


def render_plan_svg(
    view: PlanView, *, use_dot: bool | None = None, live_id: str | None = None
) -> RenderedSvg:
    """Draw the plan ``view`` as SVG, each state coloured by its status.

    ``use_dot``: ``None`` or ``True`` lay it out with Graphviz's ``dot`` when it is on
    ``PATH``; ``False`` draws it as if ``dot`` were missing (the built-in layout and the
    hint). A failing or slow ``dot`` also falls back to the built-in layout, never an error.

    ``live_id``: the picture is the layout of a live DAG, restyled by a style sheet as
    statuses change (:mod:`nbflow.ui.live_dag`): its root element gets this id, every
    label carries the mark of every status (all but the drawn one hidden), and the legend
    counts nothing.
    """
    if not view.states:
        return RenderedSvg(_empty_svg(view.flow_id), "builtin", None)
    view = fold_view(view, find_folds(view))
    dot = shutil.which("dot") if use_dot is not False else None
    if dot is None:
        return RenderedSvg(_builtin_svg(view, live_id), "builtin", NO_DOT_HINT)
    try:
        return RenderedSvg(_dot_svg(view, dot, live_id), "dot", None)
    except subprocess.CalledProcessError as error:
        said = clean_text(error.stderr.decode(errors="replace")).strip().splitlines()
        reason = said[0] if said else f"exit status {error.returncode}"
    except subprocess.TimeoutExpired:
        reason = f"TimeoutExpired: no answer in {DOT_TIMEOUT_S:g} s"
    except (OSError, ET.ParseError, ImportError) as error:  # unrunnable, garbled, no package
        reason = f"{type(error).__name__}: {clean_text(str(error))}"
    hint = f"Graphviz's dot failed ({shorten(reason, 160)}); drawn with the built-in layout."
    return RenderedSvg(_builtin_svg(view, live_id), "builtin", hint)


# --- text ---------------------------------------------------------------------------------


def _name(state: StateView) -> str:
    if state.members:
        return f"{shorten(state.state_id, _MAX_LABEL)} · {len(state.members)} states"
    if state.child is not None:
        return shorten(f"↳ {state.child.short_target} {state.child.run_id[:8]}", _MAX_LABEL)
    return shorten(state.state_id, _MAX_LABEL)


def _label(state: StateView) -> str:
    return f"{MARKS.get(state.status, '?')} {_name(state)}"


def _live_marks(state: StateView) -> list[tuple[str, bool, str]]:
    """A live label's marks, one per status: ``(class, hidden, text)``. All are hidden but
    the one drawn; a live DAG's style sheet shows another as the status changes."""
    return [
        (f"nbflow-mark nbflow-mark-{status}", status != state.status, f"{mark} ")
        for status, mark in MARKS.items()
    ]


def _live_label(state: StateView) -> str:
    """The label's markup: every mark (see :func:`_live_marks`), then the name."""
    spans = []
    for kind, hidden, text in _live_marks(state):
        style = ' style="display:none"' if hidden else ""
        spans.append(f'<tspan class="{kind}"{style}>{text}</tspan>')
    return "".join(spans) + escape(_name(state))


def _dashed(state: StateView) -> bool:
    """Pending states, and child runs (which are not states of the plan), are outlined
    with a dashed line."""
    return state.status == "pending" or state.child is not None


def _hover(state: StateView) -> str:
    if state.members:
        counts = Counter(state.member_statuses)
        lines = [
            f"{len(state.members)} states in a chain, {state.members[0]} to {state.members[-1]}",
            ", ".join(f"{n} {status}" for status, n in counts.most_common()),
            *(
                f"{MARKS.get(status, '?')} {member}"
                for member, status in zip(
                    state.members[:_MAX_HOVER_MEMBERS], state.member_statuses, strict=False
                )
            ),
        ]
        if len(state.members) > _MAX_HOVER_MEMBERS:
            lines.append(f"… and {len(state.members) - _MAX_HOVER_MEMBERS} more")
        return clean_text("\n".join(lines))
    if state.child is not None:
        return clean_text(f"{state.child.hover()}\nstarted by: {state.upstream[0]}")
    lines = [state.state_id, f"status: {state.status}"]
    if state.upstream:
        lines.append(f"after: {', '.join(state.upstream)}")
    if state.last_attempt is not None:
        lines.append(f"last attempt: #{state.last_attempt}")
    if state.last_duration_ms is not None:
        lines.append(f"duration: {duration(state.last_duration_ms)}")
    if state.last_error:
        lines.append(f"error: {shorten(state.last_error.strip(), _MAX_HOVER_ERROR)}")
    if state.stale:
        lines.append(f"stale: {state.stale}")
    return clean_text("\n".join(lines))


def _swatch(status: str) -> Swatch:
    return STATUS_COLORS.get(status, STATUS_COLORS["pending"])


def _status_legend(view: PlanView, width: float, counted: bool = True) -> tuple[str, float]:
    counts = {status: 0 for status in STATUSES}
    for state in view.states:
        if state.child is not None:  # the legend counts states; child runs are drawn besides
            continue
        for status in state.member_statuses or (state.status,):  # a fold: each of its states
            counts[status] = counts.get(status, 0) + 1
    items = []
    for status in STATUSES:
        color = STATUS_COLORS[status]
        dash = ' stroke-dasharray="3 2"' if status == "pending" else ""
        swatch = (
            f'<rect x="0.75" y="0.75" width="12.5" height="12.5" rx="3" fill="{color.fill}" '
            f'stroke="{color.stroke}" stroke-width="1.5"{dash}/>'
        )
        count = f" {counts[status]}" if counted else ""
        items.append((swatch, f"{MARKS[status]} {status}{count}"))
    return legend_svg(items, _MARGIN, _MARGIN, width)


def _state_count(view: PlanView) -> int:
    return sum(len(state.members) or 1 for state in view.states if state.child is None)


def _empty_svg(flow_id: str) -> str:
    message = f"No states in {shorten(flow_id, 60)} yet: add a %%state cell to start the plan."
    width = text_width(message, 13) + 2 * _MARGIN
    return (
        f'<svg xmlns="{_SVG_NS}" class="nbflow-plan" data-engine="builtin" '
        f'width="{width:.0f}" height="44" viewBox="0 0 {width:.0f} 44" '
        f'font-family="{FONT_FAMILY}" style="{FOREGROUND}" role="img" '
        f'aria-label="{escape(message)}">'
        f'<text x="{_MARGIN}" y="27" font-size="13" fill="currentColor">{escape(message)}</text>'
        "</svg>"
    )


# --- built-in layout ------------------------------------------------------------------------


def _edges(view: PlanView) -> list[tuple[int, int]]:
    index = {state.state_id: i for i, state in enumerate(view.states)}
    return [
        (index[upstream], i)
        for i, state in enumerate(view.states)
        for upstream in state.upstream
        if upstream in index  # a validated plan has no dangling edge; a view might
    ]


def _node_width(state: StateView) -> float:
    return max(64.0, text_width(_label(state), _FONT_SIZE) + 2 * _NODE_PAD)


def _root_id(live_id: str | None) -> str:
    return f' id="{escape(live_id)}"' if live_id else ""


def _builtin_svg(view: PlanView, live_id: str | None = None) -> str:
    widths = [_node_width(state) for state in view.states]
    edges = _edges(view)
    layout = dag_layout(widths, edges, choose_direction(widths, edges), _NODE_HEIGHT)
    legend, legend_height = _status_legend(view, max(layout.width, _MIN_WIDTH), not live_id)
    top = _MARGIN + legend_height + 8
    width = max(layout.width, _MIN_WIDTH) + 2 * _MARGIN
    height = top + layout.height + _MARGIN
    arrow = f"nbflow-arrow-{picture_id(view)}"
    parts = [
        f'<svg xmlns="{_SVG_NS}"{_root_id(live_id)} class="nbflow-plan" data-engine="builtin" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'font-family="{FONT_FAMILY}" style="{FOREGROUND}" role="img" '
        f'aria-label="plan of {escape(view.flow_id)}: {_state_count(view)} states">',
        f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerUnits="userSpaceOnUse" markerWidth="8" markerHeight="8" orient="auto">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{EDGE}"/></marker></defs>',
        legend,
        f'<g transform="translate({_MARGIN},{top:.1f})">',
        '<g class="nbflow-edges">',
    ]
    for (source, target), path in zip(edges, layout.edge_paths, strict=True):
        parts.append(
            f'<path class="nbflow-edge" data-from="{escape(view.states[source].state_id)}" '
            f'data-to="{escape(view.states[target].state_id)}" d="{path}" fill="none" '
            f'stroke="{EDGE}" stroke-width="1.3" marker-end="url(#{arrow})"/>'
        )
    parts.append('</g><g class="nbflow-states">')
    for state, box in zip(view.states, layout.boxes, strict=True):
        color = _swatch(state.status)
        dash = ' stroke-dasharray="4 3"' if _dashed(state) else ""
        kind = "nbflow-child" if state.child is not None else "nbflow-state"
        parts.append(
            f'<g class="{kind}" data-state="{escape(state.state_id)}" '
            f'data-status="{escape(state.status)}" transform="translate({box.x:.1f},{box.y:.1f})">'
            f"<title>{escape(_hover(state))}</title>"
            f'<rect x="0" y="0" width="{box.width:.1f}" height="{box.height:.1f}" rx="7" '
            f'fill="{color.fill}" stroke="{color.stroke}" stroke-width="1.5"{dash}/>'
            f'<text x="{box.width / 2:.1f}" y="{box.height / 2 + _FONT_SIZE * 0.36:.1f}" '
            f'text-anchor="middle" font-size="{_FONT_SIZE}" fill="{color.text}">'
            f"{_live_label(state) if live_id else escape(_label(state))}</text></g>"
        )
    parts.append("</g></g></svg>")
    return "".join(parts)


# --- Graphviz ------------------------------------------------------------------------------


def _dot_source(view: PlanView) -> str:
    import graphviz  # the DOT builder; imported here so the built-in path never needs it

    edges = _edges(view)
    direction = choose_direction([_node_width(state) for state in view.states], edges)
    graph = graphviz.Digraph("plan")
    graph.attr(rankdir=direction, bgcolor="transparent", nodesep="0.25", ranksep="0.4")
    graph.attr(
        "node",
        shape="box",
        style="rounded,filled",
        fontname="Helvetica,Arial,sans-serif",
        fontsize=str(_FONT_SIZE),
        height="0.39",
        margin="0.14,0.04",
        penwidth="1.5",
    )
    graph.attr("edge", color=EDGE, arrowsize="0.7", penwidth="1.3")
    for i, state in enumerate(view.states):
        color = _swatch(state.status)
        graph.node(
            f"s{i}",
            # An HTML-like label: escaped by us, so no DOT escape sequence (\N, \l) can fire.
            label=f"<{escape(_label(state))}>",
            id=f"nbflow-s{i}",
            fillcolor=color.fill,
            color=color.stroke,
            fontcolor=color.text,
            style="rounded,filled,dashed" if _dashed(state) else "rounded,filled",
        )
    for k, (source, target) in enumerate(edges):
        graph.edge(f"s{source}", f"s{target}", id=f"nbflow-e{k}")
    return str(graph.source)


def _dot_svg(view: PlanView, dot: str, live_id: str | None = None) -> str:
    completed = subprocess.run(
        [dot, "-Tsvg"],
        input=_dot_source(view).encode(),
        capture_output=True,
        timeout=DOT_TIMEOUT_S,
        check=True,
    )
    ET.register_namespace("", _SVG_NS)
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    graph = ET.fromstring(completed.stdout)
    _mark_dot_elements(graph, view, live_id is not None)
    # dot measures in points; drawn 1:1 in user units its 12 pt font matches the built-in 12 px.
    _, _, graph_width, graph_height = (float(v) for v in graph.attrib["viewBox"].split())
    legend, legend_height = _status_legend(view, max(graph_width, _MIN_WIDTH), not live_id)
    top = _MARGIN + legend_height + 4
    graph.attrib.update(
        x=str(_MARGIN), y=f"{top:.1f}", width=f"{graph_width:.1f}", height=f"{graph_height:.1f}"
    )
    width = max(graph_width, _MIN_WIDTH) + 2 * _MARGIN
    height = top + graph_height + _MARGIN
    return (
        f'<svg xmlns="{_SVG_NS}"{_root_id(live_id)} class="nbflow-plan" data-engine="dot" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'font-family="{FONT_FAMILY}" style="{FOREGROUND}" role="img" '
        f'aria-label="plan of {escape(view.flow_id)}: {_state_count(view)} states">'
        f"{legend}{ET.tostring(graph, encoding='unicode')}</svg>"
    )


def _put_live_label(label: ET.Element, state: StateView) -> None:
    """Replace dot's label text by the live label's marks and name."""
    label.text = None
    for kind, hidden, text in _live_marks(state):
        span = ET.SubElement(label, f"{{{_SVG_NS}}}tspan")
        span.set("class", kind)
        if hidden:
            span.set("style", "display:none")
        span.text = text
    span.tail = clean_text(_name(state))


def _mark_dot_elements(graph: ET.Element, view: PlanView, live: bool = False) -> None:
    """Give dot's node and edge groups nbflow's markers and hover text (and, for a live
    DAG, every status's mark in each label)."""
    edges = _edges(view)
    title_tag = f"{{{_SVG_NS}}}title"
    for group in graph.iter(f"{{{_SVG_NS}}}g"):
        element_id = group.get("id", "")
        title = group.find(title_tag)
        if element_id.startswith("nbflow-s"):
            state = view.states[int(element_id.removeprefix("nbflow-s"))]
            group.set("class", "node nbflow-child" if state.child else "node nbflow-state")
            group.set("data-state", clean_text(state.state_id))
            group.set("data-status", clean_text(state.status))
            if title is not None:
                title.text = _hover(state)
            label = group.find(f"{{{_SVG_NS}}}text")
            if live and label is not None:
                _put_live_label(label, state)
        elif element_id.startswith("nbflow-e"):
            source, target = edges[int(element_id.removeprefix("nbflow-e"))]
            group.set("class", "edge nbflow-edge")
            group.set("data-from", clean_text(view.states[source].state_id))
            group.set("data-to", clean_text(view.states[target].state_id))
            if title is not None:
                title.text = clean_text(
                    f"{view.states[source].state_id} → {view.states[target].state_id}"
                )
        elif group.get("class") == "graph" and title is not None:
            group.remove(title)  # "plan" would be the hover text of the empty background
