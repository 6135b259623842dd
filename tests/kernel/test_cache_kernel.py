"""The cache in real kernels: states whose code and inputs did not change are restored,
not executed (DESIGN §3 "Cache", §4 "Cache keys"). Execution is observed through a side
effect: each state appends its name to a file."""

from __future__ import annotations

from pathlib import Path

from conftest import KernelFactory
from kernel_harness import Kernel, logged

SETUP = (
    "import os\nlog = 'states.log'\nfactor = 2\nitems = [1, 2, 3]\n"
    "def scale(v):\n    return v * factor\n"
    "def helper(v):\n    return scale(v) + 1\n"
)


def state(name: str, code: str, after: str = "", options: str = "") -> str:
    upstream = f" --after {after}" if after else ""
    return f"%%state {name}{upstream} {options}\nopen(log, 'a').write('{name}\\n')\n{code}"


def six_states() -> list[str]:
    return [
        state("load", "rows = list(range(10))"),
        state("clean", "cleaned = [r for r in rows if r % 2 == 0]", "load"),
        state("features", "feats = [helper(r) for r in cleaned]", "clean"),
        state("counts", "n_items = len(items)", "load"),
        state("train", "model = sum(feats) + n_items", "features,counts"),
        state("report", "summary = f'model={model}'", "train"),
    ]


def declare(kernel: Kernel, cells: list[str]) -> None:
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    kernel.ok(SETUP)
    for cell in cells:
        kernel.ok(cell)


def ran(log: Path, before: int) -> list[str]:
    return logged(log)[before:]


def test_a_six_state_plan_run_twice_executes_nothing_the_second_time(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log = tmp_path / "states.log"
    first = kernels(NBFLOW_TEXT="1")
    declare(first, six_states())
    first.ok("%flow run")
    assert sorted(logged(log)) == sorted(["load", "clean", "features", "counts", "train", "report"])
    values = first.ok("print(model, summary)").stdout
    again = first.ok("%flow run")
    assert ran(log, 6) == []
    assert again.text.count("cached from run") == 6
    assert "saved; --no-cache to run it" in again.text
    first.close()

    fresh = kernels(NBFLOW_TEXT="1")  # a new kernel: the variables come from the cache
    declare(fresh, six_states())
    fresh.ok("%flow run")
    assert ran(log, 6) == []
    assert fresh.ok("print(model, summary)").stdout == values


def test_edits_execute_exactly_what_they_affect(kernels: KernelFactory, tmp_path: Path) -> None:
    log = tmp_path / "states.log"
    kernel = kernels(NBFLOW_TEXT="1")
    cells = six_states()
    declare(kernel, cells)
    kernel.ok("%flow run")
    count = len(logged(log))

    def run_and_see() -> list[str]:
        nonlocal count
        kernel.ok("%flow run")
        new = ran(log, count)
        count = len(logged(log))
        return new

    # A comment and some spaces: the same code.
    kernel.ok(cells[1].replace("cleaned = [", "# keep even rows\ncleaned  =  ["))
    assert run_and_see() == []
    # Another computation in clean: it and everything downstream of it.
    kernel.ok(cells[1].replace("% 2 == 0", "% 3 == 0"))
    assert run_and_see() == ["clean", "features", "train", "report"]
    # A helper, called through a second helper, changed in a plain cell.
    kernel.ok("def scale(v):\n    return v * factor * 10")
    assert run_and_see() == ["features", "train", "report"]
    kernel.ok("def scale(v):\n    return v * factor")  # back as it was: nothing runs
    assert run_and_see() == []
    # A plain-cell variable a helper reads.
    kernel.ok("factor = 3")
    assert run_and_see() == ["features", "train", "report"]
    # A list changed in place by a plain cell.
    kernel.ok("items.append(4)")
    assert run_and_see() == ["counts", "train", "report"]


def test_inputs_files_no_cache_always_run_and_invalidate(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log = tmp_path / "states.log"
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    cells = [
        state("read", "text = open('data.csv').read()", options="--inputs data.csv"),
        state("parse", "fields = text.split()", "read"),
        state("stamp", "import time\nstamped = time.time()", "parse", "--no-cache"),
        state("conn", "import sqlite3\ndb = sqlite3.connect(':memory:')", "parse", "--always-run"),
    ]
    kernel = kernels(NBFLOW_TEXT="1")
    declare(kernel, cells)
    kernel.ok("%flow run")
    assert logged(log) == ["read", "parse", "stamp", "conn"]
    kernel.ok("%flow run")
    assert ran(log, 4) == ["stamp", "conn"]  # marked states always execute
    (tmp_path / "data.csv").write_text("a,b\n3,4\n")  # same size, new content
    kernel.ok("%flow run")
    assert ran(log, 6) == ["read", "parse", "stamp", "conn"]
    kernel.ok("%flow run --no-cache")
    assert ran(log, 10) == ["read", "parse", "stamp", "conn"]
    shown = kernel.ok("%flow invalidate read --downstream")
    assert "read, parse" in shown.text
    kernel.ok("%flow run")
    assert ran(log, 14) == ["read", "parse", "stamp", "conn"]
    kernel.ok("%flow run")  # computed after the invalidation: reused again
    assert ran(log, 18) == ["stamp", "conn"]


def test_run_all_after_a_restart_of_an_unchanged_notebook_executes_no_state(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log = tmp_path / "states.log"
    cells = [
        SETUP,
        state("load", "rows = list(range(5))"),
        state("clean", "cleaned = [helper(r) for r in rows]", "load"),
        state("total", "total = sum(cleaned)", "clean"),
        state("label", "label = f'total={total}'", "total"),
    ]
    for _round in range(2):
        kernel = kernels(NBFLOW_TEXT="1")
        kernel.ok("%load_ext nbflow")
        for cell in cells:
            kernel.ok(cell)
        assert kernel.ok("print(label)").stdout.strip() == "total=25"
        kernel.close()
    assert logged(log) == ["load", "clean", "total", "label"]


def test_states_whose_reads_cannot_be_known_run_and_say_why_once(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log = tmp_path / "states.log"
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    kernel.ok(SETUP)
    cell = state("dynamic", "value = eval('1 + 1')")
    first = kernel.ok(cell)
    assert "dynamic is not cached: it uses eval()" in first.text
    second = kernel.ok(cell)
    assert "is not cached" not in second.text  # said once
    assert logged(log) == ["dynamic", "dynamic"]
