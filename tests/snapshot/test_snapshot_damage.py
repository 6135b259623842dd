"""Damaged or missing artifacts are named, never unpickled."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from nbflow.errors import ArtifactCorruptError, ContextError, StorageError
from nbflow.snapshot import NamespaceCodec
from nbflow.store import Home


def flip_byte(home: Home, artifact_id: str, at: int) -> None:
    path = home.artifacts.path_of(artifact_id)
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_a_buffer_names_the_artifact(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture({"small": 1, "big": np.arange(200_000, dtype=np.int64)})
    entry = codec.document(snapshot_id).variable("big")
    assert entry is not None
    assert len(entry.buffers) == 1
    damaged = entry.buffers[0]
    flip_byte(home, damaged, at=123_456)
    with pytest.raises(ArtifactCorruptError) as caught:
        NamespaceCodec(home.artifacts).restore(snapshot_id)
    assert caught.value.code == "artifact_corrupt"
    assert caught.value.name == damaged
    assert damaged in str(caught.value)
    assert "'big'" in str(caught.value)


def test_a_flipped_byte_in_a_pickled_slice_names_the_artifact(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture({"words": [f"word {i}" for i in range(20_000)]})
    entry = codec.document(snapshot_id).variable("words")
    assert entry is not None
    assert entry.pickle is not None
    assert home.artifacts.is_file(entry.pickle)  # large slices are files
    flip_byte(home, entry.pickle, at=5_000)
    with pytest.raises(ArtifactCorruptError) as caught:
        NamespaceCodec(home.artifacts).restore(snapshot_id)
    assert caught.value.name == entry.pickle


@pytest.mark.parametrize("namespace", [{"n": 41}, {"a": [1, 2], "n": 41, "z": "last"}])
def test_a_damaged_small_slice_in_the_database_is_named(
    home: Home, namespace: dict[str, object]
) -> None:
    """Small slices are read from the database all at once, and each is checked before
    anything is unpickled, first or not."""
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture(namespace)
    home.artifacts.flush()
    entry = codec.document(snapshot_id).variable("n")
    assert entry is not None
    assert entry.pickle is not None
    assert not home.artifacts.is_file(entry.pickle)
    with sqlite3.connect(home.layout.database) as db:  # the store's blob table
        (data,) = db.execute("SELECT data FROM blobs WHERE id = ?", (entry.pickle,)).fetchone()
        damaged = bytearray(data)
        damaged[-3] ^= 0x01
        db.execute("UPDATE blobs SET data = ? WHERE id = ?", (bytes(damaged), entry.pickle))
    with pytest.raises(ArtifactCorruptError) as caught:
        NamespaceCodec(home.artifacts).restore(snapshot_id)
    assert caught.value.name == entry.pickle
    assert caught.value.details["variable"] == "n"


def test_a_missing_buffer_is_named(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture({"big": np.ones(100_000)})
    entry = codec.document(snapshot_id).variable("big")
    assert entry is not None
    home.artifacts.delete(entry.buffers[0])
    with pytest.raises(StorageError) as caught:
        NamespaceCodec(home.artifacts).restore(snapshot_id)
    assert caught.value.code == "artifact_not_found"
    assert caught.value.name == entry.buffers[0]


def test_a_snapshot_id_that_is_not_a_snapshot_is_refused(home: Home) -> None:
    other = home.artifacts.put_signed(b'{"hello": "world"}')
    with pytest.raises(ContextError) as caught:
        NamespaceCodec(home.artifacts).restore(other)
    assert caught.value.code == "snapshot_not_namespace"
    assert caught.value.name == other


def test_a_newer_format_is_refused_with_a_hint(home: Home) -> None:
    newer = home.artifacts.put_signed(
        b'{"format_version": 99, "kind": "nbflow.namespace", "variables": []}'
    )
    with pytest.raises(ContextError) as caught:
        NamespaceCodec(home.artifacts).document(newer)
    assert caught.value.code == "snapshot_format_unsupported"
    assert caught.value.hint is not None
    assert "upgrade" in caught.value.hint
