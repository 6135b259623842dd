"""One run as pictures: its plan coloured by outcome, and its timeline, in one SVG."""

from __future__ import annotations

import re

from nbflow.engine.contract import read_manifest
from nbflow.kernel.views import live_view, run_bars, snapshot_size
from nbflow.model.events import RunStarted
from nbflow.store import Home
from nbflow.ui.dag_svg import RenderedSvg, render_plan_svg
from nbflow.ui.timeline_svg import render_timeline_svg

_SIZE = re.compile(r'<svg\b[^>]*?\bwidth="([0-9.]+)(?:px)?"[^>]*?\bheight="([0-9.]+)(?:px)?"')
_GAP = 24


def run_pictures(home: Home, run_id: str) -> tuple[RenderedSvg, str]:
    """The DAG of ``run_id`` (states coloured by their outcome in it) and its timeline."""
    stream = home.events.read_range(run_id)
    started = stream[0].event
    assert isinstance(started, RunStarted)
    plan = read_manifest(home.artifacts, started.manifest_id, trusted=False).plan
    # The command line drives no run: an attempt left open was cut off.
    view, _, _ = live_view(plan, stream, live=False)
    bars = run_bars(stream, lambda sid: snapshot_size(home.artifacts, sid))
    return render_plan_svg(view), render_timeline_svg(run_id, bars)


def combined_svg(dag: str, timeline: str) -> str:
    """Both pictures stacked in one SVG document."""
    parts = []
    y = 0.0
    width = 0.0
    for svg in (dag, timeline):
        body = re.sub(r"^<\?xml[^>]*>\s*", "", svg.strip())
        body = re.sub(r"^<!DOCTYPE[^>]*>\s*", "", body)
        match = _SIZE.search(body)
        w, h = (float(match.group(1)), float(match.group(2))) if match else (960.0, 400.0)
        body = body.replace("<svg", f'<svg x="0" y="{y:g}"', 1)
        parts.append(body)
        y += h + _GAP
        width = max(width, w)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{y - _GAP:g}" '
        f'viewBox="0 0 {width:g} {y - _GAP:g}">\n' + "\n".join(parts) + "\n</svg>\n"
    )
