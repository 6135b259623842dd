"""The pickler of namespaces: cloudpickle, protocol 5, with notebook functions kept live.

Everything goes through one :class:`NamespacePickler`, a cloudpickle pickler (so classes and
lambdas defined in the notebook travel by value, importable ones by reference) that sends
buffer-protocol data out of band through ``buffer_callback``.

One deliberate change to cloudpickle: a function whose globals *are the namespace being
saved* (anything defined in a notebook cell, including lambdas and the methods of notebook
classes) is saved as code, defaults, closure and attributes only, and rebuilt on restore
with the *restored namespace* as its globals. cloudpickle would instead save a private copy
of the globals the function reads, which after a restore (a) makes the function see stale
values instead of the notebook's current ones and (b) would write a withheld secret to disk
when a function reads ``api_token``. The kernel is the home of these functions, as it is
for dill's session pickling.

Open files are refused (cloudpickle would save a read-only file's *contents*); they are
live state, like sockets, and are skipped with a reason.
"""

from __future__ import annotations

import contextvars
import io
import types
from collections import ChainMap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, NoReturn

import cloudpickle

from nbflow.snapshot.document import PICKLE_PROTOCOL

_TARGET: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "nbflow_snapshot_target", default=None
)


class _Unset:
    """Stands for an empty closure cell in a pickle."""

    def __reduce__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def _refuse_open_file(obj: Any) -> NoReturn:
    raise TypeError(f"cannot pickle an open file ({type(obj).__name__}); it is live state")


_DISPATCH: ChainMap[Any, Any] = ChainMap(
    {io.TextIOWrapper: _refuse_open_file, io.BufferedReader: _refuse_open_file},
    cloudpickle.Pickler.dispatch_table,
)


class NamespacePickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle with protocol 5, out-of-band buffers and namespace-bound functions."""

    dispatch_table = _DISPATCH

    def __init__(
        self,
        file: IO[bytes] | Any,
        *,
        home_globals: tuple[dict[str, Any], ...],
        buffer_callback: Callable[[Any], bool],
    ) -> None:
        super().__init__(file, protocol=PICKLE_PROTOCOL, buffer_callback=buffer_callback)
        self._home_ids = frozenset(id(g) for g in home_globals)

    def reducer_override(self, obj: Any) -> Any:
        """Notebook functions by code with globals rebound on load; the rest as cloudpickle."""
        if type(obj) is types.FunctionType and id(obj.__globals__) in self._home_ids:
            return _reduce_home_function(obj)
        return super().reducer_override(obj)


def _reduce_home_function(func: types.FunctionType) -> tuple[Any, ...]:
    cells = func.__closure__ or ()
    state = {
        "qualname": func.__qualname__,
        "module": func.__module__,
        "doc": func.__doc__,
        "defaults": func.__defaults__,
        "kwdefaults": func.__kwdefaults__,
        "annotations": func.__annotations__,
        "dict": func.__dict__,
        "cells": tuple(_cell_value(cell) for cell in cells),
    }
    # The function is made first and its state set after, so that a closure or default
    # referring back to the function itself pickles as a memo reference, not a recursion.
    return (
        _new_function,
        (func.__code__, func.__name__, len(cells)),
        state,
        None,
        None,
        _set_function_state,
    )


def _cell_value(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return UNSET


def _new_function(code: types.CodeType, name: str, n_cells: int) -> types.FunctionType:
    """Rebuild a notebook function around the namespace being restored."""
    target = _TARGET.get()
    if target is None:  # unpickled outside NamespaceCodec.restore: give it globals of its own
        target = {"__name__": "__main__"}
    closure = tuple(types.CellType() for _ in range(n_cells)) or None
    return types.FunctionType(code, target, name, None, closure)


def _set_function_state(func: types.FunctionType, state: dict[str, Any]) -> types.FunctionType:
    func.__qualname__ = state["qualname"]
    func.__module__ = state["module"]
    func.__doc__ = state["doc"]
    func.__defaults__ = state["defaults"]
    func.__kwdefaults__ = state["kwdefaults"]
    func.__annotations__ = state["annotations"]
    func.__dict__.update(state["dict"])
    for cell, value in zip(func.__closure__ or (), state["cells"], strict=False):
        if value is not UNSET:
            cell.cell_contents = value
    return func


@contextmanager
def restore_target(namespace: dict[str, Any]) -> Iterator[None]:
    """While active, notebook functions being unpickled get ``namespace`` as their globals."""
    token = _TARGET.set(namespace)
    try:
        yield
    finally:
        _TARGET.reset(token)
