"""Disk faults: EIO at every write point, and a real full disk (a tmpfs this test mounts).

Each failure is one clear line naming what could not be saved; no file under a final name
is partial; everything stored before stays readable, and the run resumes once the fault
is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbflow import Flow
from nbflow.errors import NbflowError
from nbflow.hashing import content_id
from nbflow.snapshot import NamespaceCodec
from nbflow.store import faults

BIG = 300_000  # bytes: stored as a file, not in the database


def namespace_flow(home: Path, name: str = "faults") -> Flow:
    return Flow(name, home=home, codec=lambda artifacts: NamespaceCodec(artifacts))


def intact_files(home: Path) -> None:
    """Every artifact file hashes to its name, and no temp file is left behind."""
    for path in (home / "objects").rglob("*"):
        if path.is_file():
            assert content_id(path.read_bytes()) == f"blake3:{path.parent.name}{path.name}"
    assert list((home / "tmp").iterdir()) == []


@pytest.fixture(autouse=True)
def _disarm() -> Iterator[None]:
    yield
    faults.disarm_all()


def declare(flow: Flow, seed: int) -> None:
    def load(ctx: dict[str, Any]) -> dict[str, Any]:
        return {**ctx, "blob": os.urandom(BIG), "rows": list(range(seed, seed + 50))}

    def total(ctx: dict[str, Any]) -> dict[str, Any]:
        return {**ctx, "total": sum(ctx["rows"])}

    flow.declare("load", load, source=f"load {seed}")
    flow.declare("total", total, after=["load"], source="total")


@pytest.mark.parametrize(
    "point", ["artifact.write", "artifact.fsync", "artifact.rename", "artifact.dirsync"]
)
def test_eio_while_saving_a_checkpoint_names_the_variable_and_loses_nothing(
    tmp_path: Path, point: str
) -> None:
    home = tmp_path / ".nbflow"
    with namespace_flow(home) as flow:
        declare(flow, 0)
        first = flow.run()
        assert first.phase.value == "completed"
        declare(flow, 100)
        faults.arm(point, "eio")
        with pytest.raises(NbflowError) as caught:
            flow.run()
        error = caught.value
        assert error.code == "artifact_write_failed"
        assert "\n" not in str(error)
        if point != "artifact.dirsync":  # a folder's sync is not one variable's
            assert "could not save the variable 'blob' (300.0 kB)" in error.message
        assert "Input/output error" in error.message
        intact_files(home)
        assert flow.restore("total", first.run_id)["total"] == sum(range(50))
        resumed = flow.resume()  # the fault is gone: the cut-off state runs again
        assert resumed.phase.value == "completed"
        assert flow.restore("total", resumed.run_id)["total"] == sum(range(100, 150))
    intact_files(home)


def test_eio_at_the_event_commit_is_one_line_and_the_run_resumes(tmp_path: Path) -> None:
    home = tmp_path / ".nbflow"
    with namespace_flow(home) as flow:
        declare(flow, 0)

        armed: list[bool] = []

        def load(ctx: dict[str, Any]) -> dict[str, Any]:
            if not armed:  # the commit of the first attempt's checkpoint fails
                armed.append(True)
                faults.arm("event.commit", "eio")
            return {**ctx, "blob": os.urandom(BIG), "rows": list(range(50))}

        flow.declare("load", load, source="load 0")
        with pytest.raises(NbflowError) as caught:
            flow.run()
        assert caught.value.code == "store_write_failed"
        assert "Input/output error" in caught.value.message
        assert "\n" not in str(caught.value)
        (record,) = flow.runs()
        kinds = [e.event.kind for e in flow.home.events.read_range(record.run_id)]
        assert "state_completed" not in kinds  # load's checkpoint was not acknowledged
        resumed = flow.resume()
        assert resumed.phase.value == "completed"
        assert flow.restore("total", resumed.run_id)["total"] == sum(range(50))
    intact_files(home)


def test_eio_at_the_wal_checkpoint_keeps_every_commit(tmp_path: Path) -> None:
    home = tmp_path / ".nbflow"
    flow = namespace_flow(home)
    declare(flow, 0)
    result = flow.run()
    faults.arm("wal.checkpoint", "eio")
    with pytest.raises(NbflowError) as caught:
        flow.close()
    assert caught.value.code == "store_write_failed"
    assert "could not checkpoint" in caught.value.message
    with namespace_flow(home) as again:
        declare(again, 0)
        assert again.restore("total", result.run_id)["total"] == sum(range(50))


@contextlib.contextmanager
def small_filesystem(tmp_path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` mounted for the test (root only), unmounted after."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "small"
    point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_full_disk_is_one_line_and_everything_saved_before_resumes(tmp_path: Path) -> None:
    with small_filesystem(tmp_path, 8) as disk:
        home = disk / ".nbflow"
        with namespace_flow(home) as flow:

            def small(ctx: dict[str, Any]) -> dict[str, Any]:
                return {**ctx, "table": os.urandom(1_000_000)}

            def huge(ctx: dict[str, Any]) -> dict[str, Any]:
                return {**ctx, "matrix": os.urandom(12_000_000)}

            flow.declare("small", small, source="small")
            flow.declare("huge", huge, after=["small"], source="huge")
            with pytest.raises(NbflowError) as caught:
                flow.run()
            error = caught.value
            assert error.code == "disk_full"
            assert "could not save the variable 'matrix' (12.0 MB)" in error.message
            assert "\n" not in str(error)
            intact_files(home)
            (record,) = flow.runs()
            history = flow.engine.history(record.run_id)
            assert list(history.completed) == ["small"]
            assert len(flow.restore("small", record.run_id)["table"]) == 1_000_000
            # The same failure again, then a smaller state: still one clean line each.
            with pytest.raises(NbflowError) as again:
                flow.resume()
            assert again.value.code == "disk_full"

            def fits(ctx: dict[str, Any]) -> dict[str, Any]:
                return {**ctx, "matrix": os.urandom(2_000_000)}

            flow.declare("huge", fits, after=["small"], source="huge")  # same manifest
            assert flow.resume().phase.value == "completed"
            intact_files(home)


def test_a_full_disk_in_a_kernel_is_one_line_per_cell_and_the_kernel_goes_on(
    tmp_path: Path,
) -> None:
    from kernel_harness import Kernel

    with small_filesystem(tmp_path, 12) as disk:
        kernel = Kernel(tmp_path, NBFLOW_HOME=str(disk / ".nbflow"), NBFLOW_TEXT="1")
        try:
            kernel.ok("%load_ext nbflow")
            kernel.ok("%%state a\nimport numpy as np\nx = np.random.rand(500_000)")
            full = kernel.run("%%state b --after a\ny = np.random.rand(2_000_000)")
            assert full.status == "error"
            assert "[disk_full] could not save the variable 'y' (16.0 MB)" in full.text
            assert "Traceback" not in full.text
            again = kernel.run("%%state c --after a\nz = 1")  # y is still in the namespace
            assert "[disk_full] could not save the variable 'y' (16.0 MB)" in again.text
            assert "Traceback" not in again.text
            kernel.ok("del y")
            kernel.ok("%%state c --after a\nz = 1")
            kernel.ok("%flow restore a")
            assert kernel.ok("print(len(x), z)").stdout.split() == ["500000", "1"]
        finally:
            kernel.close()
