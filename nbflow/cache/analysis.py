"""What a state's code reads and writes, and whether that can be known at all.

A cache key must cover everything a state's result depends on. From the code alone nbflow
finds the names it reads and the names it assigns. A name is read when a top-level
statement loads it (at any depth, ``x += 1`` included) before a simple statement has
bound it for certain (an assignment, an import, a ``def``); a name bound only inside an
``if``, a loop or a ``try`` still counts as read. This over-approximates, which can only
cause a miss, never a stale hit, yet a state that makes ``df`` and then uses it does not
depend on the ``df`` an earlier run left in the namespace. Code whose reads
cannot be found this way (``globals()``, ``exec``, ``eval``, a magic that runs code given
as text) is not cached, and the construct is named; so is code that records facts or
starts child runs, whose results must come from the run's own history. A string that
holds ``@name`` reads ``name``: pandas' ``query`` and ``eval`` look such names up in the
caller's variables.
"""

from __future__ import annotations

import ast
import functools
import re
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
_AT_NAME = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")
"""``@name`` in a string: pandas' ``query`` and ``eval`` read ``name`` from the caller's
variables (``df.query('region == @region')``). Any text of that form counts as a read: an
extra name only makes the key longer."""


@dataclass(frozen=True)
class CodeFacts:
    """What the cache needs to know of one piece of code."""

    normalized: str
    """The code, without formatting or comments (see :mod:`nbflow.hashing.code_digest`)."""
    reads: frozenset[str]
    """Names the code loads before binding them (builtins too: a notebook may rebind
    one; a name the namespace lacks is skipped when the key is made)."""
    writes: frozenset[str]
    """Names the code binds at its top level (assignments, imports, defs, deletions)."""
    opaque: str | None
    """Why its reads cannot be known (``exec()``, ``%time``), or None."""
    imports: frozenset[str] = frozenset()
    """Top-level packages the code imports itself (their versions belong in its key)."""


@functools.lru_cache(maxsize=1024)
def code_facts(python_source: str) -> CodeFacts:
    """Analyse ``python_source`` (IPython syntax already turned into Python)."""
    tree = parse_code(python_source)
    if tree is None:
        return CodeFacts(python_source, frozenset(), frozenset(), "code that does not parse")
    reads: set[str] = set()
    writes: set[str] = set()
    imports: set[str] = set()
    opaque: str | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            writes.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    opaque = opaque or "a star import"
                writes.add(alias.asname or alias.name.split(".")[0])
                if isinstance(node, ast.Import):
                    imports.add(alias.name.split(".")[0])
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imports.add(node.module.split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            writes.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            writes.update(node.names)
        elif isinstance(node, ast.Call):
            opaque = opaque or _opaque_call(node)
    bound: set[str] = set()
    for statement in tree.body:
        reads |= _loaded(statement) - bound
        bound |= _bound_by(statement)
    return CodeFacts(
        normalized_tree(tree), frozenset(reads), frozenset(writes), opaque, frozenset(imports)
    )


def _loaded(node: ast.AST) -> set[str]:
    """Names ``node`` loads anywhere inside it; an augmented assignment loads its target."""
    names = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Load):
            names.add(inner.id)
        elif isinstance(inner, ast.AugAssign) and isinstance(inner.target, ast.Name):
            names.add(inner.target.id)
        elif isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            names.update(_AT_NAME.findall(inner.value))
    return names


def _bound_by(statement: ast.stmt) -> set[str]:
    """Names a top-level statement binds whenever it completes."""
    if isinstance(statement, ast.Assign):
        return {name for target in statement.targets for name in _target_names(target)}
    if isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
        if isinstance(statement, ast.AnnAssign) and statement.value is None:
            return set()
        return _target_names(statement.target)
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {a.asname or a.name.split(".")[0] for a in statement.names if a.name != "*"}
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    return set()


def _target_names(target: ast.expr) -> set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return {name for element in target.elts for name in _target_names(element)}
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return set()  # an attribute or an item: the object it belongs to was read


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
