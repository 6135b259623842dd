"""Run parameters in a manifest: JSON values whose floats are kept exactly, as tagged text.

A manifest is canonical JSON and holds no float (DESIGN §3: ``manifest_not_canonical``),
because float text differs between writers. A parameter such as ``lr=0.01`` is still a
float to the notebook: it is stored as ``{"$float": "0.01"}``, the ``repr`` of the value,
which Python reads back to the same float on every platform. A user dict that has a key
starting with ``$`` is wrapped as ``{"$dict": {...}}`` so that it can never be mistaken
for a tag.

Rejected alternatives: floats as plain strings (the notebook then computed ``'0.01' * 10``
and printed ``0.010.01...``), and decimal fixed point (a parameter's exact value changes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from nbflow.errors import ManifestError

FLOAT_TAG = "$float"
DICT_TAG = "$dict"
_TAGS = frozenset({FLOAT_TAG, DICT_TAG})

Parameter = None | bool | int | float | str | list[Any] | dict[str, Any]
"""What a parameter may be: a literal of these types, nested in lists and dicts."""


def encode_parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as manifest JSON; :class:`ManifestError` for what cannot be a parameter."""
    encoded: dict[str, Any] = {}
    for name, value in values.items():
        if not isinstance(name, str):
            raise _unsupported(repr(name), "parameter names must be strings")
        encoded[name] = _encode(value, name)
    return encoded


def decode_parameters(encoded: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters :func:`encode_parameters` stored, with their floats back."""
    return {name: _decode(value) for name, value in encoded.items()}


def _encode(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {FLOAT_TAG: repr(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        inner: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _unsupported(path, f"dict key {key!r} is not a string")
            inner[key] = _encode(item, f"{path}.{key}")
        if any(key.startswith("$") for key in inner):
            return {DICT_TAG: inner}
        return inner
    raise _unsupported(path, f"a {type(value).__name__} cannot be a parameter")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, payload),) = value.items()
        if tag == FLOAT_TAG and isinstance(payload, str):
            return _float(payload)
        if tag == DICT_TAG and isinstance(payload, dict):
            return {key: _decode(item) for key, item in payload.items()}
    if _TAGS & value.keys():
        raise ManifestError(
            "manifest_parameters_malformed",
            f"a tagged parameter value is malformed: {sorted(value)}",
            hint="the manifest was not written by nbflow",
        )
    return {key: _decode(item) for key, item in value.items()}


def _float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ManifestError(
            "manifest_parameters_malformed",
            f"{text!r} is not the text of a float",
            hint="the manifest was not written by nbflow",
        ) from None
    if not math.isnan(number) and repr(number) != text:
        raise ManifestError(
            "manifest_parameters_malformed",
            f"{text!r} is not the exact text nbflow writes for a float",
            hint="the manifest was not written by nbflow",
        )
    return number


def _unsupported(path: str, reason: str) -> ManifestError:
    return ManifestError(
        "parameter_not_supported",
        f"parameter {path}: {reason}",
        name=path,
        hint="use None, bools, ints, floats, strings, and lists or dicts of these",
    )
