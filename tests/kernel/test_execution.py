"""State code runs through IPython: magics, shell escapes, await, display, tracebacks."""

from __future__ import annotations

from conftest import KernelFactory


def test_state_code_runs_with_ipython_syntax_and_rich_display(kernels: KernelFactory) -> None:
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    result = kernel.ok(
        "%%state ipython_features\n"
        "import asyncio\n"
        "await asyncio.sleep(0.01)\n"
        "files = !echo from-the-shell\n"
        "%time total = sum(range(10))\n"
        "from IPython.display import HTML\n"
        "display(HTML('<b>shown</b>'))\n"
        "{'total': total, 'shell': files[0]}"
    )
    assert "Wall time" in result.text
    assert any("IPython.core.display.HTML" in r for r in result.results)
    assert "{'total': 45, 'shell': 'from-the-shell'}" in result.results
    assert kernel.ok("print(total, files[0])").stdout.split() == ["45", "from-the-shell"]


def test_traceback_points_at_the_cells_own_lines(kernels: KernelFactory) -> None:
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    failed = kernel.run("%%state broken\nx = 1\ny = 2\n1 / 0\nz = 3")
    assert failed.status == "error"
    assert "ZeroDivisionError" in failed.traceback
    assert "----> 4 1 / 0" in failed.traceback  # line 4 of the notebook cell
    assert "nbflow/engine" not in failed.traceback  # no frames from inside nbflow


def test_syntax_error_is_not_retried(kernels: KernelFactory) -> None:
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    failed = kernel.run("%%state typo --retries 3 --backoff fixed:1s\nx = (1,")
    assert failed.status == "error"
    assert "SyntaxError" in failed.text
    assert "retrying" not in failed.text
    assert kernel.ok("%flow timeline").text.count("failed") == 1


def test_fact_keeps_its_value_across_retries_in_the_kernel(kernels: KernelFactory) -> None:
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok(
        "%%state seeded --retries 1\n"
        "import nbflow, random\n"
        "seed = nbflow.fact('seed', lambda: random.randrange(10**9))\n"
        "seen = globals().setdefault('seen', [])\n"
        "seen.append(seed)\n"
        "if len(seen) == 1: raise RuntimeError('first try fails')"
    )
    first, second = kernel.ok("print(*seen)").stdout.split()
    assert first == second


def test_unload_removes_the_magics(kernels: KernelFactory) -> None:
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok("%unload_ext nbflow")
    gone = kernel.run("%flow status")
    assert gone.status == "error"
    assert "Line magic function `%flow` not found" in gone.text
