"""In-process checks of the cache's parts: what code reads, helper identity, file digests
and their stat cache, key facets, and staleness."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nbflow.cache import KeyParts, Uncacheable, code_facts
from nbflow.cache.facets import uses_facet, without_data
from nbflow.engine.staleness import Completion, stale_states
from nbflow.kernel.views import attempt_bars, live_view
from nbflow.model.events import EventEnvelope, StateCached, StateCompleted, StateEntered
from nbflow.model.plan import Edge, Plan, StateSpec
from nbflow.store import Home


@pytest.mark.parametrize(
    ("code", "reads"),
    [
        ("data = load()\nresult = fit(data)", {"load", "fit"}),  # made, then used
        ("total += 1", {"total"}),  # an augmented assignment reads its target
        ("x = x + 1", {"x"}),
        ("if flag:\n    y = 1\nz = y", {"flag", "y"}),  # bound only maybe
        ("for i in range(3):\n    acc = i\nprint(acc)", {"range", "acc", "print", "i"}),
        ("import numpy as np\nnp.sum(q)", {"q"}),
        ("a, (b, *c) = t\nuse(a, b, c)", {"t", "use"}),
        ("def f():\n    return later\nlater = 1\nf()", {"later"}),  # the def reads it
        ("obj.attr = 1\nitems[0] = 2", {"obj", "items"}),
        ("x: int\nprint(x)", {"int", "print", "x"}),  # annotated, not assigned
        # pandas' query and eval read @names from the caller's variables
        ("part = df.query('region == @region and n > @low')", {"df", "region", "low"}),
    ],
)
def test_a_name_is_read_when_it_is_loaded_before_it_is_surely_bound(
    code: str, reads: set[str]
) -> None:
    assert set(code_facts(code).reads) == reads


def test_what_makes_reads_unknowable_is_named() -> None:
    assert code_facts("x = eval('1')").opaque == "eval()"
    assert code_facts("g = globals()").opaque == "globals()"
    assert code_facts("v = nbflow.fact('k', f)").opaque is not None
    assert code_facts("v = f(").opaque == "code that does not parse"


def helper_parts(namespace: dict[str, object], name: str) -> object:
    parts = KeyParts(namespace, lambda _name: "id")
    parts.read(name)
    return parts.parts


def test_a_helper_keys_by_its_compiled_code_not_its_formatting() -> None:
    first: dict[str, object] = {"__name__": "__main__"}
    second: dict[str, object] = {"__name__": "__main__"}
    changed: dict[str, object] = {"__name__": "__main__"}
    exec("def f(x):\n    return x + 1\n", first)
    exec("# a comment\n\ndef f(x):\n\n    return (x\n            + 1)  # same\n", second)
    exec("def f(x):\n    return x - 1\n", changed)
    assert helper_parts(first, "f") == helper_parts(second, "f")
    assert helper_parts(first, "f") != helper_parts(changed, "f")


def test_a_helper_that_calls_eval_or_nbflow_fact_is_not_keyed() -> None:
    import nbflow

    scope: dict[str, object] = {"__name__": "__main__", "nbflow": nbflow}
    exec("def f(x):\n    return eval(x)\n", scope)
    exec("def g():\n    return nbflow.fact('k', lambda: 1)\n", scope)
    with pytest.raises(Uncacheable, match="eval"):
        helper_parts(scope, "f")
    with pytest.raises(Uncacheable, match=r"nbflow\.fact"):
        helper_parts(scope, "g")


def test_facets_leave_the_data_out() -> None:
    parts = {
        "name:df": ["value", "blake3:aa"],
        "name:f": ["code", ["function", {"k": ["value", "x"]}]],
    }
    other = {
        "name:df": ["value", "blake3:bb"],
        "name:f": ["code", ["function", {"k": ["literal", "3"]}]],
    }
    assert without_data(parts) == without_data(other)
    assert uses_facet(parts) == uses_facet(other)
    assert uses_facet(parts) != uses_facet({**parts, "name:g": ["module", "numpy", "numpy==2"]})


def test_a_settled_file_is_not_read_again_and_a_fresh_one_always_is(tmp_path: Path) -> None:
    with Home(tmp_path / ".nbflow") as home:
        digests = home.file_digests
        settled = tmp_path / "big.bin"
        settled.write_bytes(b"x" * 1_000_000)
        past = time.time() - 60
        os.utime(settled, (past, past))
        first = digests.digest(settled)
        read = digests.hashed_bytes
        assert digests.digest(settled) == first
        assert digests.hashed_bytes == read  # the stat stood for the content
        fresh = tmp_path / "value.txt"
        fresh.write_text("7")
        seven = digests.digest(fresh)
        fresh.write_text("9")  # same size, maybe the same time tick
        assert digests.digest(fresh) != seven
        os.utime(fresh, (past, past))
        nine = digests.digest(fresh)
        fresh.write_text("5")
        os.utime(fresh, (past, past))  # same size and modification time; a new change time
        assert digests.digest(fresh) != nine


def done(at: int, *, cached: bool = False, **facets: str) -> Completion:
    return Completion("run", at, cached, facets)


def test_staleness_follows_facets_and_flows_downstream() -> None:
    order = [("a", ()), ("b", ("a",)), ("c", ("b",)), ("d", ())]
    last = {"a": done(1, code="1"), "b": done(2, code="2"), "c": done(3, code="3")}
    assert stale_states(order, last, {"a": {"code": "1"}, "b": {"code": "2"}}) == {}
    stale = stale_states(order, last, {"b": {"code": "changed"}})
    assert stale == {"b": "its code changed", "c": "upstream b is stale"}
    assert "d" not in stale  # never completed: pending, not stale
    rerun = {**last, "a": done(9, code="1")}  # a executed again after b completed
    assert stale_states(order, rerun, {})["b"] == "upstream a ran again since"
    served = {**last, "a": done(9, cached=True, code="1")}  # served: the same result
    assert stale_states(order, served, {}) == {}
    inputs = {**last, "c": done(3, code="3", inputs="old")}
    assert stale_states(order, inputs, {"c": {"code": "3", "inputs": "new"}}) == {
        "c": "its --inputs files changed"
    }


def envelopes(*events: object) -> list[EventEnvelope]:
    return [
        EventEnvelope(run_id="r", seq=i + 1, at_us=1_000_000 + i * 1000, event=e)
        for i, e in enumerate(events)
    ]


def test_a_served_attempt_is_a_cached_bar_and_a_stale_state_shows_until_the_run_reaches_it() -> (
    None
):
    base = "blake3:" + "0" * 64
    stream = envelopes(
        StateEntered(state_id="a", attempt=0, base_snapshot_id=base),
        StateCached(
            state_id="a", from_run="old", from_state="a", key="k", saved_ms=5, computed_us=1
        ),
        StateCompleted(state_id="a", context_snapshot_id=base),
    )
    [bar] = attempt_bars(stream)
    assert bar.outcome == "cached"
    plan = Plan(
        flow_id="f",
        states=(StateSpec(id="a"), StateSpec(id="b"), StateSpec(id="c")),
        edges=(Edge(upstream="a", downstream="b"), Edge(upstream="b", downstream="c")),
    )
    view, done, _ = live_view(plan, stream, stale={"a": "x", "b": "its code changed"})
    statuses = {s.state_id: (s.status, s.stale) for s in view.states}
    assert statuses == {
        "a": ("cached", None),  # reached: its outcome in this run
        "b": ("stale", "its code changed"),
        "c": ("pending", None),
    }
    assert done == 1
