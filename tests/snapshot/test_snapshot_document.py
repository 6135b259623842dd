"""The snapshot document: canonical JSON, sizes as integers, a format version, diffs."""

from __future__ import annotations

import json
import threading

import numpy as np
import xxhash

from nbflow.hashing import check_canonical, content_id
from nbflow.snapshot import (
    SNAPSHOT_FORMAT_VERSION,
    Encoding,
    NamespaceCodec,
    SnapshotDocument,
    VariableStatus,
    diff,
)
from nbflow.store import Home


def test_document_lists_every_variable_with_its_artifacts(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture(
        {
            "ratio": 0.5,
            "big": np.ones(100_000),
            "np": np,
            "lock": threading.Lock(),
            "db_password": "hunter2hunter2",
        }
    )
    raw = home.artifacts.get(snapshot_id)
    assert content_id(raw) == snapshot_id
    parsed = json.loads(raw)
    check_canonical(parsed)  # no floats anywhere, not even for the float variable
    assert parsed["format_version"] == SNAPSHOT_FORMAT_VERSION
    document = codec.document(snapshot_id)
    assert document == SnapshotDocument.from_bytes(raw, snapshot_id)
    # Stream order: the array after the others, each group by name.
    assert document.names() == ("db_password", "lock", "np", "ratio", "big")
    big = document.variable("big")
    assert big is not None
    assert big.status is VariableStatus.STORED
    assert big.encoding is Encoding.PICKLE
    assert big.type_name == "numpy.ndarray"
    assert big.size >= 800_000
    assert len(big.buffers) == 1
    assert home.artifacts.size(big.buffers[0]) == 800_000
    assert big.checksums == (f"xxh3_128:{xxhash.xxh3_128(np.ones(100_000).tobytes()).hexdigest()}",)
    assert big.pickle is not None
    assert big.artifact_ids == (big.pickle, *big.buffers)
    module = document.variable("np")
    assert module is not None
    assert module.encoding is Encoding.MODULE
    assert module.module == "numpy"
    assert module.artifact_ids == ()
    for name, status in (
        ("lock", VariableStatus.SKIPPED),
        ("db_password", VariableStatus.WITHHELD),
    ):
        entry = document.variable(name)
        assert entry is not None
        assert entry.status is status
        assert entry.reason
    assert document.artifact_ids() == frozenset(big.artifact_ids) | {
        document.variable("ratio").pickle  # type: ignore[union-attr]
    }


def test_same_namespace_same_snapshot_id_across_codecs(home: Home) -> None:
    namespace = {"a": [1, 2, 3], "b": {"x": "y"}, "arr": np.arange(50_000)}
    first = NamespaceCodec(home.artifacts).capture(namespace)
    assert NamespaceCodec(home.artifacts).capture(namespace) == first


def test_diff_names_added_removed_and_changed(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    before = codec.document(codec.capture({"keep": 1, "change": [1], "drop": "x"}))
    after = codec.document(codec.capture({"keep": 1, "change": [2], "new": np.zeros(3)}))
    changes = diff(before, after)
    assert changes.added == ("new",)
    assert changes.removed == ("drop",)
    assert changes.changed == ("change",)
    assert changes.unchanged == ("keep",)
    assert not changes.is_empty
    assert diff(after, after).is_empty
