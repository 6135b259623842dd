"""Crash and resume with real kernels killed by SIGKILL."""

from __future__ import annotations

from pathlib import Path

from conftest import KernelFactory
from kernel_harness import hang_unless, logged, state_cell


def test_run_mode_crash_then_resume_in_a_new_kernel(kernels: KernelFactory, tmp_path: Path) -> None:
    log, flag = tmp_path / "states.log", tmp_path / "released"
    cells = [
        state_cell("s1", log, "a = 1"),
        state_cell("s2", log, "b = a + 1", "--after s1"),
        state_cell("s3", log, hang_unless(flag) + "\nc = b + 1", "--after s2"),
        state_cell("s4", log, "d = c + 1", "--after s3"),
    ]
    first = kernels()
    first.ok("%load_ext nbflow")
    first.ok(cells[0])
    first.ok(cells[1])
    first.submit(cells[2])
    first.wait_for_file_text(log, "s3")
    first.kill()
    flag.touch()

    second = kernels()
    loaded = second.ok("%load_ext nbflow")
    assert "was interrupted in state 's3' at 20" in loaded.text
    assert "(2 of 3 states done)" in loaded.text
    resumed = second.ok("%flow resume")
    assert "resuming run" in resumed.text
    assert logged(log) == ["s1", "s2", "s3", "s3"]  # s1 and s2 did not run again
    assert second.ok("print(a, b, c)").stdout.split() == ["1", "2", "3"]
    second.ok(cells[3])
    assert logged(log) == ["s1", "s2", "s3", "s3", "s4"]
    assert second.ok("print(d)").stdout.strip() == "4"
    assert "interrupted" not in second.ok("%flow runs").text


def test_declare_mode_diamond_crash_in_a_branch_then_resume_from_manifest(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log, flag = tmp_path / "states.log", tmp_path / "released"
    first = kernels()
    first.ok("%load_ext nbflow")
    first.ok("%flow mode declare")
    declared = [
        state_cell("a", log, "base = 10"),
        state_cell("b", log, "left = base + 1", "--after a"),
        state_cell("c", log, hang_unless(flag) + "\nright = base + 2", "--after a"),
        state_cell("d", log, "total = left + right", "--after b,c"),
    ]
    for cell in declared:
        assert "declared state" in first.ok(cell).text
    assert logged(log) == []  # declare mode runs nothing
    first.submit("%flow run")
    first.wait_for_file_text(log, "c")
    first.kill()
    flag.touch()
    assert logged(log) == ["a", "b", "c"]

    second = kernels()  # no declaring cell is executed in this kernel
    assert "was interrupted in state 'c'" in second.ok("%load_ext nbflow").text
    second.ok("%flow resume")
    assert logged(log) == ["a", "b", "c", "c", "d"]
    assert second.ok("print(base, left, right, total)").stdout.split() == ["10", "11", "12", "23"]
    shown = second.ok("%flow show").text
    for state in ("a", "b", "c", "d"):
        assert f"✓ {state}" in shown


def test_interrupt_then_resume_completes_the_run(kernels: KernelFactory, tmp_path: Path) -> None:
    log, flag = tmp_path / "states.log", tmp_path / "released"
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok(state_cell("prep", log, "x = 5"))
    msg_id = kernel.submit(
        state_cell("work", log, hang_unless(flag) + "\ny = x * 2", "--after prep")
    )
    kernel.wait_for_file_text(log, "work")
    kernel.interrupt()
    interrupted = kernel.collect(msg_id, timeout=30)
    assert interrupted.status == "error"
    assert "KeyboardInterrupt" in interrupted.text
    assert "can be resumed with `%flow resume`" in interrupted.text
    assert "interrupted" in kernel.ok("%flow runs").text
    flag.touch()
    kernel.ok("%flow resume")
    assert kernel.ok("print(y)").stdout.strip() == "10"
    assert logged(log) == ["prep", "work", "work"]
    assert "completed" in kernel.ok("%flow status").text


def test_run_all_with_cells_queued_behind_a_state_completes_every_cell(
    kernels: KernelFactory,
) -> None:
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    ids = [
        kernel.submit("%%state q1\nimport asyncio\nawait asyncio.sleep(0.3)\nq = 1"),
        kernel.submit("r = q + 1"),
        kernel.submit("%%state q2 --after q1\ns = r + q"),
        kernel.submit("print('last', s)"),
    ]
    results = [kernel.collect(msg_id) for msg_id in ids]
    assert [r.status for r in results] == ["ok"] * 4
    assert results[-1].stdout.strip() == "last 3"
