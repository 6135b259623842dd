"""The SVG pictures: the plan (Graphviz and built-in layouts) and the run timeline."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import stat
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from nbflow.ui import dag_svg
from nbflow.ui.colors import OUTCOME_COLORS, STATUS_COLORS
from nbflow.ui.dag_groups import FOLD_ABOVE, find_folds, group_status
from nbflow.ui.dag_svg import NO_DOT_HINT, render_plan_svg
from nbflow.ui.model import STATUSES, AttemptBar, PlanView, StateView
from nbflow.ui.timeline_svg import MIN_BAR_PX, render_timeline_svg

HAS_DOT = shutil.which("dot") is not None
ENGINES = [
    pytest.param(False, id="builtin"),
    pytest.param(
        True,
        id="dot",
        marks=pytest.mark.skipif(
            not HAS_DOT, reason="Graphviz's dot is not installed (apt-get install graphviz)"
        ),
    ),
]
HOSTILE_NAME = "x.<b>&\"c'-d"
HOSTILE_ERROR = 'ValueError: <script>alert("&")</script> \x1b[31mred\x1b[0m \x00\x07 end'


def classed(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if name in (e.get("class") or "").split()]


def fills(element: ET.Element) -> set[str]:
    return {e.get("fill", "").lower() for e in element.iter()} - {"", "none"}


def title_of(element: ET.Element) -> str:
    found = [e.text or "" for e in element.iter() if e.tag.endswith("}title")]
    return found[0] if found else ""


def sample_plan() -> PlanView:
    """A diamond with a long edge, every status once."""
    return PlanView(
        "demo.ipynb",
        (
            StateView("load", (), "completed", 0, 1200),
            StateView("lookup", (), "restored", 0, 30),
            StateView("clean", ("load",), "retrying", 1),
            StateView("features", ("clean", "lookup"), "failed", 2, 800, "KeyError: 'x'"),
            StateView("train.v2", ("features",), "interrupted", 0, 60_000),
            StateView("evaluate", ("train.v2",), "running"),
            StateView("report", ("evaluate", "load"), "pending"),
            StateView("lookup.cached", ("lookup",), "cached", 0, 2),
            StateView("summary", ("lookup.cached",), "stale", 0, 40, None, "its code changed"),
            StateView("plots", ("load",), "skipped"),
        ),
    )


def chain(n: int) -> PlanView:
    return PlanView(
        "chain",
        tuple(
            StateView(f"s{i}", (f"s{i - 1}",) if i else (), STATUSES[i % len(STATUSES)])
            for i in range(n)
        ),
    )


def fan_out(n: int) -> PlanView:
    leaves = tuple(StateView(f"leaf-{i}", ("root",), "pending") for i in range(n - 1))
    return PlanView("fan", (StateView("root", (), "completed"), *leaves))


def edge_count(view: PlanView) -> int:
    return sum(len(state.upstream) for state in view.states)


# --- colours --------------------------------------------------------------------------------


def relative_luminance(color: str) -> float:
    channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_every_status_and_outcome_has_its_own_colour() -> None:
    assert set(STATUS_COLORS) == set(STATUSES)
    assert set(OUTCOME_COLORS) == {
        "completed",
        "cached",
        "skipped",
        "failed",
        "interrupted",
        "running",
        "backoff",
    }
    assert len({c.fill for c in STATUS_COLORS.values()}) == len(STATUSES)
    assert len({c.fill for c in OUTCOME_COLORS.values()}) == len(OUTCOME_COLORS)
    for color in [*STATUS_COLORS.values(), *OUTCOME_COLORS.values()]:
        for value in (color.fill, color.stroke, color.text):
            assert re.fullmatch(r"#[0-9a-f]{6}", value)


def test_labels_on_every_fill_reach_wcag_aa_contrast() -> None:
    for status, color in STATUS_COLORS.items():
        light, dark = sorted(
            (relative_luminance(color.fill), relative_luminance(color.text)), reverse=True
        )
        assert (light + 0.05) / (dark + 0.05) >= 4.5, status


def test_outcomes_share_the_colours_of_the_matching_statuses() -> None:
    for outcome in ("completed", "cached", "failed", "interrupted", "running"):
        assert OUTCOME_COLORS[outcome] == STATUS_COLORS[outcome]
    assert OUTCOME_COLORS["backoff"] == STATUS_COLORS["retrying"]


# --- the plan -------------------------------------------------------------------------------


@pytest.mark.parametrize("use_dot", ENGINES)
def test_plan_has_one_coloured_node_per_state_and_one_edge_per_dependency(use_dot: bool) -> None:
    view = sample_plan()
    rendered = render_plan_svg(view, use_dot=use_dot)
    assert rendered.engine == ("dot" if use_dot else "builtin")
    root = ET.fromstring(rendered.svg)
    nodes = {n.get("data-state"): n for n in classed(root, "nbflow-state")}
    assert len(classed(root, "nbflow-state")) == len(nodes) == len(view.states)
    for state in view.states:
        assert nodes[state.state_id].get("data-status") == state.status
        assert STATUS_COLORS[state.status].fill in fills(nodes[state.state_id])
    edges = classed(root, "nbflow-edge")
    assert len(edges) == edge_count(view) == 10
    assert {(e.get("data-from"), e.get("data-to")) for e in edges} >= {("load", "report")}


@pytest.mark.parametrize("use_dot", ENGINES)
def test_hover_text_names_last_attempt_duration_and_error(use_dot: bool) -> None:
    root = ET.fromstring(render_plan_svg(sample_plan(), use_dot=use_dot).svg)
    by_name = {n.get("data-state"): n for n in classed(root, "nbflow-state")}
    hover = title_of(by_name["features"])
    assert hover.splitlines()[0] == "features"
    assert "status: failed" in hover
    assert "last attempt: #2" in hover
    assert "duration: 800 ms" in hover
    assert "error: KeyError: 'x'" in hover
    stale = title_of(by_name["summary"])
    assert "status: stale" in stale
    assert "stale: its code changed" in stale


@pytest.mark.parametrize("use_dot", ENGINES)
def test_plan_legend_lists_every_status(use_dot: bool) -> None:
    root = ET.fromstring(render_plan_svg(sample_plan(), use_dot=use_dot).svg)
    [legend] = classed(root, "nbflow-legend")
    text = " ".join(e.text or "" for e in legend.iter())
    for status in STATUSES:
        assert f" {status} 1" in text
        assert STATUS_COLORS[status].fill in fills(legend)


@pytest.mark.skipif(
    not HAS_DOT, reason="Graphviz's dot is not installed (apt-get install graphviz)"
)
def test_dot_is_used_whenever_it_is_on_path() -> None:
    rendered = render_plan_svg(sample_plan())
    assert rendered.engine == "dot"
    assert rendered.hint is None
    assert ET.fromstring(rendered.svg).get("data-engine") == "dot"


def test_builtin_layout_when_asked_gives_the_install_hint() -> None:
    rendered = render_plan_svg(sample_plan(), use_dot=False)
    assert (rendered.engine, rendered.hint) == ("builtin", NO_DOT_HINT)
    ET.fromstring(rendered.svg)


def test_builtin_layout_when_dot_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no dot anywhere
    rendered = render_plan_svg(sample_plan())
    assert (rendered.engine, rendered.hint) == ("builtin", NO_DOT_HINT)
    root = ET.fromstring(rendered.svg)
    assert len(classed(root, "nbflow-state")) == len(sample_plan().states)


def fake_dot(folder: Path, script: str) -> None:
    """A ``dot`` that misbehaves: stands in for a broken Graphviz install, which CI lacks."""
    path = folder / "dot"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.skipif(os.name != "posix", reason="the stand-in dot is a shell script")
def test_a_failing_dot_falls_back_to_the_builtin_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dot(tmp_path, "echo 'Error: syntax error in line 1' >&2; exit 1")
    monkeypatch.setenv("PATH", str(tmp_path))
    rendered = render_plan_svg(sample_plan())
    assert rendered.engine == "builtin"
    assert rendered.hint is not None
    assert "dot failed (Error: syntax error in line 1)" in rendered.hint
    ET.fromstring(rendered.svg)


@pytest.mark.skipif(os.name != "posix", reason="the stand-in dot is a shell script")
def test_a_hanging_dot_is_abandoned_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dot(tmp_path, f"exec {shutil.which('sleep')} 30")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(dag_svg, "DOT_TIMEOUT_S", 0.3)
    rendered = render_plan_svg(sample_plan())
    assert rendered.engine == "builtin"
    assert rendered.hint is not None
    assert "TimeoutExpired" in rendered.hint


@pytest.mark.parametrize("use_dot", ENGINES)
def test_hostile_names_and_errors_are_escaped(use_dot: bool) -> None:
    view = PlanView(
        "<flow & co>",
        (
            StateView(HOSTILE_NAME, (), "failed", 0, 5, HOSTILE_ERROR),
            StateView("after", (HOSTILE_NAME,), "pending"),
        ),
    )
    svg = render_plan_svg(view, use_dot=use_dot).svg
    assert "<script>" not in svg
    root = ET.fromstring(svg)
    [node] = [n for n in classed(root, "nbflow-state") if n.get("data-status") == "failed"]
    assert node.get("data-state") == HOSTILE_NAME
    hover = title_of(node)
    assert '<script>alert("&")</script> red' in hover
    assert "\x1b" not in hover
    assert "\x00" not in hover
    [edge] = classed(root, "nbflow-edge")
    assert edge.get("data-from") == HOSTILE_NAME


def test_empty_plan_is_a_friendly_picture() -> None:
    rendered = render_plan_svg(PlanView("empty.ipynb", ()))
    root = ET.fromstring(rendered.svg)
    assert classed(root, "nbflow-state") == []
    assert "%%state" in "".join(root.itertext())


@pytest.mark.parametrize("use_dot", ENGINES)
def test_single_state(use_dot: bool) -> None:
    root = ET.fromstring(
        render_plan_svg(PlanView("f", (StateView("only", (), "completed"),)), use_dot=use_dot).svg
    )
    assert len(classed(root, "nbflow-state")) == 1
    assert classed(root, "nbflow-edge") == []


@pytest.mark.parametrize("use_dot", ENGINES)
@pytest.mark.parametrize("view", [chain(FOLD_ABOVE), fan_out(200)], ids=["chain", "fan-out"])
def test_many_states_a_box_each(view: PlanView, use_dot: bool) -> None:
    """A chain just small enough not to fold, and a fan-out (which has no chain)."""
    root = ET.fromstring(render_plan_svg(view, use_dot=use_dot).svg)
    assert len(classed(root, "nbflow-state")) == len(view.states)
    assert len(classed(root, "nbflow-edge")) == len(view.states) - 1
    # The long side runs down the page, where a notebook scrolls.
    assert float(root.get("width", "0")) < 1200 < float(root.get("height", "0"))


@pytest.mark.parametrize("use_dot", ENGINES)
def test_long_chains_of_a_large_plan_fold_into_one_node(use_dot: bool) -> None:
    """300 states: a root, ten chains of 29 months and a report. Each chain is one node
    that shows the status needing most attention, and says what it holds on hover."""
    states = [StateView("prepare", (), "completed")]
    for region in range(10):
        for month in range(29):
            status = "completed" if month < 10 else "pending"
            if region == 3 and month == 10:
                status = "failed"
            if region == 5 and month == 10:
                status = "running"
            up = f"r{region}.m{month - 1}" if month else "prepare"
            states.append(StateView(f"r{region}.m{month}", (up,), status))
    states.append(StateView("report", tuple(f"r{r}.m28" for r in range(10)), "pending"))
    view = PlanView("sales", tuple(states))
    root = ET.fromstring(render_plan_svg(view, use_dot=use_dot).svg)
    nodes = classed(root, "nbflow-state")
    assert len(nodes) == 12
    assert len(classed(root, "nbflow-edge")) == 20
    by_name = {node.get("data-state"): node for node in nodes}
    assert by_name["r3.m0 … r3.m28"].get("data-status") == "failed"
    assert by_name["r5.m0 … r5.m28"].get("data-status") == "running"
    assert by_name["r0.m0 … r0.m28"].get("data-status") == "pending"
    hover = by_name["r3.m0 … r3.m28"].findtext("{http://www.w3.org/2000/svg}title") or ""
    assert "29 states in a chain, r3.m0 to r3.m28" in hover
    assert "18 pending, 10 completed, 1 failed" in hover
    legend = "".join(classed(root, "nbflow-legend")[0].itertext())
    for counted in ("pending 189", "running 1", "completed 101", "failed 1"):
        assert counted in legend  # every state of every chain is counted
    assert root.get("aria-label", "").endswith(": 292 states")


def test_folds_follow_the_shape_only() -> None:
    view = chain(200)
    folds = find_folds(view)
    assert [(f.members[0], f.members[-1]) for f in folds] == [("s1", "s198")]
    assert find_folds(chain(FOLD_ABOVE)) == []
    restyled = PlanView("chain", tuple(replace(s, status="pending") for s in view.states))
    assert find_folds(restyled) == folds
    assert group_status(["completed", "cached"]) == "completed"
    assert group_status(["completed", "pending"]) == "pending"
    assert group_status(["completed", "running", "failed"]) == "failed"


def test_builtin_layout_keeps_states_apart() -> None:
    view = PlanView(
        "mesh",
        tuple(
            StateView(f"n{i}", tuple(f"n{j}" for j in range(max(0, i - 3), i)), "completed")
            for i in range(30)
        ),
    )
    root = ET.fromstring(render_plan_svg(view, use_dot=False).svg)
    boxes = []
    for node in classed(root, "nbflow-state"):
        dx, dy = (float(v) for v in re.findall(r"[-\d.]+", node.get("transform", "")))
        rect = next(e for e in node if e.tag.endswith("}rect"))
        boxes.append((dx, dy, dx + float(rect.get("width", 0)), dy + float(rect.get("height", 0))))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


# --- the timeline ---------------------------------------------------------------------------


def sample_bars() -> list[AttemptBar]:
    return [
        AttemptBar("load", 0, 0, 1200, "completed"),
        AttemptBar("fetch", 0, 1210, 900, "failed", "ConnectionError: reset"),
        AttemptBar("fetch", 0, 2110, 2000, "backoff"),
        AttemptBar("fetch", 1, 4120, 700, "completed"),
        AttemptBar("train", 0, 4830, 30_000, "interrupted"),
        AttemptBar("train", 1, 40_000, 20_000, "completed"),
        AttemptBar("load", 1, 60_010, 0, "running"),
    ]


def test_timeline_has_a_bar_per_attempt_and_per_backoff_wait() -> None:
    bars = sample_bars()
    svg = render_timeline_svg("run-1", bars, snapshot_sizes={("train", 1): 12_300_000})
    root = ET.fromstring(svg)
    attempts = classed(root, "nbflow-attempt")
    waits = classed(root, "nbflow-backoff")
    assert len(attempts) == sum(b.outcome != "backoff" for b in bars)
    assert len(waits) == sum(b.outcome == "backoff" for b in bars)
    expected = [(b.state_id, str(b.attempt), b.outcome) for b in bars if b.outcome != "backoff"]
    found = [(a.get("data-state"), a.get("data-attempt"), a.get("data-outcome")) for a in attempts]
    assert sorted(found, key=str) == sorted(expected, key=str)
    for attempt in attempts:
        assert attempt.get("fill") == OUTCOME_COLORS[attempt.get("data-outcome", "")].fill
    assert classed(root, "nbflow-interrupt-mark")
    assert [r.get("data-state") for r in classed(root, "nbflow-row")] == ["load", "fetch", "train"]


def test_timeline_hover_text() -> None:
    root = ET.fromstring(
        render_timeline_svg("r", sample_bars(), snapshot_sizes={("train", 1): 12_300_000})
    )
    hovers = {
        (a.get("data-state"), a.get("data-attempt")): title_of(a)
        for a in classed(root, "nbflow-attempt")
    }
    assert hovers["train", "1"].splitlines() == [
        "train · attempt #1",
        "outcome: completed",
        "start: +40.0 s",
        "duration: 20.0 s",
        "snapshot: 12.3 MB",
    ]
    assert "error: ConnectionError: reset" in hovers["fetch", "0"]
    assert "backoff before attempt #1" in title_of(classed(root, "nbflow-backoff")[0])


def test_timeline_escapes_hostile_text() -> None:
    bars = [AttemptBar(HOSTILE_NAME, 0, 0, 10, "failed", HOSTILE_ERROR)]
    svg = render_timeline_svg("<run & co>", bars)
    assert "<script>" not in svg
    [attempt] = classed(ET.fromstring(svg), "nbflow-attempt")
    assert attempt.get("data-state") == HOSTILE_NAME
    assert "</script> red" in title_of(attempt)


def test_empty_timeline_is_a_friendly_picture() -> None:
    root = ET.fromstring(render_timeline_svg("abc", []))
    assert classed(root, "nbflow-attempt") == []
    assert "No attempts" in "".join(root.itertext())


NICE_STEPS = {
    *(m * 10**k for k in range(3) for m in (1, 2, 5)),
    *(s * 1000 for s in (1, 2, 5, 10, 15, 30)),
    *(m * 60_000 for m in (1, 2, 5, 10, 15, 30)),
    *(h * 3_600_000 for h in (1, 2, 3, 6, 12)),
}
TICK_LABEL = re.compile(r"0|\d+ ms|\d+(\.\d+)? s|\d+ min( \d+ s)?|\d+ h( \d+ min)?")


@pytest.mark.parametrize(
    ("total_ms", "some_label"),
    [(50, "20 ms"), (90_000, "1 min"), (6 * 3_600_000, "3 h")],
    ids=["50ms", "90s", "6h"],
)
def test_time_axis_ticks_are_nice(total_ms: int, some_label: str) -> None:
    bars = [AttemptBar("a", 0, 0, total_ms // 3, "completed")]
    bars.append(AttemptBar("b", 0, total_ms - total_ms // 4, total_ms // 4, "completed"))
    root = ET.fromstring(render_timeline_svg("r", bars))
    [axis] = classed(root, "nbflow-axis")
    ticks = classed(axis, "nbflow-tick")
    offsets = [int(t.get("data-ms", "")) for t in ticks]
    labels = [t.text or "" for t in ticks]
    assert 3 <= len(ticks) < 15
    assert offsets[0] == 0
    assert offsets[-1] >= total_ms
    steps = {b - a for a, b in itertools.pairwise(offsets)}
    assert len(steps) == 1
    assert steps <= NICE_STEPS
    assert all(TICK_LABEL.fullmatch(label) for label in labels), labels
    assert some_label in labels


def bar_widths(svg: str) -> list[float]:
    return [float(a.get("width", 0)) for a in classed(ET.fromstring(svg), "nbflow-attempt")]


def test_short_attempts_stay_visible_in_a_six_hour_run() -> None:
    bars = [
        AttemptBar("setup", 0, 0, 0, "completed"),
        AttemptBar("poll", 0, 3 * 3_600_000, 120, "failed", "timeout"),
        AttemptBar("long", 0, 1000, 6 * 3_600_000 - 1000, "completed"),
    ]
    widths = bar_widths(render_timeline_svg("r", bars))
    assert min(widths) >= MIN_BAR_PX
    assert max(widths) > 500


def test_two_hundred_states_on_the_timeline() -> None:
    bars = [AttemptBar(f"state_{i:03d}", 0, i * 100_000, 90_000, "completed") for i in range(200)]
    root = ET.fromstring(render_timeline_svg("r", bars))
    assert len(classed(root, "nbflow-row")) == 200
    assert len(classed(root, "nbflow-attempt")) == 200
    assert classed(root, "nbflow-axis-bottom")  # a tall chart repeats its axis at the bottom
    assert float(root.get("height", "0")) < 200 * 20


def test_an_html_export_of_an_executed_example_notebook_holds_the_dag_as_svg(
    tmp_path: Path,
) -> None:
    """`jupyter nbconvert --to html` of the quick start as saved: its `%flow show` output
    is an SVG with one node per state, no kernel needed."""
    import subprocess
    import sys

    source = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
    shutil.copy(source, tmp_path / source.name)
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", source.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "quickstart.html").read_text()
    states = set(re.findall(r'class="node nbflow-state" data-state="([^"]+)"', page))
    assert states == {"qs_load", "qs_clean", "qs_features", "qs_train"}, states
    assert "Error displaying widget" not in page
