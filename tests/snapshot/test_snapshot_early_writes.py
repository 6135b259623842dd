"""Big arrays start their writes before the stream reaches them, and still no buffer of a
variable that ends up withheld or skipped is ever stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nbflow.errors import StorageError
from nbflow.snapshot import NamespaceCodec, VariableStatus
from nbflow.snapshot.writer import SliceWriter
from nbflow.store import Home, faults

TOKEN = "ghp_" + "Zq7Rk2Lm9Xv4Tn8Bw1Yc6Hd3Fs5Gj0Pa" + "Nu1E"
ROWS = 2_100_000  # 16.8 MB of float64: above the early-start threshold


class Marker:
    """Records, on the thread that pickles, when the stream reaches it."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def __reduce__(self) -> tuple[Any, ...]:
        self.events.append("stream reaches the other variables")
        return (list, ())


class Flaky:
    """Pickles once, then refuses: alone it passes, in the stream it fails."""

    def __init__(self) -> None:
        self.calls = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> Flaky:  # pandas copies a frame's attrs
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        self.calls += 1
        if self.calls > 1:
            raise TypeError("it changed its mind")
        return (list, ())


def flaky_frame(seed: int) -> pd.DataFrame:
    """A frame above the early-start threshold that pickles alone but fails in the stream."""
    frame: pd.DataFrame = pd.DataFrame({"a": np.random.default_rng(seed).random(ROWS)})
    frame.attrs["flaky"] = Flaky()
    return frame


def spy_early(monkeypatch: pytest.MonkeyPatch, events: list[str]) -> None:
    start_early = SliceWriter.start_early

    def spied(self: SliceWriter, job: Any, name: str, size: int) -> None:
        events.append(f"early {name} {job.nbytes}")
        start_early(self, job, name, size)

    monkeypatch.setattr(SliceWriter, "start_early", spied)


