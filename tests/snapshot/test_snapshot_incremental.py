"""Checkpoints cost what changed: unchanged data is neither written nor blake3-hashed."""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import pandas as pd
import pytest
from snapshot_support import roundtrip, shared_home

from nbflow.snapshot import NamespaceCodec, diff
from nbflow.store import Home


def namespace() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    return {
        "frame": pd.DataFrame({"a": rng.random(100_000), "b": rng.random(100_000)}),
        "array": rng.random(200_000),
        "records": {f"k{i}": {"id": i} for i in range(1_000)},
        "step": 0,
    }


def test_unchanged_namespace_writes_and_hashes_nothing(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    ns = namespace()
    first = codec.capture(ns)
    report = codec.last_report
    assert report is not None
    buffer_bytes = ns["array"].nbytes + ns["frame"]["a"].nbytes * 2
    assert report.bytes_written >= buffer_bytes
    assert report.bytes_hashed >= buffer_bytes
    again = codec.capture(ns)
    report = codec.last_report
    assert report is not None
    assert again == first
    assert report.bytes_written == 0
    assert report.artifacts_written == 0
    assert report.bytes_hashed == 0  # fingerprinted with xxh3 instead
    assert report.bytes_fingerprinted >= buffer_bytes


def test_a_scalar_change_writes_only_a_little(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    ns = namespace()
    before = codec.capture(ns)
    ns["step"] += 1
    after = codec.capture(ns)
    report = codec.last_report
    assert report is not None
    assert report.bytes_hashed == 0
    assert 0 < report.bytes_written < 2_000
    changes = diff(codec.document(before), codec.document(after))
    assert changes.changed == ("step",)
    assert changes.unchanged == ("array", "frame", "records")
    assert NamespaceCodec(home.artifacts).restore(after)["step"] == 1


def test_in_place_changes_are_seen(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    ns = namespace()
    codec.capture(ns)
    ns["array"][123_456] = -1.0  # same object, same address, same size: only content moved
    ns["frame"].loc[7, "b"] = 42.0
    snapshot_id = codec.capture(ns)
    report = codec.last_report
    assert report is not None
    assert report.bytes_hashed > 0
    restored = NamespaceCodec(home.artifacts).restore(snapshot_id)
    assert restored["array"][123_456] == -1.0
    assert restored["frame"].loc[7, "b"] == 42.0


def test_added_removed_and_copied_variables(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    ns = namespace()
    before = codec.capture(ns)
    del ns["records"]
    ns["copy"] = ns["array"].copy()  # equal content: known by fingerprint, not rewritten
    after = codec.capture(ns)
    report = codec.last_report
    assert report is not None
    assert report.bytes_hashed == 0
    assert report.bytes_written < 3_000  # the document and two small slices, no buffer
    changes = diff(codec.document(before), codec.document(after))
    assert changes.added == ("copy",)
    assert changes.removed == ("records",)


def test_restored_arrays_are_lazy_private_mappings(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture({"array": np.arange(300_000, dtype=np.int64)})
    restored = NamespaceCodec(home.artifacts).restore(snapshot_id)
    array = restored["array"]
    base: Any = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    assert isinstance(base, memoryview)
    assert isinstance(base.obj, mmap.mmap)
    assert array.flags.writeable
    array[0] = 999  # copy-on-write: the artifact is untouched
    entry = codec.document(snapshot_id).variable("array")
    assert entry is not None
    assert home.artifacts.verify(entry.buffers[0])
    assert NamespaceCodec(home.artifacts).restore(snapshot_id)["array"][0] == 0
    report = NamespaceCodec(home.artifacts)
    report.restore(snapshot_id)
    assert report.last_restore is not None
    assert report.last_restore.mapped_bytes == 300_000 * 8


def test_read_only_arrays_stay_read_only() -> None:
    frozen = np.arange(100_000)
    frozen.flags.writeable = False
    restored = roundtrip(shared_home(), {"frozen": frozen})
    assert not restored["frozen"].flags.writeable


def test_a_new_codec_writes_ahead_and_drops_what_is_stored(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A codec with no memory of earlier captures (a new kernel) writes a buffer while it
    hashes it; finding that artifact already stored, it drops the write: nothing is
    written twice and no temp file is left behind."""
    ahead: list[int] = []
    write_ahead = home.artifacts.write_ahead

    def counted(buffers: Any, size: int) -> Any:  # a spy on the real method
        ahead.append(size)
        return write_ahead(buffers, size)

    monkeypatch.setattr(home.artifacts, "write_ahead", counted)
    ns = namespace()
    first = NamespaceCodec(home.artifacts).capture(ns)
    assert ns["array"].nbytes in ahead  # new buffers are written while hashed
    ahead.clear()
    fresh = NamespaceCodec(home.artifacts)
    assert fresh.capture(ns) == first
    assert ns["array"].nbytes in ahead
    report = fresh.last_report
    assert report is not None
    assert report.bytes_hashed >= ns["array"].nbytes  # no fingerprints to go by
    assert report.bytes_written == 0
    assert report.artifacts_written == 0
    leftovers = list((home.root / "tmp").iterdir()) if (home.root / "tmp").is_dir() else []
    assert leftovers == []
    restored = NamespaceCodec(home.artifacts).restore(first)
    assert np.array_equal(restored["array"], ns["array"])
    ahead.clear()
    assert fresh.capture(ns) == first  # known now by its fingerprint: no write at all
    assert ahead == []
