"""Damaged checkpoints are found before use; resume and restore fall back to the newest
intact one and say so, or refuse clearly (DESIGN §5)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import KernelFactory

from nbflow import Flow
from nbflow.errors import NbflowError
from nbflow.snapshot import NamespaceCodec

BIG = 200_000


def flip_a_byte(path: Path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


def slice_file(flow: Flow, snapshot_id: str, variable: str) -> Path:
    """The file holding ``variable``'s pickled bytes in snapshot ``snapshot_id``."""
    codec = flow.engine.codec
    assert isinstance(codec, NamespaceCodec)
    entry = codec.document(snapshot_id).variable(variable)
    assert entry is not None
    assert entry.pickle is not None
    path = flow.home.artifacts.path_of(entry.pickle)
    assert path.is_file()
    return path


def interrupted_chain(home: Path, log: list[str]) -> tuple[Flow, str]:
    """a, b completed; c interrupted in its first attempt."""
    flow = Flow("chain", home=home, codec=lambda artifacts: NamespaceCodec(artifacts))
    seen = {"c": 0}

    def a(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append("a")
        return {**ctx, "base": bytes(range(256)) * (BIG // 256)}

    def b(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append("b")
        return {**ctx, "left": os.urandom(BIG), "n": 2}

    def c(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append("c")
        seen["c"] += 1
        if seen["c"] == 1:
            raise KeyboardInterrupt
        return {**ctx, "total": ctx["n"] + len(ctx["left"])}

    flow.declare("a", a, source="a")
    flow.declare("b", b, after=["a"], source="b")
    flow.declare("c", c, after=["b"], source="c")
    with pytest.raises(KeyboardInterrupt):
        flow.run()
    (record,) = flow.runs()
    return flow, record.run_id


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path: Path) -> None:
    log: list[str] = []
    flow, run_id = interrupted_chain(tmp_path / ".nbflow", log)
    with flow:
        b_snapshot = flow.engine.history(run_id).completed["b"]
        flip_a_byte(slice_file(flow, b_snapshot, "left"))
        result = flow.resume(run_id)
        assert result.phase.value == "completed"
        assert log == ["a", "b", "c", "b", "c"]  # b again, from a's intact checkpoint
        stream = flow.home.events.read_range(run_id)
        (discarded,) = [e.event for e in stream if e.event.kind == "checkpoints_discarded"]
        assert discarded.states == ["b"]
        assert discarded.damaged_snapshot_id == b_snapshot
        assert "is damaged" in discarded.reason
        assert flow.restore("c", run_id)["total"] == 2 + BIG


def test_resume_falls_back_to_the_start_of_the_run(tmp_path: Path) -> None:
    log: list[str] = []
    flow, run_id = interrupted_chain(tmp_path / ".nbflow", log)
    with flow:
        history = flow.engine.history(run_id)
        flip_a_byte(slice_file(flow, history.completed["a"], "base"))  # a's and b's
        assert flow.resume(run_id).phase.value == "completed"
        assert log == ["a", "b", "c", "a", "b", "c"]
        bars = [
            (e.event.state_id, e.event.attempt)
            for e in flow.home.events.read_range(run_id)
            if e.event.kind == "state_entered"
        ]
        assert bars == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1)]


def test_resume_refuses_clearly_when_no_checkpoint_is_intact(tmp_path: Path) -> None:
    flow = Flow("start", home=tmp_path / ".nbflow", codec=lambda a: NamespaceCodec(a))
    calls: list[int] = []

    def work(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        raise KeyboardInterrupt

    flow.declare("work", work, source="work")
    with flow:
        with pytest.raises(KeyboardInterrupt):
            flow.run({"base": os.urandom(BIG)})
        (record,) = flow.runs()
        initial = flow.engine.history(record.run_id).started.initial_snapshot_id
        flip_a_byte(slice_file(flow, initial, "base"))
        head = flow.home.events.head_seq(record.run_id)
        with pytest.raises(NbflowError) as caught:
            flow.resume(record.run_id)
        assert caught.value.code == "artifact_corrupt"
        assert "no intact checkpoint to fall back to" in caught.value.message
        assert "--fresh" in (caught.value.hint or "")
        assert flow.home.events.head_seq(record.run_id) == head  # nothing was appended
        assert calls == [1]


def test_restore_skips_a_damaged_checkpoint_and_says_so(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    kernel.ok("%%state a\nimport numpy as np\nx = np.arange(100_000)")
    kernel.ok("%%state b --after a\ny = np.ones(100_000)")
    paths = kernel.ok(
        "s = __nbflow__.session\n"
        "run = s.home.events.runs()[0].run_id\n"
        "snap = s.engine.history(run).completed['b']\n"
        "entry = s.snapshots.document(snap).variable('y')\n"
        "print(s.home.artifacts.path_of(entry.buffers[0]))"
    )
    flip_a_byte(Path(paths.stdout.strip()))
    kernel.ok("del x, y")
    restored = kernel.ok("%flow restore")
    assert "the checkpoint after 'b'" in restored.text
    assert "is damaged, so it was not used" in restored.text
    assert "as they were after a" in restored.text
    assert kernel.ok("print(x[-1], 'y' in dir())").stdout.split() == ["99999", "False"]
    named = kernel.run("%flow restore b")
    assert named.status == "error"
    assert "[artifact_corrupt]" in named.text
    assert "variable 'y'" in named.text
