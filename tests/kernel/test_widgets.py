"""Widgets in a real kernel, without a browser: buttons are clicked from kernel code."""

from __future__ import annotations

from pathlib import Path

from conftest import KernelFactory
from kernel_harness import hang_unless, logged, state_cell

PRESENTER = "__nbflow__.session.presenter"
WAIT_FOR_BUTTONS = f"import asyncio\nawait asyncio.gather(*{PRESENTER}.tasks)"


def crashed_run(kernels: KernelFactory, tmp_path: Path) -> tuple[Path, Path]:
    """Run s1, then kill the kernel inside s2; returns the log and the release flag."""
    log, flag = tmp_path / "states.log", tmp_path / "released"
    first = kernels()
    first.ok("%load_ext nbflow")
    first.ok(state_cell("s1", log, "a = 1"))
    first.submit(state_cell("s2", log, hang_unless(flag) + "\nb = a + 1", "--after s1"))
    first.wait_for_file_text(log, "s2")
    first.kill()
    flag.touch()
    return log, flag


def test_banner_is_a_widget_with_text_fallback_and_its_resume_button_resumes(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log, _ = crashed_run(kernels, tmp_path)
    kernel = kernels()
    loaded = kernel.ok("%load_ext nbflow")
    assert "was interrupted in state 's2'" in loaded.text  # text/plain fallback
    assert kernel.ok(f"print(type({PRESENTER}).__name__)").stdout.strip() == "WidgetPresenter"
    buttons = kernel.ok(f"print(sorted({PRESENTER}.buttons({PRESENTER}.last_banner)))")
    assert buttons.stdout.strip() == "['Dismiss', 'Restore variables', 'Resume']"
    kernel.ok(f"{PRESENTER}.buttons({PRESENTER}.last_banner)['Resume'].click()")
    kernel.ok(WAIT_FOR_BUTTONS)
    assert kernel.ok("print(a, b)").stdout.split() == ["1", "2"]
    assert logged(log) == ["s1", "s2", "s2"]
    assert "completed" in kernel.ok("%flow status").text


def test_history_resume_and_restore_buttons(kernels: KernelFactory, tmp_path: Path) -> None:
    log, _ = crashed_run(kernels, tmp_path)
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow runs")
    kernel.ok(f"{PRESENTER}.buttons({PRESENTER}.last_runs)['Resume'].click()")
    kernel.ok(WAIT_FOR_BUTTONS)
    assert kernel.ok("print(b)").stdout.strip() == "2"

    fresh = kernels()
    fresh.ok("%load_ext nbflow")
    fresh.ok("%flow runs")
    # The first row is the newest run (the resumed one): restore its last checkpoint.
    fresh.ok(f"{PRESENTER}.buttons({PRESENTER}.last_runs)['Restore'].click()")
    fresh.ok(WAIT_FOR_BUTTONS)
    assert fresh.ok("print(a, b)").stdout.split() == ["1", "2"]
    assert logged(log) == ["s1", "s2", "s2"]  # restoring ran nothing


def test_flow_run_draws_a_live_dag_and_a_progress_bar(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    kernel.ok("%%state a\nx = 1")
    kernel.ok("%%state b --after a\ny = x + 1")
    kernel.ok("%%state c --after a\nz = x + 2")
    ran = kernel.ok("%flow run")
    assert "running 3 states" in ran.text
    updates = int(kernel.ok(f"print({PRESENTER}.live_display.messages)").stdout)
    assert updates >= 3  # the header and the picture, then the end
    last = kernel.ok(f"print({PRESENTER}.live_display.last_svg.count('data-status=\"completed\"'))")
    assert int(last.stdout) == 3  # the end of the run is always drawn
    shown = kernel.ok("%flow show")
    assert shown.text.count("completed") >= 3


def test_pictures_are_svg_and_html_that_need_no_kernel(kernels: KernelFactory) -> None:
    """The DAG, the timeline and the finished live DAG are displayed as image/svg+xml and
    text/html (no widget model), so a saved notebook shows them without a kernel."""
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    kernel.ok("%%state a\nx = 1")
    kernel.ok("%%state b --after a\ny = x + 1")
    for line in ("%flow run", "%flow show", "%flow timeline"):
        bundles = kernel.displays(line)
        pictures = [b for b in bundles if "image/svg+xml" in b]
        assert pictures, f"{line}: {[sorted(b) for b in bundles]}"
        final = pictures[-1]
        assert "application/vnd.jupyter.widget-view+json" not in final
        assert final["image/svg+xml"].lstrip().startswith("<svg")
        assert "<svg" in final["text/html"]
    run_bundles = kernel.displays("%flow run --fresh --no-cache")
    updates = [b for b in run_bundles if "image/svg+xml" in b]
    assert updates[-1]["image/svg+xml"].count('data-status="completed"') == 2, "final picture"
    assert "completed" in updates[-1]["text/html"]
