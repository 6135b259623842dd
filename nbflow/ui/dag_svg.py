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

import hashlib
import html
import itertools
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from nbflow.ui.colors import EDGE, FONT_FAMILY, FOREGROUND, STATUS_COLORS, Swatch
from nbflow.ui.model import STATUSES, PlanView, StateView
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


@dataclass(frozen=True)
class RenderedSvg:
    """A drawn plan."""

    svg: str
    """The picture: a complete ``<svg>`` document."""
    engine: Literal["dot", "builtin"]
    """Who laid it out: Graphviz's ``dot``, or nbflow's own layered layout."""
    hint: str | None
    """A one-line notice for the user (how to get Graphviz), or ``None``."""


def render_plan_svg(view: PlanView, *, use_dot: bool | None = None) -> RenderedSvg:
    """Draw the plan ``view`` as SVG, each state coloured by its status.

    ``use_dot``: ``None`` or ``True`` lay it out with Graphviz's ``dot`` when it is on
    ``PATH``; ``False`` draws it as if ``dot`` were missing (the built-in layout and the
    hint). A failing or slow ``dot`` also falls back to the built-in layout, never an error.
    """
    if not view.states:
        return RenderedSvg(_empty_svg(view.flow_id), "builtin", None)
    dot = shutil.which("dot") if use_dot is not False else None
    if dot is None:
        return RenderedSvg(_builtin_svg(view), "builtin", NO_DOT_HINT)
    try:
        return RenderedSvg(_dot_svg(view, dot), "dot", None)
    except subprocess.CalledProcessError as error:
        said = clean_text(error.stderr.decode(errors="replace")).strip().splitlines()
        reason = said[0] if said else f"exit status {error.returncode}"
    except subprocess.TimeoutExpired:
        reason = f"TimeoutExpired: no answer in {DOT_TIMEOUT_S:g} s"
    except (OSError, ET.ParseError, ImportError) as error:  # unrunnable, garbled, no package
        reason = f"{type(error).__name__}: {clean_text(str(error))}"
    hint = f"Graphviz's dot failed ({shorten(reason, 160)}); drawn with the built-in layout."
    return RenderedSvg(_builtin_svg(view), "builtin", hint)


# --- text ---------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def clean_text(text: str) -> str:
    """``text`` without what XML cannot hold: terminal colour codes and control characters.

    Tracebacks from IPython carry ANSI colour codes; escaping alone would leave an ESC
    character that makes the whole document unparsable.
    """
    return _NOT_XML.sub("\ufffd", _ANSI.sub("", text))


def escape(text: str) -> str:
    """``text`` made safe for SVG content and attribute values."""
    return html.escape(clean_text(text), quote=True)


def text_width(text: str, font_size: float) -> float:
    """A generous estimate of the rendered width of ``text``; fonts are not at hand here."""
    return len(text) * font_size * 0.62


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def picture_id(*parts: object) -> str:
    """A short id, the same for the same picture, to keep ``<defs>`` ids of pictures apart.

    Several pictures share one page in a notebook, and so one id namespace.
    """
    return hashlib.blake2s(repr(parts).encode(), digest_size=4).hexdigest()


def legend_svg(
    items: Sequence[tuple[str, str]], x: float, y: float, width: float
) -> tuple[str, float]:
    """A legend of ``(swatch markup drawn in a 14 by 14 box at the origin, label)`` items.

    Items flow left to right in columns of one width and wrap at ``width``. Returns the
    markup and its height.
    """
    parts = ['<g class="nbflow-legend">']
    cx, cy, row = x, y, 20.0
    item_width = max((14 + 5 + text_width(label, 11) * 0.9 + 14 for _, label in items), default=0)
    for swatch, label in items:
        if cx > x and cx + item_width > x + width:
            cx, cy = x, cy + row
        parts.append(
            f'<g transform="translate({cx:.1f},{cy:.1f})">{swatch}'
            f'<text x="19" y="11" font-size="11" fill="currentColor">{escape(label)}</text></g>'
        )
        cx += item_width
    parts.append("</g>")
    return "".join(parts), cy - y + row


