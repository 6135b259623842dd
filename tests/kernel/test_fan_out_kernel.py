"""``%flow run --parallel`` in real kernels: branches in worker processes, their outputs in
the running cell, ``--in-kernel``, conflicts, the stop button, and a SIGKILL of the kernel
while two branches run. The kernels and their workers are killed by pid at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import KernelFactory, _descendants
from kernel_harness import Kernel

from nbflow.engine.history import read_history
from nbflow.model.events import AttemptInterrupted, BranchAssigned, StateCompleted
from nbflow.store import Home

pytestmark = pytest.mark.slow


def declare_diamond(kernel: Kernel, folder: Path, hold: bool = False) -> None:
    """a; b and c after a (each logs, and with ``hold`` waits for the file ``go``); d."""
    log = str(folder / "log")
    kernel.ok("%flow mode declare")
    kernel.ok(f"%%state a\nimport os, time\nopen({log!r}, 'a').write('a\\n')\nx = 1")
    for name, value in (("b", "x + 1"), ("c", "x + 2")):
        wait = (
            f"open({str(folder / ('started' + name))!r}, 'w').close()\n"
            f"while not os.path.exists({str(folder / 'go')!r}):\n    time.sleep(0.05)\n"
            if hold
            else ""
        )
        kernel.ok(
            f"%%state {name} --after a\nopen({log!r}, 'a').write({name + chr(10)!r})\n{wait}"
            f"{name} = {value}\npid_{name} = os.getpid()\nprint('hello from', {name!r})"
        )
    kernel.ok(f"%%state d --after b,c\nopen({log!r}, 'a').write('d\\n')\nd = b * 10 + c")


def logged(folder: Path) -> list[str]:
    path = folder / "log"
    return path.read_text().split() if path.exists() else []


def wait_for(paths: list[Path], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"never appeared: {paths}"
        time.sleep(0.05)


def test_flow_run_parallel_runs_the_branches_in_workers(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    declare_diamond(kernel, tmp_path)
    kernel.ok("%%state here --after d --in-kernel\nhere = os.getpid()")
    run = kernel.ok("%flow run --parallel 2")
    assert "hello from b" in run.stdout
    assert "hello from c" in run.stdout
    shown = kernel.ok(
        "print(d, pid_b != pid_c, here == os.getpid(), os.getpid() in (pid_b, pid_c))"
    )
    assert shown.stdout.split() == ["23", "True", "True", "False"]
    timeline = kernel.ok("%flow timeline").stdout
    assert "on worker" in timeline, timeline
    with Home(tmp_path / ".nbflow") as home:
        (record, *_) = home.events.runs()
        stream = home.events.read_range(record.run_id)
        assigned = {e.event.state_id for e in stream if isinstance(e.event, BranchAssigned)}
        assert assigned == {"a", "b", "c", "d"}, "here ran in the kernel, the rest in workers"


def test_a_branch_conflict_is_refused_with_both_states_and_the_variable(
    kernels: KernelFactory,
) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    kernel.ok("%%state a\nlabel = 'a'")
    kernel.ok("%%state left --after a\nlabel = 'left'")
    kernel.ok("%%state right --after a\nlabel = 'right'")
    run = kernel.run("%flow run --parallel 2")
    assert run.status == "error"
    assert "states 'left' and 'right' can run at once" in run.text
    assert "variable 'label'" in run.text
    assert kernel.ok("print(label)").stdout.strip() == "a", "nothing of either was merged"


def test_bad_parallel_options_are_usage_errors(kernels: KernelFactory, tmp_path: Path) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    kernel.ok("%%state a\nx = 1")
    for line, expected in (
        ("%flow run --parallel 0", "--parallel: from 1 to 256"),
        ("%flow run --parallel two", "is not a whole number"),
        ("%flow run --dask tcp://127.0.0.1:9", "cannot be reached"),
    ):
        result = kernel.run(line)
        assert result.status == "error", line
        assert expected in result.text, result.text
    assert kernel.ok("print('x' in dir())").stdout.strip() == "False", "nothing ran"
    with Home(tmp_path / ".nbflow") as home:
        assert home.events.runs() == [], "no run was started"


def test_the_stop_button_stops_the_branches_and_the_run_resumes(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    declare_diamond(kernel, tmp_path, hold=True)
    cell = kernel.submit("%flow run --parallel 2")
    wait_for([tmp_path / "startedb", tmp_path / "startedc"])
    kernel.interrupt()
    stopped = kernel.collect(cell)
    assert stopped.status == "error"
    assert "interrupted" in stopped.text
    with Home(tmp_path / ".nbflow") as home:
        (record,) = home.events.runs()
        assert record.status == "running", "the run stays resumable"
        stream = home.events.read_range(record.run_id)
        cut = {e.event.state_id for e in stream if isinstance(e.event, AttemptInterrupted)}
        assert cut == {"b", "c"}
    (tmp_path / "go").touch()
    kernel.ok("%flow resume")
    assert kernel.ok("print(d)").stdout.strip() == "23"
    assert sorted(logged(tmp_path)) == ["a", "b", "b", "c", "c", "d"]


def test_resume_after_a_sigkill_of_the_kernel_while_two_branches_run(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    declare_diamond(kernel, tmp_path, hold=True)
    kernel.submit("%flow run --parallel 2")
    wait_for([tmp_path / "startedb", tmp_path / "startedc"])
    workers = _descendants(kernel.pid)
    kernel.kill()
    for pid in workers:  # the machine's crash takes the kernel's workers too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with Home(tmp_path / ".nbflow") as home:
        (record,) = home.events.runs()
        history = read_history(record.run_id, home.events.read_range(record.run_id))
        assert set(history.open_attempts) == {"b", "c"}
        assert list(history.completed) == ["a"]
    (tmp_path / "go").touch()
    again = kernels(NBFLOW_TEXT="1")
    again.ok("%load_ext nbflow")
    declare_diamond(again, tmp_path, hold=True)
    resumed = again.ok("%flow run --parallel 2")
    assert "resuming interrupted run" in resumed.text
    assert again.ok("print(d)").stdout.strip() == "23"
    assert sorted(logged(tmp_path)) == ["a", "b", "b", "c", "c", "d"]
    with Home(tmp_path / ".nbflow") as home:
        (record,) = home.events.runs()
        stream = home.events.read_range(record.run_id)
        done = [e.event.state_id for e in stream if isinstance(e.event, StateCompleted)]
        assert sorted(done) == ["a", "b", "c", "d"], "one completed attempt per state"


def test_flow_run_on_a_dask_scheduler_started_as_processes(
    kernels: KernelFactory, tmp_path: Path, scheduler: str
) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    declare_diamond(kernel, tmp_path)
    run = kernel.ok(f"%flow run --parallel 2 --dask {scheduler}")
    assert "hello from b" in run.stdout
    assert kernel.ok("print(d, pid_b != pid_c)").stdout.split() == ["23", "True"]
    assert "on tcp://127.0.0.1:" in kernel.ok("%flow timeline").stdout


def test_an_unchanged_parallel_run_executes_nothing_and_an_edit_what_it_affects(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    declare_diamond(kernel, tmp_path)
    kernel.ok("%flow run --parallel 2")
    assert sorted(logged(tmp_path)) == ["a", "b", "c", "d"]
    again = kernel.ok("%flow run --parallel 2")
    assert sorted(logged(tmp_path)) == ["a", "b", "c", "d"], "nothing ran again"
    assert again.text.count("cached from run") == 4, again.text
    log = str(tmp_path / "log")
    kernel.ok(f"%%state c --after a\nopen({log!r}, 'a').write('c\\n')\nc = 5\npid_c = os.getpid()")
    kernel.ok("%flow run --parallel 2")
    assert sorted(logged(tmp_path)) == ["a", "b", "c", "c", "d", "d"], "c and d ran"
    assert kernel.ok("print(d)").stdout.strip() == "25"
