"""Identity between variables survives a snapshot; restored functions see the namespace."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pandas as pd
from snapshot_support import define, roundtrip

from nbflow.engine.context import ContextCodec
from nbflow.snapshot import NamespaceCodec
from nbflow.store import Home


def test_alias_and_shared_objects_are_restored_once(home: Home) -> None:
    shared = {"k": [1, 2, 3]}
    array = np.arange(50_000)
    frame = pd.DataFrame({"a": np.arange(20_000)})
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    namespace = {
        "a": shared,
        "b": shared,
        "left": [shared, array],
        "right": {"x": shared, "y": array},
        "arr": array,
        "arr_alias": array,
        "frames": [frame, frame],
        "frame": frame,
        "cyclic": cyclic,
    }
    out = roundtrip(home, namespace)
    assert out["a"] is out["b"]
    assert out["left"][0] is out["a"] is out["right"]["x"]
    assert out["arr"] is out["arr_alias"] is out["left"][1] is out["right"]["y"]
    assert out["frames"][0] is out["frames"][1] is out["frame"]
    assert out["cyclic"][1] is out["cyclic"]
    out["a"]["k"].append(4)
    assert out["left"][0]["k"] == [1, 2, 3, 4]


def test_equal_but_distinct_arrays_stay_distinct(home: Home) -> None:
    # Same bytes, one artifact: but each restored array must have memory of its own.
    namespace = {"x": np.zeros(100_000), "y": np.zeros(100_000)}
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture(namespace)
    document = codec.document(snapshot_id)
    x_entry, y_entry = document.variable("x"), document.variable("y")
    assert x_entry is not None
    assert y_entry is not None
    assert x_entry.buffers == y_entry.buffers
    out = NamespaceCodec(home.artifacts).restore(snapshot_id)
    out["x"][0] = 1.0
    assert out["y"][0] == 0.0


def test_functions_get_the_restored_namespace_as_globals(home: Home) -> None:
    namespace = define(
        "rate = 2\ndef price(n):\n    return n * rate\nhandlers = {'price': price}\n"
    )
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture(namespace)
    kernel: dict[str, Any] = {"__name__": "__main__", "unrelated": 1}
    NamespaceCodec(home.artifacts).restore(snapshot_id, into=kernel)
    assert kernel["unrelated"] == 1
    assert kernel["price"](3) == 6
    assert kernel["handlers"]["price"] is kernel["price"]
    assert kernel["price"].__globals__ is kernel
    kernel["rate"] = 10  # a later cell changes a global: the function sees it
    assert kernel["price"](3) == 30


def test_restore_changes_nothing_when_it_fails(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture({"x": 1, "y": np.arange(100_000)})
    entry = codec.document(snapshot_id).variable("y")
    assert entry is not None
    home.artifacts.path_of(entry.buffers[0]).write_bytes(b"damaged")
    kernel: dict[str, Any] = {"x": 0}
    with contextlib.suppress(Exception):
        codec.restore(snapshot_id, into=kernel)
    assert kernel == {"x": 0}


def test_namespace_codec_is_a_context_codec(home: Home) -> None:
    codec: ContextCodec[dict[str, Any]] = NamespaceCodec(home.artifacts)
    assert codec.restore(codec.capture({"n": 1})) == {"n": 1}