# --- hover text and the legend, shared by both engines -------------------------------------


def _label(state: StateView) -> str:
    if state.child is not None:
        name = f"↳ {state.child.short_target} {state.child.run_id[:8]}"
        return f"{MARKS.get(state.status, '?')} {shorten(name, _MAX_LABEL)}"
    return f"{MARKS.get(state.status, '?')} {shorten(state.state_id, _MAX_LABEL)}"


def _dashed(state: StateView) -> bool:
    """Pending states, and child runs (which are not states of the plan), are outlined
    with a dashed line."""
    return state.status == "pending" or state.child is not None


def _hover(state: StateView) -> str:
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


def _status_legend(view: PlanView, width: float) -> tuple[str, float]:
    counts = {status: 0 for status in STATUSES}
    for state in view.states:
        if state.child is None:  # the legend counts states; child runs are drawn besides
            counts[state.status] = counts.get(state.status, 0) + 1
    items = []
    for status in STATUSES:
        color = STATUS_COLORS[status]
        dash = ' stroke-dasharray="3 2"' if status == "pending" else ""
        swatch = (
            f'<rect x="0.75" y="0.75" width="12.5" height="12.5" rx="3" fill="{color.fill}" '
            f'stroke="{color.stroke}" stroke-width="1.5"{dash}/>'
        )
        items.append((swatch, f"{MARKS[status]} {status} {counts[status]}"))
    return legend_svg(items, _MARGIN, _MARGIN, width)


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


def _builtin_svg(view: PlanView) -> str:
    widths = [_node_width(state) for state in view.states]
    edges = _edges(view)
    layout = _layout(widths, edges, _choose_direction(widths, edges))
    legend, legend_height = _status_legend(view, max(layout.width, _MIN_WIDTH))
    top = _MARGIN + legend_height + 8
    width = max(layout.width, _MIN_WIDTH) + 2 * _MARGIN
    height = top + layout.height + _MARGIN
    arrow = f"nbflow-arrow-{picture_id(view)}"
    parts = [
        f'<svg xmlns="{_SVG_NS}" class="nbflow-plan" data-engine="builtin" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'font-family="{FONT_FAMILY}" style="{FOREGROUND}" role="img" '
        f'aria-label="plan of {escape(view.flow_id)}: {len(view.states)} states">',
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
            f"{escape(_label(state))}</text></g>"
        )
    parts.append("</g></g></svg>")
    return "".join(parts)


# --- the built-in layered layout ------------------------------------------------------------
#
# Sugiyama's scheme, kept small: longest-path layers; edges that skip layers get one dummy
# node per skipped layer so they bend around states instead of crossing them; barycentre
# sweeps order each layer to reduce crossings (the best order seen wins); then positions
# across the layers come from a weighted isotonic regression per layer, which puts each node
# as close as the spacing allows to the mean of its neighbours (dummies weigh more, so long
# edges run straight). Everything is O((nodes + dummies) log) per sweep: 200 states take
# milliseconds.

_LAYER_GAP = {"TB": 40.0, "LR": 56.0}
_NODE_GAP = {"TB": 16.0, "LR": 12.0}
_FIT_WIDTH = 900.0
_SWEEPS = 8
_DUMMY_SIZE = 4.0
_DUMMY_WEIGHT = 4.0


@dataclass(frozen=True)
class _Box:
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class _Layout:
    boxes: list[_Box]
    edge_paths: list[str]
    """SVG path data per edge, in the order of the edges given."""
    width: float
    height: float


