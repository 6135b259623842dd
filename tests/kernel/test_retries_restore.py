"""Retries, failures, restore and always-run states in real kernels."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import KernelFactory

FLAKY = """%%state fetch --retries 2 --backoff fixed:100ms
open({log!r}, 'a').write('try\\n')
tries = len(open({log!r}).read().split())
if tries <= {failures}:
    raise ConnectionError(f'flaky {{tries}}')
payload = tries
"""


def test_state_that_fails_twice_succeeds_on_its_third_attempt(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log = tmp_path / "tries.log"
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    started = time.monotonic()
    result = kernel.ok(FLAKY.format(log=str(log), failures=2))
    assert time.monotonic() - started >= 0.2  # two 100 ms waits
    assert "retrying in 100 ms" in result.text
    assert kernel.ok("print(payload)").stdout.strip() == "3"
    timeline = kernel.ok("%flow timeline").text
    assert timeline.count("failed") == 2
    assert timeline.count("backoff") == 2
    assert "completed" in timeline


def test_state_out_of_retries_fails_the_run_and_resume_does_not_loop(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log = tmp_path / "tries.log"
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    failed = kernel.run(FLAKY.format(log=str(log), failures=99))
    assert failed.status == "error"
    assert "ConnectionError: flaky 3" in failed.traceback  # the traceback is shown
    assert "line 5" in failed.traceback  # pointing at the cell's own line
    assert "state 'fetch' failed" in failed.text
    assert "failed" in kernel.ok("%flow runs").text
    resumed = kernel.ok("%flow resume")
    assert "already ended failed at state 'fetch'" in resumed.text
    assert "ConnectionError: flaky 3" in resumed.text
    again = kernel.ok("%flow resume")  # asking again does not loop or retry
    assert "already ended failed" in again.text
    assert log.read_text().split() == ["try"] * 3


def test_timeout_fails_the_attempt_as_retryable(kernels: KernelFactory) -> None:
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    started = time.monotonic()
    result = kernel.run("%%state slow --timeout 1s --retries 1\nimport time\ntime.sleep(30)")
    took = time.monotonic() - started
    assert result.status == "error"
    assert 2 <= took < 15  # two attempts of about a second each
    assert "exceeded its time limit" in result.text
    assert kernel.ok("%flow timeline").text.count("failed") == 2


def test_restore_in_a_fresh_kernel_reruns_the_always_run_connection(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    log = tmp_path / "states.log"
    first = kernels()
    first.ok("%load_ext nbflow")
    first.ok(
        "%%state connect --always-run\n"
        f"open({str(log)!r}, 'a').write('connect\\n')\n"
        "import sqlite3\nconn = sqlite3.connect(':memory:')"
    )
    first.ok("%%state query --after connect\nanswer = conn.execute('select 41 + 1').fetchone()[0]")
    first.ok("%%state later --after query\nanswer = 0")
    first.close()

    second = kernels()
    second.ok("%load_ext nbflow")
    restored = second.ok("%flow restore query")
    assert "as they were after query" in restored.text
    assert "re-running (--always-run)" in restored.text
    assert second.ok("print(answer)").stdout.strip() == "42"
    assert second.ok("print(conn.execute('select 7').fetchone()[0])").stdout.strip() == "7"
    assert log.read_text().split() == ["connect", "connect"]
    # restored states count as done: a cell after them runs in run mode
    second.ok("%%state again --after query\ndouble = answer * 2")
    assert second.ok("print(double)").stdout.strip() == "84"
