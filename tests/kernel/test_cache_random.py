"""Random plans, random edits, one real kernel: the cache against a recomputation.

Each example declares a random plan whose states combine their upstream values with
notebook helpers (one calls the other, and reads a global), a list changed in place by
plain cells, and an ``--inputs`` file. It then makes random edits (a state's code, a
helper, the helper's global, the list, the file) and runs the plan after each. The
kernel's values must always equal those of a plain recomputation of the same
definitions: a stale hit would show as a difference. A run after no edit executes
nothing. The examples share one history, so every hit is also checked across plans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from conftest import KernelFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_harness import Kernel, logged

OPS = ("plain", "h1", "h2", "items", "file")
"""How a state turns the sum of its upstream values (plus its constant) into its value."""


@dataclass
class World:
    """What the notebook defines, as the reference recomputes it."""

    k1: int = 2
    k2: int = 1
    h1_offset: int = 1
    items: list[int] = field(default_factory=lambda: [1, 2])
    file_value: int = 7

    def h1(self, x: int) -> int:
        return x * self.k1 + self.h1_offset

    def h2(self, x: int) -> int:
        return self.h1(x) - self.k2

    def apply(self, op: str, x: int) -> int:
        if op == "h1":
            return self.h1(x)
        if op == "h2":
            return self.h2(x)
        if op == "items":
            return x + len(self.items) * 10
        if op == "file":
            return x + self.file_value
        return x


@dataclass
class PlanState:
    name: str
    upstream: tuple[int, ...]
    op: str
    constant: int


def expression(op: str, inner: str) -> str:
    if op in ("h1", "h2"):
        return f"{op}({inner})"
    if op == "items":
        return f"{inner} + len(items) * 10"
    if op == "file":
        return f"{inner} + int(open('value.txt').read())"
    return inner


def cell(state: PlanState, states: list[PlanState]) -> str:
    after = ",".join(states[j].name for j in state.upstream)
    options = f" --after {after}" if after else ""
    if state.op == "file":
        options += " --inputs value.txt"
    total = " + ".join([*(f"v_{states[j].name}" for j in state.upstream), str(state.constant)])
    return (
        f"%%state {state.name}{options}\n"
        f"open('states.log', 'a').write('{state.name}\\n')\n"
        f"v_{state.name} = {expression(state.op, f'({total})')}"
    )


def reference(world: World, states: list[PlanState]) -> list[int]:
    values: list[int] = []
    for state in states:
        total = sum(values[j] for j in state.upstream) + state.constant
        values.append(world.apply(state.op, total))
    return values


def define(kernel: Kernel, world: World, folder: Path) -> None:
    kernel.ok(
        f"K1 = {world.k1}\nK2 = {world.k2}\n"
        f"def h1(x):\n    return x * K1 + {world.h1_offset}\n"
        "def h2(x):\n    return h1(x) - K2\n"
    )
    (folder / "value.txt").write_text(str(world.file_value))


def run_and_compare(kernel: Kernel, world: World, states: list[PlanState], log: Path) -> list[str]:
    before = len(logged(log))
    names = " ".join(s.name for s in states)
    kernel.ok(f"%flow run {names}")
    shown = kernel.ok(
        "import json as _json\nprint(_json.dumps(["
        + ", ".join(f"v_{s.name}" for s in states)
        + "]))"
    ).stdout
    assert json.loads(shown) == reference(world, states)
    return logged(log)[before:]


def test_random_plans_and_edits_never_get_a_stale_hit(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    log = tmp_path / "states.log"
    counter = iter(range(1_000_000))
    seen = {"executed after an edit": 0, "served after an edit": 0, "edits": 0}

    @settings(
        max_examples=20,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        example = next(counter)
        world = World(items=[1, 2])
        kernel.ok(f"items = {world.items!r}")
        define(kernel, world, tmp_path)
        size = data.draw(st.integers(2, 5), label="states")
        states: list[PlanState] = []
        for index in range(size):
            upstream = data.draw(
                st.sets(st.integers(0, index - 1), max_size=2) if index else st.just(set()),
                label="upstream",
            )
            states.append(
                PlanState(
                    f"e{example}_s{index}",
                    tuple(sorted(upstream)),
                    data.draw(st.sampled_from(OPS), label="op"),
                    data.draw(st.integers(0, 3), label="constant"),
                )
            )
        for state in states:
            kernel.ok(cell(state, states))
        assert sorted(run_and_compare(kernel, world, states, log)) == sorted(s.name for s in states)
        assert run_and_compare(kernel, world, states, log) == []  # unchanged: all cached
        for _ in range(data.draw(st.integers(1, 4), label="edits")):
            edit = data.draw(
                st.sampled_from(("code", "helper", "global", "items", "file", "none")),
                label="edit",
            )
            if edit == "code":
                target = data.draw(st.sampled_from(states), label="state")
                target.constant = data.draw(st.integers(0, 5), label="new constant")
                kernel.ok(cell(target, states))
            elif edit == "helper":
                world.h1_offset = data.draw(st.integers(0, 3), label="offset")
                define(kernel, world, tmp_path)
            elif edit == "global":
                world.k1 = data.draw(st.integers(1, 4), label="k1")
                kernel.ok(f"K1 = {world.k1}")
            elif edit == "items":
                world.items.append(data.draw(st.integers(0, 9), label="item"))
                kernel.ok(f"items.append({world.items[-1]})")
            elif edit == "file":
                world.file_value = data.draw(st.integers(0, 20), label="file value")
                (tmp_path / "value.txt").write_text(str(world.file_value))
            ran = run_and_compare(kernel, world, states, log)
            if edit == "none":
                assert ran == []
            seen["edits"] += 1
            seen["executed after an edit"] += len(ran)
            seen["served after an edit"] += len(states) - len(ran)

    check()
    # The examples exercised both sides: edits that executed states, and hits after edits.
    assert seen["edits"] >= 12, seen
    assert seen["executed after an edit"] > 0, seen
    assert seen["served after an edit"] > 0, seen
    print(seen)
