"""What a state's code reads and writes, and whether that can be known at all.

A cache key must cover everything a state's result depends on. From the code alone nbflow
finds the names it reads (any name loaded, at any depth: an over-approximation, which
can only cause a miss, never a stale hit) and the names it assigns. Code whose reads
cannot be found this way (``globals()``, ``exec``, ``eval``, a magic that runs code given
as text) is not cached, and the construct is named; so is code that records facts or
starts child runs, whose results must come from the run's own history.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass

from nbflow.hashing.code_digest import normalized_tree, parse_code

OPAQUE_CALLS = {
    "globals": "globals()",
    "locals": "locals()",
    "vars": "vars()",
    "exec": "exec()",
    "eval": "eval()",
    "__import__": "__import__()",
    "compile": "compile()",
    "breakpoint": "breakpoint()",
}
"""Calls after which the names a state reads cannot be known from its code."""
RECORDED_CALLS = {"fact", "child", "run_child", "now", "seed"}
"""``nbflow.<name>`` calls whose values come from the run's history: never cached."""
_MAGIC_CALLS = {"run_line_magic", "run_cell_magic"}
_BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class CodeFacts:
    """What the cache needs to know of one piece of code."""

    normalized: str
    """The code, without formatting or comments (see :mod:`nbflow.hashing.code_digest`)."""
    reads: frozenset[str]
    """Names the code loads (builtins left out)."""
    writes: frozenset[str]
    """Names the code binds at its top level (assignments, imports, defs, deletions)."""
    opaque: str | None
    """Why its reads cannot be known (``exec()``, ``%time``), or None."""


def code_facts(python_source: str) -> CodeFacts:
    """Analyse ``python_source`` (IPython syntax already turned into Python)."""
    tree = parse_code(python_source)
    if tree is None:
        return CodeFacts(python_source, frozenset(), frozenset(), "code that does not parse")
    reads: set[str] = set()
    writes: set[str] = set()
    opaque: str | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (reads if isinstance(node.ctx, ast.Load) else writes).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    opaque = opaque or "a star import"
                writes.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            writes.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            writes.update(node.names)
        elif isinstance(node, ast.Call):
            opaque = opaque or _opaque_call(node)
    return CodeFacts(
        normalized_tree(tree),
        frozenset(reads - _BUILTINS),
        frozenset(writes),
        opaque,
    )


def _opaque_call(call: ast.Call) -> str | None:
    function = call.func
    if isinstance(function, ast.Name) and function.id in OPAQUE_CALLS:
        return OPAQUE_CALLS[function.id]
    if isinstance(function, ast.Attribute):
        if function.attr in _MAGIC_CALLS:
            magic = call.args[0] if call.args else None
            name = str(magic.value) if isinstance(magic, ast.Constant) else "?"
            prefix = "%%" if function.attr == "run_cell_magic" else "%"
            return f"the magic {prefix}{name}"
        owner = function.value
        if function.attr in RECORDED_CALLS and isinstance(owner, ast.Name) and owner.id == "nbflow":
            return f"nbflow.{function.attr}() (its value comes from the run's history)"
    return None
