"""What a name a state reads contributes to its cache key.

- A module: its name and the version of the distribution that provides it.
- A function, class or lambda defined in the notebook (or, for the Python API, in the
  script): its compiled code without line numbers (comments and formatting do not
  count, and a function restored from a snapshot, which has no source, keys as the one
  its cell defined), and what *it* reads from its globals, followed transitively; its
  defaults and closure values too. A changed helper two calls deep
  changes the key (joblib and Hamilton compare only the top-level function).
- Anything from an installed library (``pd.read_csv`` imported by name): its qualified
  name and its distribution's version.
- Any other value: its content id, supplied by the caller from the snapshot taken at the
  start of the attempt, so big data is never hashed a second time.
"""

from __future__ import annotations

import functools
import importlib.metadata
import pathlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

from nbflow.cache.analysis import OPAQUE_CALLS, RECORDED_CALLS

ValueId = Callable[[str], "str | None"]
"""The content id of a variable by name (None: not in the snapshot)."""


class Uncacheable(Exception):  # noqa: N818 - a verdict, not a failure
    """The state's result cannot be keyed soundly; ``reason`` says why, for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@functools.lru_cache(maxsize=1)
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.lru_cache(maxsize=4096)
def distribution_version(module_name: str) -> str:
    """``name==version`` of the distribution that provides top-level module ``module_name``,
    or ``stdlib`` / ``unknown``. Kept for the life of the process, like the modules
    themselves: an upgrade takes effect in a process only once it restarts, and so does
    its version in the keys."""
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        return "stdlib"
    names = _distributions().get(top)
    if not names:
        return "unknown"
    versions = []
    for name in sorted(set(names)):
        try:
            versions.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name}==?")
    return ",".join(versions)


def is_own_code(value: Any, homes: tuple[str, ...]) -> bool:
    """Whether ``value`` is a function or class defined in the notebook (module ``homes``)."""
    return getattr(value, "__module__", None) in homes and (
        isinstance(value, (types.FunctionType, type))
    )


class KeyParts:
    """Builds the parts of one key; follows helper code once per name."""

    def __init__(
        self,
        namespace: Mapping[str, Any],
        value_id: ValueId,
        homes: tuple[str, ...] = ("__main__",),
    ) -> None:
        self._namespace = namespace
        self._value_id = value_id
        self._homes = homes
        self._seen: set[int] = set()
        self.parts: dict[str, Any] = {}

    def read(self, name: str) -> None:
        """Add what the read of ``name`` (in the notebook's namespace) depends on."""
        if name not in self._namespace:
            return  # assigned before it is read, or a builtin: nothing outside the cell
        self.parts[f"name:{name}"] = self._value(name, self._namespace[name])

    def _value(self, name: str, value: Any) -> Any:
        if isinstance(value, types.ModuleType):
            return ["module", value.__name__, distribution_version(value.__name__)]
        if _is_recorded_call(value):
            raise Uncacheable(f"it calls nbflow.{value.__name__}() through {name!r}")
        if is_own_code(value, self._homes):
            return ["code", self._code(value)]
        if callable(value) and getattr(value, "__module__", None) not in (None, *self._homes):
            module = str(value.__module__)
            qualname = getattr(value, "__qualname__", type(value).__qualname__)
            if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
                return ["library", module, qualname, distribution_version(module)]
        content = self._value_id(name)
        if content is None and _is_literal(value):
            return ["literal", type(value).__name__, repr(value)]
        if content is None:
            raise Uncacheable(
                f"it reads {name!r}, which is not saved in the snapshot (withheld or "
                "unpicklable), so its value cannot be compared"
            )
        return ["value", content]

    def _code(self, value: Any) -> Any:
        """A notebook function or class: its code and everything it reads, transitively."""
        if id(value) in self._seen:
            return ["again", getattr(value, "__qualname__", "?")]
        self._seen.add(id(value))
        if isinstance(value, type):
            # A class: its methods (followed like functions) and its plain class values.
            members = {
                name: self._code(member.__func__ if hasattr(member, "__func__") else member)
                for name, member in sorted(vars(value).items())
                if isinstance(member, (types.FunctionType, staticmethod, classmethod))
            }
            plain = {
                name: repr(member)
                for name, member in sorted(vars(value).items())
                if isinstance(member, (int, float, str, bytes, bool, type(None)))
                and not name.startswith("__")
            }
            bases = [getattr(b, "__qualname__", "?") for b in value.__bases__]
            return ["class", value.__qualname__, bases, members, plain]
        code = getattr(value, "__code__", None)
        if code is None:
            raise Uncacheable(f"the code of {value!r} cannot be read") from None
        opaque = _opaque_names(code, value.__globals__)
        if opaque is not None:
            raise Uncacheable(f"{getattr(value, '__qualname__', value)} uses {opaque}")
        return ["function", _code_identity(code), self._globals_of(value)]

    def _globals_of(self, value: Any) -> dict[str, Any]:
        """What a function (or each method of a class) reads from its globals."""
        functions: list[Any] = []
        if isinstance(value, type):
            functions = [
                member
                for member in vars(value).values()
                if isinstance(member, (types.FunctionType, staticmethod, classmethod, property))
            ]
        else:
            functions = [value]
        reads: dict[str, Any] = {}
        for function in functions:
            function = getattr(function, "__func__", getattr(function, "fget", function))
            if not isinstance(function, types.FunctionType):
                continue
            globals_ = function.__globals__
            for name in sorted(_global_names(function.__code__)):
                if name in globals_ and name not in reads:
                    reads[name] = self._value(name, globals_[name])
            for index, cell in enumerate(function.__closure__ or ()):
                try:
                    content = cell.cell_contents
                except ValueError:
                    continue
                reads[f"<closure {index}>"] = self._closure_value(content)
            if function.__defaults__:
                reads["<defaults>"] = repr(function.__defaults__)
        return reads

    def _closure_value(self, value: Any) -> Any:
        if is_own_code(value, self._homes):
            return ["code", self._code(value)]
        if isinstance(value, (int, float, str, bytes, bool, type(None))):
            return ["literal", repr(value)]
        raise Uncacheable("a helper's closure holds a value that cannot be compared")


_LITERAL_TYPES = (int, float, complex, str, bytes, bool, type(None), range)


def _is_literal(value: Any) -> bool:
    """Immutable values whose repr is their identity (a path, a tuple of numbers)."""
    if isinstance(value, (*_LITERAL_TYPES, pathlib.PurePath)):
        return True
    if isinstance(value, (tuple, frozenset)) and len(value) <= 1000:
        return all(_is_literal(item) for item in value)
    return False


def _is_recorded_call(value: Any) -> bool:
    return (
        isinstance(value, types.FunctionType)
        and value.__name__ in RECORDED_CALLS
        and str(getattr(value, "__module__", "")).startswith("nbflow.")
    )


def _global_names(code: types.CodeType) -> set[str]:
    """Names a code object (and the code nested in it) may load from its globals."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


@functools.lru_cache(maxsize=4096)
def _code_identity(code: types.CodeType) -> tuple[Any, ...]:
    """A function's compiled code, without its line numbers, so that comments, blank lines
    and formatting do not count; the same whether the function was defined by a cell or
    restored from a snapshot (which keeps no source). It changes with Python's bytecode,
    that is between Python versions: then a miss, never a stale hit."""
    consts = tuple(
        _code_identity(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts
    )
    return (  # a tuple (immutable: it is shared by the cache), written as a JSON list
        code.co_name,
        code.co_code.hex(),
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags),
        consts,
    )


def _opaque_names(code: types.CodeType, globals_: Mapping[str, Any]) -> str | None:
    """What in a helper's code makes its reads unknowable (``globals()``, ``exec()``), or
    a call whose value comes from the run's history (``nbflow.fact``)."""
    names = _global_names(code)
    for name in sorted(names & OPAQUE_CALLS.keys()):
        if name not in globals_:  # the builtin, not a notebook function of that name
            return OPAQUE_CALLS[name]
    nbflow_module = any(
        isinstance(globals_.get(name), types.ModuleType) and globals_[name].__name__ == "nbflow"
        for name in names
    )
    recorded = sorted(names & RECORDED_CALLS)
    if nbflow_module and recorded:
        return f"nbflow.{recorded[0]}() (its value comes from the run's history)"
    return None
