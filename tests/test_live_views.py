"""The live DAG's pieces without a kernel: a run folded event by event gives the same
picture as its stream read whole, and the style sheet restyles only what changed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nbflow import Flow
from nbflow.kernel.live_run import LiveRun
from nbflow.kernel.views import live_view
from nbflow.ui.dag_svg import render_plan_svg
from nbflow.ui.live_dag import LivePicture, css_string
from nbflow.ui.model import PlanView, StateView

SVG = "{http://www.w3.org/2000/svg}"


def flaky_flow(home: Path) -> Flow:
    """A diamond whose branch ``b`` fails twice before it succeeds."""
    tries = {"b": 0}

    def b(context: dict[str, int]) -> dict[str, int]:
        tries["b"] += 1
        if tries["b"] < 3:
            raise RuntimeError("flaky")
        return {**context, "b": 1}

    flow = Flow("diamond", home=home)
    flow.declare("a", lambda c: {**c, "a": 1}, source="a")
    flow.declare("b", b, after=["a"], retries=2, backoff="fixed:1ms", source="b")
    flow.declare("c", lambda c: {**c, "c": 1}, after=["a"], source="c")
    flow.declare("d", lambda c: {**c, "d": 1}, after=["b", "c"], source="d")
    return flow


def test_a_run_folded_event_by_event_matches_its_stream_read_whole(tmp_path: Path) -> None:
    with flaky_flow(tmp_path / ".nbflow") as flow:
        result = flow.run()
        assert result.phase.value == "completed"
        stream = flow.home.events.read_range(result.run_id)
        live = LiveRun(result.run_id, flow.plan, {"d": "its code changed"})
        seen: set[str] = set()
        for i, envelope in enumerate(stream):
            live.feed(envelope)
            whole, done, current = live_view(
                flow.plan, stream[: i + 1], stale={"d": "its code changed"}
            )
            frame = live.frame()
            assert frame.statuses == {s.state_id: s.status for s in whole.states}
            assert (frame.done, frame.current) == (done, current)
            assert live.view() == whole
            seen.update(frame.statuses.values())
    assert {"pending", "stale", "running", "retrying", "failed", "completed"} <= seen


def chain_view(statuses: dict[str, str]) -> PlanView:
    names = list(statuses)
    return PlanView(
        "f",
        tuple(
            StateView(name, (names[i - 1],) if i else (), statuses[name])
            for i, name in enumerate(names)
        ),
    )


@pytest.mark.parametrize("use_dot", [None, False], ids=["dot", "builtin"])
def test_the_live_layout_carries_every_mark_and_its_id(use_dot: bool | None) -> None:
    view = chain_view({"a": "running", "b": "pending"})
    root = ET.fromstring(render_plan_svg(view, use_dot=use_dot, live_id="nbflow-live-x").svg)
    assert root.get("id") == "nbflow-live-x"
    node = next(g for g in root.iter(f"{SVG}g") if g.get("data-state") == "a")
    marks = [t for t in node.iter(f"{SVG}tspan") if "nbflow-mark" in (t.get("class") or "")]
    shown = [t.get("class") for t in marks if t.get("style") != "display:none"]
    assert len(marks) == 10  # one per status
    assert shown == ["nbflow-mark nbflow-mark-running"]
    assert "".join(node.find(f"{SVG}text").itertext()).endswith("a")  # type: ignore[union-attr]


def test_the_style_sheet_restyles_only_changed_nodes() -> None:
    picture = LivePicture(chain_view({"a": "running", "b": "pending"}), ("a", "b"), "nbflow-x")
    assert picture.style({"a": "running", "b": "pending"}) == ""
    css = picture.style({"a": "completed", "b": "running"})
    assert '#nbflow-x :is([data-state="a"])' in css
    assert '#nbflow-x :is([data-state="b"])' in css
    assert ".nbflow-mark.nbflow-mark-completed{display:inline!important}" in css
    assert "#7fcfb2" in css  # the completed fill
    back = picture.style({"a": "pending", "b": "pending"})
    assert "stroke-dasharray:4 3" in back  # drawn running, pending again: dashed


def test_names_cannot_escape_the_style_sheet() -> None:
    hostile = 'x"]{}</style><script>alert(1)</script>'
    quoted = css_string(hostile)
    assert quoted.startswith('"')
    assert quoted.endswith('"')
    assert '"' not in quoted[1:-1]
    assert "<" not in quoted
    assert "{" not in quoted
