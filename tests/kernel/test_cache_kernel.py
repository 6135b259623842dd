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


def text_kernel(kernels: KernelFactory, *, declare: bool = False) -> Kernel:
    """A kernel with nbflow loaded (text output) and the notebook's helpers defined."""
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    if declare:
        kernel.ok("%flow mode declare")
    kernel.ok(SETUP)
    return kernel


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
    kernel = text_kernel(kernels)
    cell = state("dynamic", "value = eval('1 + 1')")
    first = kernel.ok(cell)
    assert "dynamic is not cached: it uses eval()" in first.text
    second = kernel.ok(cell)
    assert "is not cached" not in second.text  # said once
    assert logged(log) == ["dynamic", "dynamic"]


def shown(kernel: Kernel) -> dict[str, str]:
    """``%flow show`` as text: each state's status, with the reason it is stale."""
    lines = kernel.ok("%flow show").text.splitlines()
    found = {}
    for line in lines[1:]:
        words = line.split()
        if len(words) >= 3:
            found[words[1]] = " ".join(words[2:])
    return found


def test_stale_states_are_shown_with_their_reason_and_a_run_makes_them_fresh(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log = tmp_path / "states.log"
    (tmp_path / "data.csv").write_text("1,2,3\n")
    kernel = kernels(NBFLOW_TEXT="1")
    cells = [
        *six_states(),
        state("extra", "size = os.path.getsize('data.csv')", "", "--inputs data.csv"),
    ]
    declare(kernel, cells)
    kernel.ok("%flow run")
    status = shown(kernel)
    assert all(s.startswith("completed") for s in status.values()), status

    kernel.ok(state("clean", "cleaned = [r for r in rows if r % 3 == 0]", "load"))  # an edit
    status = shown(kernel)
    assert status["load"].startswith("completed")
    assert status["counts"].startswith("completed")
    assert status["clean"].startswith("stale")
    assert "its code changed" in status["clean"]
    assert "upstream clean is stale" in status["features"]
    assert "upstream features is stale" in status["train"]
    assert status["report"].startswith("stale")
    assert status["extra"].startswith("completed")
    count = len(logged(log))
    kernel.ok("%flow run")
    assert sorted(ran(log, count)) == ["clean", "features", "report", "train"]
    status = shown(kernel)
    assert not any(s.startswith("stale") for s in status.values()), status

    kernel.ok("def scale(v):\n    return v * factor * 10\n")  # a helper two calls deep
    kernel.ok("import time; time.sleep(0.01)")
    (tmp_path / "data.csv").write_text("1,2,3,4\n")  # and an input file
    status = shown(kernel)
    assert "a function, class or module it uses changed" in status["features"]
    assert "upstream features is stale" in status["train"]
    assert "its --inputs files changed" in status["extra"]
    assert not status["clean"].startswith("stale")
    assert not status["counts"].startswith("stale")
    count = len(logged(log))
    kernel.ok("%flow run")
    assert sorted(ran(log, count)) == ["extra", "features", "report", "train"]
    status = shown(kernel)
    assert not any(s.startswith("stale") for s in status.values()), status
    again = kernel.ok("%flow run")
    assert again.text.count("cached from run") == 7
    status = shown(kernel)
    assert all(s.startswith("cached") for s in status.values()), status


def fake_distribution(site: Path, version: str) -> None:
    """``fakedist`` (module ``fakemod``) at ``version``, installed into ``site``."""
    for old in site.glob("fakedist-*.dist-info"):
        for item in old.iterdir():
            item.unlink()
        old.rmdir()
    (site / "fakemod").mkdir(parents=True, exist_ok=True)
    (site / "fakemod" / "__init__.py").write_text("SCALE = 3\n")
    info = site / f"fakedist-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakedist\nVersion: {version}\n")
    (info / "top_level.txt").write_text("fakemod\n")


def test_a_new_version_of_a_distribution_executes_the_states_that_use_it(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log = tmp_path / "states.log"
    site = tmp_path / "site"
    fake_distribution(site, "1.0")
    cells = [
        state("base", "numbers = [1, 2, 3]"),
        state("scaled", "import fakemod\nscaled = [n * fakemod.SCALE for n in numbers]", "base"),
        state("plain", "plain = sum(numbers)", "base"),
        state("total", "total = sum(scaled) + plain", "scaled,plain"),
    ]
    for version, expected in (("1.0", ["base", "scaled", "plain", "total"]), ("1.0", [])):
        kernel = kernels(NBFLOW_TEXT="1", PYTHONPATH=str(site))
        count = len(logged(log))
        declare(kernel, cells)
        kernel.ok("%flow run")
        assert ran(log, count) == expected, version
        kernel.close()
    fake_distribution(site, "2.0")  # an upgrade: the same code, another version
    kernel = kernels(NBFLOW_TEXT="1", PYTHONPATH=str(site))
    count = len(logged(log))
    declare(kernel, cells)
    assert shown(kernel)["scaled"].startswith("stale")
    assert shown(kernel)["plain"].startswith("cached")
    kernel.ok("%flow run")
    # scaled runs again; its result is the same, so total, which reads it, is served.
    assert ran(log, count) == ["scaled"]
    assert kernel.ok("print(total)").stdout.strip() == "24"


def test_gc_keeps_what_the_cache_reuses_and_keep_evicts_the_least_recently_used(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log = tmp_path / "states.log"
    kernel = text_kernel(kernels, declare=True)

    def version(value: int) -> str:
        code = (
            f"blob = bytes([{value}]) * 400_000\n"
            f"open('out.txt', 'w').write('{value}')\nlabel = {value}"
        )
        return state("big", code, options="--outputs out.txt")

    for value in (1, 2, 3):
        kernel.ok(version(value))
        kernel.ok("%flow run")
    assert logged(log) == ["big", "big", "big"]
    plain = kernel.ok("%flow gc").text
    assert "removed" in plain
    assert "evicted" not in plain
    (tmp_path / "out.txt").unlink()
    kernel.ok(version(1))
    kernel.ok("%flow run")  # computed two runs ago: served, its file put back
    assert logged(log) == ["big", "big", "big"]
    assert (tmp_path / "out.txt").read_text() == "1"
    assert kernel.ok("print(label, len(blob))").stdout.split() == ["1", "400000"]

    bad = kernel.run("%flow gc --keep lots")
    assert bad.status == "error"
    assert "UsageError: %flow gc --keep: 'lots' is not a size" in bad.text
    dry = kernel.ok("%flow gc --keep 100kB --dry-run").text
    assert "would evict 1 cache entry, 2 kept" in dry
    kept = kernel.ok("%flow gc --keep 100kB").text
    # The entry of 2 needs 400 kB that no newest run holds: evicted. The entries of 1
    # (the newest run's) and of 3 (whose bytes the newest run's start holds) need ~nothing.
    assert "evicted 1 cache entry, 2 kept" in kept
    kernel.ok(version(2))
    kernel.ok("%flow run")  # its entry was evicted: computed again
    assert logged(log) == ["big", "big", "big", "big"]
    for value in (3, 1):
        kernel.ok(version(value))
        kernel.ok("%flow run")  # kept entries still serve
        assert logged(log) == ["big", "big", "big", "big"]
        assert kernel.ok("print(label)").stdout.strip() == str(value)
