"""Which names of a kernel's namespace are IPython's own, decided from the shell itself.

A name is IPython's when it holds what IPython put there: a value of
``shell.user_ns_hidden`` (``In``, ``Out``, ``open``, ``exit``, ...), the output cache's
``_``, ``__``, ``___`` and ``_<n>``, or the input history's ``_i``, ``_ii``, ``_iii`` and
``_i<n>``. The same name bound by the user to a value of their own (``X, _ = ...``, an
``open`` of their own) is the user's, and is saved like any other variable. Rejected: a
list of names, which took a user's ``_`` for IPython's and dropped it silently, and saved
IPython's ``open`` over the next kernel's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_OUTPUT = re.compile(r"_(\d+)")
_INPUT = re.compile(r"_i(\d+)")
_MISSING = object()


def ipython_owned(shell: Any) -> Callable[[str, Any], bool]:
    """``owned(name, value)``: whether ``value`` under ``name`` is IPython's, in ``shell``."""

    def owned(name: str, value: Any) -> bool:
        if len(name) > 4 and name.startswith("__") and name.endswith("__"):
            return True  # Python's own: __name__, __builtins__, ...
        hidden = shell.user_ns_hidden
        if name in hidden:
            return value is hidden[name]
        if name in ("_", "__", "___"):
            return value is getattr(shell.displayhook, name, _MISSING)
        if name in ("_i", "_ii", "_iii"):
            return isinstance(value, str) and value == getattr(
                shell.history_manager, name, _MISSING
            )
        if name == "_exit_code":
            return isinstance(value, int)  # set by IPython after each !command
        found = _OUTPUT.fullmatch(name)
        if found is not None:
            outputs = hidden.get("Out") or {}
            return outputs.get(int(found.group(1)), _MISSING) is value
        found = _INPUT.fullmatch(name)
        if found is not None:
            inputs = shell.history_manager.input_hist_parsed
            index = int(found.group(1))
            return isinstance(value, str) and index < len(inputs) and inputs[index] == value
        return False

    return owned
