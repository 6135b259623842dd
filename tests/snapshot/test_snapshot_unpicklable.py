"""Values that cannot be saved are skipped with a reason, never fatal."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import numpy as np
from snapshot_support import define

from nbflow.snapshot import NamespaceCodec, VariableStatus, is_ipython_name
from nbflow.store import Home


class RefusesPickling:
    def __reduce__(self) -> Any:
        raise RuntimeError("this object refuses to be pickled")


def test_unpicklable_values_are_skipped_and_reported(home: Home, tmp_path: Path) -> None:
    handle = open(tmp_path / "notes.txt", "w")  # noqa: SIM115 - an open file is the point
    sock = socket.socket()
    try:
        namespace = {
            "lock": threading.Lock(),
            "rlock": threading.RLock(),
            "sock": sock,
            "gen": (i for i in range(3)),
            "handle": handle,
            "files": [handle],  # cloudpickle would save a read-mode file's contents
            "nested": {"inner": [threading.Lock()]},
            "refuses": RefusesPickling(),
            "fine": [1, 2, 3],
            "array": np.arange(100_000),
            "zz_last": "after the failures",
        }
        codec = NamespaceCodec(home.artifacts)
        snapshot_id = codec.capture(namespace)
    finally:
        handle.close()
        sock.close()
    report = codec.last_report
    assert report is not None
    skipped = {note.name: note.reason for note in report.skipped}
    assert set(skipped) == {"lock", "rlock", "sock", "gen", "handle", "files", "nested", "refuses"}
    assert "refuses to be pickled" in skipped["refuses"]
    assert "lock" in skipped["nested"]
    assert report.stored == ("array", "fine", "zz_last")
    document = codec.document(snapshot_id)
    for name in skipped:
        entry = document.variable(name)
        assert entry is not None
        assert entry.status is VariableStatus.SKIPPED
        assert entry.reason
        assert entry.artifact_ids == ()
    restored = NamespaceCodec(home.artifacts).restore(snapshot_id)
    assert restored["fine"] == [1, 2, 3]
    assert restored["zz_last"] == "after the failures"
    np.testing.assert_array_equal(restored["array"], np.arange(100_000))
    assert "lock" not in restored


def test_notes_are_new_only_once(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    namespace: dict[str, Any] = {"lock": threading.Lock(), "x": 1}

    def new_notes() -> list[str]:
        assert codec.last_report is not None
        return [note.name for note in codec.last_report.new_notes]

    codec.capture(namespace)
    assert new_notes() == ["lock"]
    namespace["x"] = 2
    codec.capture(namespace)
    assert new_notes() == []
    namespace["gen"] = (i for i in range(2))
    codec.capture(namespace)
    assert new_notes() == ["gen"]


def test_a_value_that_becomes_picklable_is_saved_again(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    holder: list[Any] = [threading.Lock()]
    codec.capture({"holder": holder})
    assert codec.last_report is not None
    assert [n.name for n in codec.last_report.skipped] == ["holder"]
    holder[0] = "plain"
    snapshot_id = codec.capture({"holder": holder})
    assert codec.last_report.skipped == ()
    assert NamespaceCodec(home.artifacts).restore(snapshot_id) == {"holder": ["plain"]}


def test_ipython_names_are_not_user_variables(home: Home) -> None:
    names = [
        "In",
        "Out",
        "_",
        "__",
        "___",
        "_i",
        "_ii",
        "_iii",
        "_i7",
        "_7",
        "_oh",
        "_ih",
        "_dh",
        "get_ipython",
        "exit",
        "quit",
        "__builtins__",
        "__name__",
        "__doc__",
    ]
    assert all(is_ipython_name(n) for n in names)
    assert not any(is_ipython_name(n) for n in ["_private", "x_1", "df", "_cache", "i7"])
    namespace = define("x = 1\n")
    namespace.update({n: object() for n in names if n not in namespace})
    codec = NamespaceCodec(home.artifacts)
    document = codec.document(codec.capture(namespace))
    assert document.names() == ("x",)
