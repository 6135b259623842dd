"""restore(capture(ns)) == ns, property-based, on a real store."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from snapshot_support import define, roundtrip, shared_home

from nbflow.hashing.secrets import find_secrets, looks_like_credential_name
from nbflow.snapshot import NamespaceCodec, VariableStatus
from nbflow.store import Home

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: not looks_like_credential_name(n)
)
keys = st.text(max_size=8).filter(lambda k: not looks_like_credential_name(k))
atoms = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.complex_numbers(allow_nan=False)
)
hashables = st.recursive(
    atoms, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=5
)
nested = st.recursive(
    atoms,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=5)
        | st.sets(hashables, max_size=5)
    ),
    max_leaves=30,
).filter(lambda v: not find_secrets(v))


@FEW
@given(st.dictionaries(names, nested, max_size=6))
def test_nested_builtins_come_back_equal(namespace: dict[str, Any]) -> None:
    assert roundtrip(shared_home(), namespace) == namespace


DTYPES: list[np.dtype[Any]] = [
    np.dtype(d)
    for d in (
        np.bool_,
        np.int8,
        np.uint16,
        np.int32,
        np.int64,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
        np.complex64,
        np.complex128,
        np.dtype("datetime64[ns]"),
        np.dtype("timedelta64[us]"),
        np.dtype("U5"),
        np.dtype("S3"),
        np.dtype([("a", "<i4"), ("b", "<f8")]),
    )
]


def assert_same_array(got: Any, want: np.ndarray[Any, Any]) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    # Bit for bit: NaNs (also inside structured records) compare equal this way.
    assert got.tobytes() == want.tobytes()


@FEW
@given(
    hnp.arrays(
        dtype=st.sampled_from(DTYPES),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
    ),
    st.sampled_from(["as is", "every other", "transposed", "fortran"]),
)
def test_small_arrays_of_many_dtypes_and_layouts(array: Any, layout: str) -> None:
    if layout == "every other" and array.ndim:
        array = array[::2]
    elif layout == "transposed":
        array = array.T
    elif layout == "fortran":
        array = np.asfortranarray(array)
    restored = roundtrip(shared_home(), {"x": array})
    assert_same_array(restored["x"], array)


@FEW
@given(
    st.sampled_from([d for d in DTYPES if d.kind not in "US"]),
    st.integers(min_value=10_000, max_value=60_000),
    st.sampled_from(["C", "F", "strided", "0-d"]),
)
def test_large_arrays_go_out_of_band_and_come_back(dtype: Any, size: int, layout: str) -> None:
    rng = np.random.default_rng(size)
    raw = rng.integers(0, 255, size=size * 16, dtype=np.uint8)
    array = raw.view(np.uint8)[: size * np.dtype(dtype).itemsize].view(dtype)
    if layout == "F":
        array = np.asfortranarray(array[: (size // 4) * 4].reshape(4, -1))
    elif layout == "strided":
        array = array[::3]
    elif layout == "0-d":
        array = np.array(array[0])
    restored = roundtrip(shared_home(), {"big": array, "same": array})
    assert_same_array(restored["big"], array)
    assert restored["same"] is restored["big"]


def test_object_arrays_and_nan_values() -> None:
    array = np.array([1, "two", None, (3, 4), float("nan")], dtype=object)
    floats = np.array([np.nan, np.inf, -0.0])
    restored = roundtrip(shared_home(), {"objects": array, "floats": floats})
    assert list(restored["objects"][:4]) == list(array[:4])
    np.testing.assert_array_equal(restored["floats"], floats)


def make_index(kind: str, n: int) -> Any:
    if kind == "range":
        return pd.RangeIndex(n)
    if kind == "string":
        return pd.Index([f"row{i}" for i in range(n)])
    if kind == "datetime":
        return pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return pd.MultiIndex.from_arrays([[i % 3 for i in range(n)], [f"b{i}" for i in range(n)]])


@FEW
@given(
    st.sampled_from(["range", "string", "datetime", "multi"]),
    st.sampled_from([0, 3, 50, 12_000]),
    st.integers(min_value=0, max_value=2**16),
)
def test_dataframes_and_series_with_several_index_types(kind: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    index = make_index(kind, n)
    frame = pd.DataFrame(
        {
            "ints": rng.integers(-100, 100, size=n),
            "floats": rng.random(n),
            "text": [f"t{i % 7}" for i in range(n)],
            "when": pd.date_range("2020-01-01", periods=n, freq="min"),
            "cat": pd.Categorical([("a", "b", "c")[i % 3] for i in range(n)]),
        },
        index=index,
    )
    series = pd.Series(rng.random(n), index=index, name="s")
    restored = roundtrip(shared_home(), {"frame": frame, "series": series})
    pd.testing.assert_frame_equal(restored["frame"], frame)
    pd.testing.assert_series_equal(restored["series"], series)


def test_arrow_backed_columns_come_back() -> None:
    pa = pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"s": pd.array([f"v{i}" for i in range(20_000)], dtype="string[pyarrow]")})
    table = pa.table({"x": list(range(20_000))})
    restored = roundtrip(shared_home(), {"frame": frame, "table": table})
    pd.testing.assert_frame_equal(restored["frame"], frame)
    assert restored["table"].equals(table)


@FEW
@given(st.integers(), st.text(max_size=10), st.integers(min_value=0, max_value=5))
def test_functions_lambdas_and_classes_defined_in_main(k: int, label: str, n: int) -> None:
    namespace = define(
        "K = 0\n"
        "def add_k(x, *, extra=1):\n"
        "    return x + K + extra\n"
        "scale = lambda v: v * 2\n"
        "def counter(start):\n"
        "    count = start\n"
        "    def step():\n"
        "        nonlocal count\n"
        "        count += 1\n"
        "        return count\n"
        "    return step\n"
        "class Box:\n"
        "    size = 2\n"
        "    def __init__(self, label):\n"
        "        self.label = label\n"
        "    def describe(self):\n"
        "        return f'{self.label}:{add_k(self.size)}'\n"
        "    @staticmethod\n"
        "    def unit():\n"
        "        return scale(1)\n"
        "def fact(n):\n"
        "    return 1 if n <= 1 else n * fact(n - 1)\n"
    )
    namespace["K"] = k
    namespace["box"] = namespace["Box"](label)
    namespace["tick"] = namespace["counter"](n)
    namespace["tick"]()
    restored = roundtrip(shared_home(), namespace)
    assert restored["add_k"](1) == 1 + k + 1
    assert restored["scale"](3) == 6
    assert restored["box"].describe() == f"{label}:{2 + k + 1}"
    assert isinstance(restored["box"], restored["Box"])
    assert restored["Box"].unit() == 2
    assert restored["tick"]() == n + 2
    assert restored["fact"](5) == 120


def test_modules_are_restored_by_import(home: Home) -> None:
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture({"np": np, "json": json, "path": os.path})
    document = codec.document(snapshot_id)
    assert {v.name: v.module for v in document.variables} == {
        "np": "numpy",
        "json": "json",
        "path": os.path.__name__,
    }
    assert all(v.status is VariableStatus.STORED for v in document.variables)
    restored = codec.restore(snapshot_id)
    assert restored == {"np": np, "json": json, "path": os.path}
