"""In run mode every ``%%state`` cell is a run of its own; ``%flow timeline`` without RUN
draws them all, on one axis: the session the user just worked through."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import KernelFactory


def test_the_session_timeline_shows_every_state_and_attempt_of_this_kernel(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    flaky = tmp_path / "failed-once"
    go = tmp_path / "go"
    kernel.ok("%%state a\nx = 1")
    kernel.ok(
        "%%state b --after a --retries 1 --backoff fixed:100ms\nimport os\n"
        f"if not os.path.exists({str(flaky)!r}):\n"
        f"    open({str(flaky)!r}, 'w').close()\n"
        "    raise ConnectionError('first call fails')\n"
        "y = x + 1"
    )
    started = tmp_path / "c-started"
    cell = kernel.submit(
        f"%%state c --after b\nimport os, time\nopen({str(started)!r}, 'w').close()\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.05)\nz = y + 1"
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, "c never started"
        time.sleep(0.05)
    kernel.interrupt()
    assert kernel.collect(cell).status == "error"
    go.touch()
    kernel.ok("%flow resume")
    kernel.ok("%%state d --after c\nw = z + 1")
    shown = kernel.ok("%flow timeline").stdout
    assert "timeline of this kernel (4 runs):" in shown, shown
    rows = [line.split() for line in shown.splitlines()[1:] if line.strip()]
    outcomes = {"completed", "failed", "backoff", "interrupted"}
    attempts = [(row[0], row[1], next(w for w in row if w in outcomes)) for row in rows]
    assert attempts == [
        ("a", "#0", "completed"),
        ("b", "#0", "failed"),
        ("b", "wait", "backoff"),
        ("b", "#1", "completed"),
        ("c", "#0", "interrupted"),
        ("c", "#1", "completed"),
        ("d", "#0", "completed"),
    ], shown
