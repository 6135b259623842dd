"""Two kernels on one notebook: the run one drives is not offered to the other (DESIGN §3)."""

from __future__ import annotations

from pathlib import Path

from conftest import KernelFactory
from kernel_harness import hang_unless, logged, state_cell


def test_a_run_alive_in_another_kernel_is_shown_as_such_and_taken_over_once_it_dies(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log, flag = tmp_path / "states.log", tmp_path / "released"
    cells = [
        "%flow mode declare",
        state_cell("prep", log, "x = 1"),
        state_cell("work", log, hang_unless(flag) + "\ny = x + 1", "--after prep"),
    ]
    first = kernels()
    first.ok("%load_ext nbflow")
    for cell in cells:
        first.ok(cell)
    first.submit("%flow run")
    first.wait_for_file_text(log, "work")

    second = kernels()
    loaded = second.ok("%load_ext nbflow")
    assert "is running in state 'work' right now" in loaded.text
    assert "was interrupted" not in loaded.text
    assert f"It runs in process {first.pid} on host" in loaded.text
    assert "(notebook analysis.ipynb)" in loaded.text
    refused = second.run("%flow resume")
    assert refused.status == "error"
    assert "[run_in_progress]" in refused.text
    assert f"process {first.pid}" in refused.text
    for cell in cells:
        second.ok(cell)
    again = second.run("%flow run")  # the same manifest: it would resume that run
    assert again.status == "error"
    assert "[run_in_progress]" in again.text

    first.kill()
    flag.touch()
    resumed = second.ok("%flow resume")
    assert "resuming run" in resumed.text
    assert logged(log) == ["prep", "work", "work"]
    assert second.ok("print(y)").stdout.strip() == "2"
    events = second.ok(
        "s = __nbflow__.session\n"
        "print([e.event.kind for e in s.home.events.read_range(s.home.events.runs()[0].run_id)])"
    ).stdout
    assert "'lease_taken_over'" in events
