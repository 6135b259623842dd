"""Buffers are checked against the checksums their signed document records; blake3 under
``NBFLOW_VERIFY=full``, for version 1 documents, and in ``nbflow verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nbflow import Flow, maintenance
from nbflow.errors import ArtifactCorruptError
from nbflow.hashing.checksums import checksum_of
from nbflow.snapshot import NamespaceCodec, SnapshotDocument
from nbflow.store import Home

BIG = 70 * 1024 * 1024  # more than one fingerprint piece: checksum and fingerprint differ


def resigned(home: Home, document: SnapshotDocument) -> str:
    """Store ``document`` as a snapshot signed by this user, as if nbflow had written it."""
    snapshot_id = home.artifacts.put(document.to_bytes())
    home.artifacts.sign(snapshot_id)
    return snapshot_id


def with_checksum(document: SnapshotDocument, name: str, checksum: str) -> SnapshotDocument:
    variables = tuple(
        v.model_copy(update={"checksums": (checksum,)}) if v.name == name else v
        for v in document.variables
    )
    return document.model_copy(update={"variables": variables})


def test_a_restore_checks_buffers_by_checksum_and_records_how(home: Home) -> None:
    array = np.arange(BIG // 8, dtype=np.int64)
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture({"array": array, "n": 1})
    entry = codec.document(snapshot_id).variable("array")
    assert entry is not None
    assert entry.checksums == (checksum_of(array.tobytes()),)
    restore = NamespaceCodec(home.artifacts)
    restored = restore.restore(snapshot_id)
    assert np.array_equal(restored["array"], array)
    report = restore.last_restore
    assert report is not None
    assert report.bytes_checksummed == array.nbytes
    assert report.bytes_hashed == 0


def test_an_unchanged_big_buffer_keeps_its_checksum_without_another_pass(home: Home) -> None:
    array = np.ones(BIG // 8)
    codec = NamespaceCodec(home.artifacts)
    first = codec.capture({"array": array, "step": 0})
    second = codec.capture({"array": array, "step": 1})
    report = codec.last_report
    assert report is not None
    assert report.bytes_hashed == 0  # known by fingerprint
    one = codec.document(first).variable("array")
    two = codec.document(second).variable("array")
    assert one is not None
    assert two is not None
    assert two.checksums == one.checksums == (checksum_of(array.tobytes()),)


def test_full_verification_uses_blake3(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    array = np.arange(200_000, dtype=np.int64)
    snapshot_id = NamespaceCodec(home.artifacts).capture({"array": array})
    for value in ("full", "FULL", "everything"):  # a value not understood checks more
        monkeypatch.setenv("NBFLOW_VERIFY", value)
        codec = NamespaceCodec(home.artifacts)
        assert np.array_equal(codec.restore(snapshot_id)["array"], array)
        assert codec.last_restore is not None
        assert codec.last_restore.bytes_hashed == array.nbytes
        assert codec.last_restore.bytes_checksummed == 0
    monkeypatch.setenv("NBFLOW_VERIFY", "checksum")
    codec = NamespaceCodec(home.artifacts)
    codec.restore(snapshot_id)
    assert codec.last_restore is not None
    assert codec.last_restore.bytes_checksummed == array.nbytes


def test_a_version_1_document_without_checksums_is_checked_by_blake3(home: Home) -> None:
    array = np.arange(200_000, dtype=np.int64)
    codec = NamespaceCodec(home.artifacts)
    document = codec.document(codec.capture({"array": array, "n": 3}))
    old = document.model_copy(
        update={
            "format_version": 1,
            "variables": tuple(v.model_copy(update={"checksums": ()}) for v in document.variables),
        }
    )
    snapshot_id = resigned(home, old)
    restore = NamespaceCodec(home.artifacts)
    restored = restore.restore(snapshot_id)
    assert np.array_equal(restored["array"], array)
    assert restored["n"] == 3
    assert restore.last_restore is not None
    assert restore.last_restore.bytes_hashed == array.nbytes


def test_a_wrong_checksum_is_refused_and_found_by_verify(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bytes match their blake3 id but not the recorded checksum: a restore refuses
    them and names the artifact, `verify` lists it, and full verification (blake3 only)
    restores."""
    array = np.arange(200_000, dtype=np.int64)
    codec = NamespaceCodec(home.artifacts)
    document = codec.document(codec.capture({"array": array}))
    entry = document.variable("array")
    assert entry is not None
    snapshot_id = resigned(home, with_checksum(document, "array", checksum_of(b"other bytes")))
    kernel_ns = {"kept": "untouched"}
    with pytest.raises(ArtifactCorruptError) as caught:
        NamespaceCodec(home.artifacts).restore(snapshot_id, into=kernel_ns)
    assert caught.value.name == entry.buffers[0]
    assert "checksum" in str(caught.value)
    assert kernel_ns == {"kept": "untouched"}
    with pytest.raises(ArtifactCorruptError):
        NamespaceCodec(home.artifacts).verify(snapshot_id)
    monkeypatch.setenv("NBFLOW_VERIFY", "full")
    assert np.array_equal(NamespaceCodec(home.artifacts).restore(snapshot_id)["array"], array)


def test_verify_checks_the_checksums_runs_recorded(tmp_path: Path) -> None:
    """`nbflow verify` knows the checksum each run's checkpoint records for a buffer and
    checks it in the same pass as blake3: bytes that match their id but not the checksum
    a restore would check them against are damaged too."""
    with Flow("checks", tmp_path / ".nbflow", codec=NamespaceCodec) as flow:

        @flow.state()
        def make(ns: dict[str, Any]) -> dict[str, Any]:
            return {**ns, "array": np.arange(100_000, dtype=np.int64)}

        result = flow.run()
    assert result.final_snapshot_id is not None
    home = Home(tmp_path / ".nbflow")
    try:
        entry = NamespaceCodec(home.artifacts).document(result.final_snapshot_id).variable("array")
        assert entry is not None
        buffer = entry.buffers[0]
        assert maintenance.recorded_checksums(home)[buffer] == set(entry.checksums)
        assert maintenance.verify(home).damaged == ()
        assert home.artifacts.verify(buffer, entry.checksums)
        assert not home.artifacts.verify(buffer, (checksum_of(b"other bytes"),))
        path = home.artifacts.path_of(buffer)
        data = bytearray(path.read_bytes())
        data[1_000] ^= 0x01
        path.write_bytes(bytes(data))
        assert maintenance.verify(home).damaged == (buffer,)
    finally:
        home.close()


def test_arrays_load_after_the_others_and_identity_is_kept(home: Home) -> None:
    shared = np.arange(100_000, dtype=np.float64)
    namespace = {"arr": shared, "box": {"inside": shared}, "a_list": [shared, 1], "z": 2}
    codec = NamespaceCodec(home.artifacts)
    document = codec.document(codec.capture(namespace))
    assert document.names() == ("a_list", "box", "z", "arr")
    restored = NamespaceCodec(home.artifacts).restore(codec.capture(namespace))
    assert restored["box"]["inside"] is restored["arr"]
    assert restored["a_list"][0] is restored["arr"]
    assert np.array_equal(restored["arr"], shared)
    assert NamespaceCodec(home.artifacts).restore(
        codec.capture(namespace), names=["arr"]
    ).keys() == {"arr"}