def spy_gated(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
    """Records the variables whose buffers were written through a gate (started early)."""
    write_gated = SliceWriter._write_gated

    def spied(self: SliceWriter, job: Any, name: str, size: int, gate: Any) -> None:
        names.append(name)  # list.append is atomic: worker threads may call this at once
        write_gated(self, job, name, size, gate)

    monkeypatch.setattr(SliceWriter, "_write_gated", spied)


def spy_write_ahead(monkeypatch: pytest.MonkeyPatch, home: Home, sizes: list[int]) -> None:
    write_ahead = home.artifacts.write_ahead

    def spied(buffers: Any, size: int) -> Any:
        sizes.append(size)
        return write_ahead(buffers, size)

    monkeypatch.setattr(home.artifacts, "write_ahead", spied)


def stored_files(home: Home) -> list[Path]:
    return [p for p in home.root.rglob("*") if p.is_file() and p.suffix not in {".db", ".wal"}]


def temp_files(home: Home) -> list[Path]:
    tmp = home.root / "tmp"
    return list(tmp.iterdir()) if tmp.is_dir() else []


def test_big_arrays_start_writing_before_the_other_variables_are_pickled(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    sizes: list[int] = []
    gated: list[str] = []
    spy_early(monkeypatch, events)
    spy_write_ahead(monkeypatch, home, sizes)
    spy_gated(monkeypatch, gated)
    rng = np.random.default_rng(1)
    namespace: dict[str, Any] = {
        "arr": rng.random(ROWS),
        "frame": pd.DataFrame({"a": rng.random(ROWS), "b": rng.random(ROWS)}),
        "small": np.arange(1000),  # under the threshold: waits for the stream
        "marker": Marker(events),
        "records": {f"k{i}": {"id": i} for i in range(1000)},
    }
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture(namespace)
    assert events == [
        f"early arr {namespace['arr'].nbytes}",
        f"early frame {2 * ROWS * 8}",
        "stream reaches the other variables",
    ]
    # Each buffer written once, though it met the pickler twice, and that write is the
    # one started early.
    assert sorted(sizes) == sorted([namespace["arr"].nbytes, 2 * ROWS * 8])
    assert sorted(gated) == ["arr", "frame"]
    report = codec.last_report
    assert report is not None
    assert report.bytes_written < namespace["arr"].nbytes + 2 * ROWS * 8 + 1_000_000
    assert temp_files(home) == []
    restored = NamespaceCodec(home.artifacts).restore(snapshot_id)
    assert np.array_equal(restored["arr"], namespace["arr"])
    pd.testing.assert_frame_equal(restored["frame"], namespace["frame"])
    assert np.array_equal(restored["small"], namespace["small"])


def test_an_array_variable_that_fails_in_the_stream_stores_none_of_its_buffers(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    gated: list[str] = []
    spy_gated(monkeypatch, gated)
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture({"frame": flaky_frame(2), "step": 1})
    assert gated == ["frame"]  # its buffer was written early, then dropped
    document = codec.document(snapshot_id)
    assert document.names(VariableStatus.SKIPPED) == ("frame",)
    entry = document.variable("frame")
    assert entry is not None
    assert "changed its mind" in (entry.reason or "")
    assert temp_files(home) == []
    assert all(p.stat().st_size < ROWS * 8 for p in stored_files(home))
    assert NamespaceCodec(home.artifacts).restore(snapshot_id) == {"step": 1}


def test_a_buffer_started_early_is_kept_when_another_stored_variable_holds_it(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    gated: list[str] = []
    spy_gated(monkeypatch, gated)
    arr = np.random.default_rng(3).random(ROWS)
    frame = flaky_frame(4)
    frame.attrs["arr"] = arr  # started early through the frame, which then fails
    namespace = {"frame": frame, "holder": [arr]}
    snapshot_id = NamespaceCodec(home.artifacts).capture(namespace)
    assert gated == ["frame", "frame"]  # its column and ``arr``, both written early
    restored = NamespaceCodec(home.artifacts).restore(snapshot_id)
    assert set(restored) == {"holder"}
    assert np.array_equal(restored["holder"][0], arr)
    assert temp_files(home) == []
    big = [p for p in stored_files(home) if p.stat().st_size >= ROWS * 8]
    assert len(big) == 1  # ``arr``'s, not the failed frame's column


def test_an_array_variable_with_a_secret_in_band_is_not_started_and_not_stored(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    spy_early(monkeypatch, events)
    frame = pd.DataFrame({"a": np.random.default_rng(4).random(ROWS)})
    frame.attrs["note"] = f"deploy with {TOKEN}"
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture({"frame": frame})
    assert events == []
    assert codec.document(snapshot_id).names(VariableStatus.WITHHELD) == ("frame",)
    assert temp_files(home) == []
    assert all(p.stat().st_size < ROWS * 8 for p in stored_files(home))


class Counted:
    """Counts how often it is pickled."""

    def __init__(self) -> None:
        self.calls = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> Counted:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        self.calls += 1
        return (list, ())


def test_a_big_array_as_big_as_last_time_is_pickled_once(home: Home) -> None:
    """Pickling alone pays only for buffers of new sizes: a frame of the same name and
    shape as at the last capture is not pickled twice again."""
    counted = Counted()
    frame = pd.DataFrame({"a": np.random.default_rng(5).random(ROWS)})
    frame.attrs["counted"] = counted
    codec = NamespaceCodec(home.artifacts)
    codec.capture({"frame": frame})
    assert counted.calls == 2  # alone, then in the stream
    frame["a"] += 1.0
    snapshot_id = codec.capture({"frame": frame})
    assert counted.calls == 3  # in the stream only
    restored = NamespaceCodec(home.artifacts).restore(snapshot_id)
    pd.testing.assert_frame_equal(restored["frame"], frame, check_flags=False)
    bigger = pd.concat([frame, frame])
    bigger.attrs["counted"] = counted
    codec.capture({"frame": bigger})
    assert counted.calls == 5  # a new size: alone again


def test_a_failed_early_write_of_a_variable_that_is_not_stored_fails_nothing(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    gated: list[str] = []
    spy_gated(monkeypatch, gated)
    frame = flaky_frame(6)
    faults.arm("artifact.write", "enospc")  # the frame's early write
    try:
        codec = NamespaceCodec(home.artifacts)
        snapshot_id = codec.capture({"frame": frame, "step": 1})
    finally:
        faults.disarm_all()
    assert gated == ["frame"]
    assert codec.document(snapshot_id).names(VariableStatus.SKIPPED) == ("frame",)
    assert temp_files(home) == []


def test_a_failed_early_write_of_a_stored_variable_fails_the_capture_naming_it(
    home: Home,
) -> None:
    frame = pd.DataFrame({"a": np.random.default_rng(7).random(ROWS)})
    faults.arm("artifact.write", "enospc")
    try:
        with pytest.raises(StorageError) as caught:
            NamespaceCodec(home.artifacts).capture({"frame": frame, "step": 1})
    finally:
        faults.disarm_all()
    assert caught.value.code == "disk_full"
    assert caught.value.details["variable"] == "frame"
    assert temp_files(home) == []
