"""A layered layout of a DAG, for the built-in drawing when Graphviz is absent.

Sugiyama's scheme, kept small: longest-path layers; edges that skip layers get one dummy
node per skipped layer so they bend around states instead of crossing them; barycentre
sweeps order each layer to reduce crossings (the best order seen wins); then positions
across the layers come from a weighted isotonic regression per layer, which puts each
node as close as the spacing allows to the mean of its neighbours (dummies weigh more,
so long edges run straight). Everything is O((nodes + dummies) log) per sweep: 200
states take milliseconds.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

_LAYER_GAP = {"TB": 40.0, "LR": 56.0}
_NODE_GAP = {"TB": 16.0, "LR": 12.0}
_FIT_WIDTH = 900.0
_SWEEPS = 8
_DUMMY_SIZE = 4.0
_DUMMY_WEIGHT = 4.0


@dataclass(frozen=True)
class Box:
    """Where one state is drawn."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Layout:
    """Where every state and edge of a plan is drawn."""

    boxes: list[Box]
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


def choose_direction(widths: Sequence[float], edges: Sequence[tuple[int, int]]) -> str:
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


def layout(
    widths: Sequence[float],
    edges: Sequence[tuple[int, int]],
    direction: str,
    node_height: float,
) -> Layout:
    """Boxes of ``widths`` (and ``node_height``) and the paths of ``edges``, laid out in
    ``direction`` (``TB`` or ``LR``)."""
    n = len(widths)
    across_size = list(widths) if direction == "TB" else [float(node_height)] * n
    along_size = [float(node_height)] * n if direction == "TB" else list(widths)
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
        boxes.append(Box(x, y, w, h))

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
    return Layout(boxes, paths, width, height)