def _layering(n: int, edges: Sequence[tuple[int, int]]) -> list[int]:
    parents: list[list[int]] = [[] for _ in range(n)]
    children: list[list[int]] = [[] for _ in range(n)]
    for source, target in edges:
        parents[target].append(source)
        children[source].append(target)
    waiting = [len(p) for p in parents]
    ready = deque(i for i in range(n) if not waiting[i])
    order: list[int] = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for child in children[node]:
            waiting[child] -= 1
            if not waiting[child]:
                ready.append(child)
    placed = set(order)
    order += [i for i in range(n) if i not in placed]  # only on a cycle: drawn, not refused
    rank = {node: i for i, node in enumerate(order)}
    layer = [0] * n
    for node in order:
        layer[node] = max((layer[p] + 1 for p in parents[node] if rank[p] < rank[node]), default=0)
    for node in order:
        # A source sits right before its first consumer: same depth, shorter edges.
        if not parents[node] and children[node]:
            layer[node] = min(layer[c] for c in children[node]) - 1
    return layer


def _choose_direction(widths: Sequence[float], edges: Sequence[tuple[int, int]]) -> str:
    """``LR`` when that fits a notebook's width, else the direction that is narrower."""
    layers = _layering(len(widths), edges)
    depth = max(layers) + 1
    widest = [0.0] * depth
    across = [0.0] * depth
    for node, layer in enumerate(layers):
        widest[layer] = max(widest[layer], widths[node])
        across[layer] += widths[node] + _NODE_GAP["TB"]
    lr_width = sum(widest) + _LAYER_GAP["LR"] * (depth - 1)
    tb_width = max(across)
    if lr_width <= _FIT_WIDTH:
        return "LR"
    return "TB" if tb_width <= _FIT_WIDTH or tb_width < lr_width else "LR"


def _crossings(order: list[list[int]], position: list[int], down: list[list[int]]) -> int:
    total = 0
    for upper, lower in itertools.pairwise(order):
        pairs = sorted((position[u], position[v]) for u in upper for v in down[u])
        # Count inversions of the lower ends with a Fenwick tree.
        tree = [0] * (len(lower) + 1)
        for seen, (_, v) in enumerate(pairs):
            i, not_greater = v + 1, 0
            while i > 0:
                not_greater += tree[i]
                i -= i & -i
            total += seen - not_greater
            i = v + 1
            while i <= len(lower):
                tree[i] += 1
                i += i & -i
    return total


def _order_layers(order: list[list[int]], up: list[list[int]], down: list[list[int]]) -> None:
    position = [0] * len(up)

    def number(layer: list[int]) -> None:
        for i, node in enumerate(layer):
            position[node] = i

    def sort_by(layer: list[int], neighbours: list[list[int]]) -> None:
        def barycentre(node: int) -> float:
            near = neighbours[node]
            return sum(position[n] for n in near) / len(near) if near else position[node]

        layer.sort(key=lambda node: (barycentre(node), position[node]))
        number(layer)

    for layer in order:
        number(layer)
    best = [list(layer) for layer in order]
    fewest = _crossings(order, position, down)
    for _ in range(_SWEEPS):
        if not fewest:
            break
        for layer in order[1:]:
            sort_by(layer, up)
        for layer in reversed(order[:-1]):
            sort_by(layer, down)
        found = _crossings(order, position, down)
        if found < fewest:
            best, fewest = [list(layer) for layer in order], found
    order[:] = best


