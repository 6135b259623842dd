"""The cache in the Python API: unchanged states are restored, not recomputed (DESIGN §3)."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nbflow import Flow


def executed(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


HELPERS = """
from pathlib import Path


def scale(value):
    return value * {factor}


def compute(name, value, log):
    with Path(log).open("a") as out:
        out.write(name + "\\n")
    return scale(value) + 1
"""


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A module of helper functions on disk, rewritable by the test."""
    folder = tmp_path / "code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))

    def write(factor: int) -> Any:
        (folder / "cachehelpers.py").write_text(textwrap.dedent(HELPERS.format(factor=factor)))
        sys.modules.pop("cachehelpers", None)
        importlib.invalidate_caches()
        return importlib.import_module("cachehelpers")

    yield write
    sys.modules.pop("cachehelpers", None)


def chain(flow: Flow, module: Any, names: tuple[str, ...] = ("a", "b", "c", "d")) -> None:
    for index, name in enumerate(names):
        # Bodies without closures: the cache follows what they read from their globals.
        namespace: dict[str, Any] = {"compute": module.compute}
        exec(
            f"def {name}(ctx):\n"
            f"    return {{**ctx, {name!r}: compute({name!r}, ctx.get('seed', 1), ctx['log'])}}\n",
            namespace,
        )
        body = namespace[name]
        body.__module__ = module.__name__
        flow.declare(name, body, after=[names[index - 1]] if index else [], source=f"{name} v1")


def test_an_unchanged_run_executes_nothing_and_ends_with_the_same_context(
    tmp_path: Path, helpers: Any
) -> None:
    log = tmp_path / "states.log"
    module = helpers(2)
    with Flow("cached", home=tmp_path / ".nbflow") as flow:
        chain(flow, module)
        first = flow.run({"log": str(log)})
        assert executed(log) == ["a", "b", "c", "d"]
        second = flow.run({"log": str(log)})
        assert second.phase.value == "completed"
        assert executed(log) == ["a", "b", "c", "d"]  # nothing ran again
        assert second.final_snapshot_id == first.final_snapshot_id
        cached = [
            e.event.state_id
            for e in flow.home.events.read_range(second.run_id)
            if e.event.kind == "state_cached"
        ]
        assert cached == ["a", "b", "c", "d"]
        third = flow.run({"log": str(log)}, cache=False)
        assert executed(log) == ["a", "b", "c", "d"] * 2
        assert third.final_snapshot_id == first.final_snapshot_id


def test_a_changed_helper_executes_the_states_that_use_it_and_changing_it_back_nothing(
    tmp_path: Path, helpers: Any
) -> None:
    log = tmp_path / "states.log"
    with Flow("helpers", home=tmp_path / ".nbflow") as flow:
        chain(flow, helpers(2))
        flow.run({"log": str(log)})
        chain(flow, helpers(3))  # scale() changed: every state calls it through compute()
        changed = flow.run({"log": str(log)})
        assert executed(log) == ["a", "b", "c", "d"] * 2
        assert flow.restore("d", changed.run_id)["d"] == 4
        chain(flow, helpers(2))  # back as it was: the first run's results are reused
        flow.run({"log": str(log)})
        assert executed(log) == ["a", "b", "c", "d"] * 2


def test_a_changed_context_or_parameter_executes_again(tmp_path: Path, helpers: Any) -> None:
    log = tmp_path / "states.log"
    with Flow("inputs", home=tmp_path / ".nbflow") as flow:
        chain(flow, helpers(2))
        flow.run({"log": str(log), "seed": 1})
        flow.run({"log": str(log), "seed": 5})
        assert executed(log) == ["a", "b", "c", "d"] * 2
        flow.run({"log": str(log), "seed": 5}, parameters={"region": "emea"})
        assert executed(log) == ["a", "b", "c", "d"] * 3
        flow.run({"log": str(log), "seed": 5}, parameters={"region": "emea"})
        assert executed(log) == ["a", "b", "c", "d"] * 3


def test_states_marked_not_to_be_cached_always_execute(tmp_path: Path, helpers: Any) -> None:
    log = tmp_path / "states.log"
    module = helpers(2)
    with Flow("marked", home=tmp_path / ".nbflow") as flow:
        chain(flow, module, ("a", "b"))
        spec = flow.plan.state("b")
        flow.declare("b", flow._bodies["b"], after=["a"], source=spec.source, cache=False)
        flow.run({"log": str(log)})
        flow.run({"log": str(log)})
        assert executed(log) == ["a", "b", "b"]
        keyed = [
            e.event
            for e in flow.home.events.read_range(flow.runs()[0].run_id)
            if e.event.kind == "state_keyed" and e.event.state_id == "b"
        ]
        assert keyed[0].key is None
        assert keyed[0].reason == "it is marked not to be cached"


def test_a_body_closing_over_a_mutable_value_is_never_cached(tmp_path: Path) -> None:
    seen: list[int] = []

    def body(ctx: dict[str, Any]) -> dict[str, Any]:
        seen.append(1)
        return {**ctx, "n": len(seen)}

    with Flow("closure", home=tmp_path / ".nbflow") as flow:
        flow.declare("a", body)
        flow.run()
        flow.run()
        assert seen == [1, 1]
