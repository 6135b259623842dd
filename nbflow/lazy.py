"""Names a package exports, imported when first used (PEP 562).

``import nbflow`` must not load the engine, IPython or pydantic's models for a command
that only lists runs; a package lists its names here, and the module that defines each
is imported the first time the name is looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    package: str, where: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose public names are defined in
    the modules ``where`` gives; a name found is kept in the package's ``namespace``."""

    def get(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def listed() -> list[str]:
        return sorted({*namespace, *where})

    return get, listed