def _isotonic(targets: list[float], weights: list[float], gaps: list[float]) -> list[float]:
    """Positions nearest (weighted least squares) to ``targets`` keeping ``gaps`` between them."""
    offsets = [0.0]
    for gap in gaps:
        offsets.append(offsets[-1] + gap)
    blocks: list[list[float]] = []  # [weighted sum, weight, count], pool-adjacent-violators
    for target, weight, offset in zip(targets, weights, offsets, strict=True):
        blocks.append([(target - offset) * weight, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, weight_sum, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += weight_sum
            blocks[-1][2] += count
    values = [total / weight for total, weight, count in blocks for _ in range(int(count))]
    return [value + offset for value, offset in zip(values, offsets, strict=True)]


@dataclass
class _Proper:
    """The layered graph with a dummy node wherever an edge skips a layer."""

    real: int
    """Nodes ``0 .. real-1`` are states; the rest are dummies."""
    layer: list[int]
    across_size: list[float]
    up: list[list[int]]
    down: list[list[int]]
    chains: list[list[int]]
    """Per edge, the nodes it passes: its source, its dummies, its target."""


def _proper(
    layer: list[int], across_size: list[float], edges: Sequence[tuple[int, int]]
) -> _Proper:
    n = len(layer)
    graph = _Proper(n, list(layer), list(across_size), [[] for _ in layer], [[] for _ in layer], [])
    for source, target in edges:
        chain = [source]
        if layer[target] > layer[source]:
            for skipped in range(layer[source] + 1, layer[target]):
                graph.layer.append(skipped)
                graph.across_size.append(_DUMMY_SIZE)
                graph.up.append([])
                graph.down.append([])
                chain.append(len(graph.layer) - 1)
            chain.append(target)
            for a, b in itertools.pairwise(chain):
                graph.down[a].append(b)
                graph.up[b].append(a)
        else:
            chain.append(target)  # against the layers: only on a cycle, drawn straight
        graph.chains.append(chain)
    return graph


def _place_across(graph: _Proper, order: list[list[int]], gap: float) -> list[float]:
    """Each node's centre across the layers: near its neighbours, never overlapping."""
    size = graph.across_size
    weight = [1.0 if v < graph.real else _DUMMY_WEIGHT for v in range(len(size))]

    def spacing(a: int, b: int) -> float:
        both_real = a < graph.real and b < graph.real
        return (size[a] + size[b]) / 2 + (gap if both_real else gap / 2)

    across = [0.0] * len(size)
    for nodes in order:  # packed and centred: the start for the refinement below
        position = across[nodes[0]] = size[nodes[0]] / 2
        for a, b in itertools.pairwise(nodes):
            position = across[b] = position + spacing(a, b)
        centre = (position + size[nodes[-1]] / 2) / 2
        for node in nodes:
            across[node] -= centre
    down_pass, up_pass = (graph.up, order[1:]), (graph.down, order[-2::-1])
    for neighbours, layers in [down_pass, up_pass, down_pass, up_pass, down_pass]:
        for nodes in layers:
            targets = [
                sum(across[m] for m in neighbours[v]) / len(neighbours[v])
                if neighbours[v]
                else across[v]
                for v in nodes
            ]
            gaps = [spacing(a, b) for a, b in itertools.pairwise(nodes)]
            placed = _isotonic(targets, [weight[v] for v in nodes], gaps)
            for node, value in zip(nodes, placed, strict=True):
                across[node] = value
    low = min(across[v] - size[v] / 2 for v in range(len(size)))
    return [value - low for value in across]


def _ports(graph: _Proper, across: list[float]) -> list[tuple[float, float]]:
    """Per edge, where it leaves its source and enters its target, as offsets across.

    Edges sharing a side of a box are spread along it in the order of their other ends, so
    arrowheads do not pile up on one point and spreading adds no crossing.
    """
    ports = [[0.0, 0.0] for _ in graph.chains]
    for end, neighbour in ((0, 1), (1, -2)):
        sides: dict[int, list[int]] = {}
        for k, chain in enumerate(graph.chains):
            sides.setdefault(chain[-end], []).append(k)
        for node, edge_ids in sides.items():
            if len(edge_ids) < 2:
                continue
            edge_ids.sort(key=lambda k: across[graph.chains[k][neighbour]])
            step = min(10.0, graph.across_size[node] * 0.7 / (len(edge_ids) - 1))
            for i, k in enumerate(edge_ids):
                ports[k][end] = (i - (len(edge_ids) - 1) / 2) * step
    return [(start, end) for start, end in ports]


def _layout(widths: Sequence[float], edges: Sequence[tuple[int, int]], direction: str) -> _Layout:
    n = len(widths)
    across_size = list(widths) if direction == "TB" else [float(_NODE_HEIGHT)] * n
    along_size = [float(_NODE_HEIGHT)] * n if direction == "TB" else list(widths)
    graph = _proper(_layering(n, edges), across_size, edges)
    layer = graph.layer
    order: list[list[int]] = [[] for _ in range(max(layer) + 1)]
    for node, node_layer in enumerate(layer):
        order[node_layer].append(node)
    _order_layers(order, graph.up, graph.down)
    across = _place_across(graph, order, _NODE_GAP[direction])

    # Along the layers: each layer is a band as thick as its thickest state.
    thickness = [0.0] * len(order)
    for node in range(n):
        thickness[layer[node]] = max(thickness[layer[node]], along_size[node])
    band_start = [0.0]
    for size in thickness:
        band_start.append(band_start[-1] + size + _LAYER_GAP[direction])
    along_start = [
        band_start[layer[v]] + (thickness[layer[v]] - along_size[v]) / 2 for v in range(n)
    ]

    def point(along: float, cross: float) -> tuple[float, float]:
        return (cross, along) if direction == "TB" else (along, cross)

    boxes = []
    for v in range(n):
        x, y = point(along_start[v], across[v] - across_size[v] / 2)
        w, h = point(along_size[v], across_size[v])
        boxes.append(_Box(x, y, w, h))

    paths = []
    for chain, (leave, enter) in zip(graph.chains, _ports(graph, across), strict=True):
        source, target = chain[0], chain[-1]
        stops = [(along_start[source] + along_size[source], across[source] + leave, False)]
        for dummy in chain[1:-1]:
            band = layer[dummy]
            stops.append((band_start[band], across[dummy], False))
            stops.append((band_start[band] + thickness[band], across[dummy], True))
        stops.append((along_start[target], across[target] + enter, False))
        x, y = point(stops[0][0], stops[0][1])
        path = [f"M{x:.1f},{y:.1f}"]
        for (a0, c0, _), (a1, c1, straight) in itertools.pairwise(stops):
            if straight:  # through a layer's band, beside the states in it
                x, y = point(a1, c1)
                path.append(f"L{x:.1f},{y:.1f}")
                continue
            middle = (a0 + a1) / 2
            (x0, y0), (x1, y1), (x2, y2) = point(middle, c0), point(middle, c1), point(a1, c1)
            path.append(f"C{x0:.1f},{y0:.1f} {x1:.1f},{y1:.1f} {x2:.1f},{y2:.1f}")
        paths.append(" ".join(path))

    extent_across = max(across[v] + graph.across_size[v] / 2 for v in range(len(layer)))
    width, height = point(band_start[-1] - _LAYER_GAP[direction], extent_across)
    return _Layout(boxes, paths, width, height)


# --- Graphviz ------------------------------------------------------------------------------


def _dot_source(view: PlanView) -> str:
    import graphviz  # the DOT builder; imported here so the built-in path never needs it

    edges = _edges(view)
    direction = _choose_direction([_node_width(state) for state in view.states], edges)
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


def _dot_svg(view: PlanView, dot: str) -> str:
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
    _mark_dot_elements(graph, view)
    # dot measures in points; drawn 1:1 in user units its 12 pt font matches the built-in 12 px.
    _, _, graph_width, graph_height = (float(v) for v in graph.attrib["viewBox"].split())
    legend, legend_height = _status_legend(view, max(graph_width, _MIN_WIDTH))
    top = _MARGIN + legend_height + 4
    graph.attrib.update(
        x=str(_MARGIN), y=f"{top:.1f}", width=f"{graph_width:.1f}", height=f"{graph_height:.1f}"
    )
    width = max(graph_width, _MIN_WIDTH) + 2 * _MARGIN
    height = top + graph_height + _MARGIN
    return (
        f'<svg xmlns="{_SVG_NS}" class="nbflow-plan" data-engine="dot" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'font-family="{FONT_FAMILY}" style="{FOREGROUND}" role="img" '
        f'aria-label="plan of {escape(view.flow_id)}: {len(view.states)} states">'
        f"{legend}{ET.tostring(graph, encoding='unicode')}</svg>"
    )


def _mark_dot_elements(graph: ET.Element, view: PlanView) -> None:
    """Give dot's node and edge groups nbflow's markers and hover text."""
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
