"""Code as a cache key sees it: what it does, not how it is written.

:func:`normalized_code` serialises Python source from its syntax tree in a format of
nbflow's own: node types and fields, without positions, comments or formatting, so that
``x=1`` and ``x = 1  # one`` give the same text, and a reformatted cell is not new code.
Bytecode and ``ast.dump`` were rejected: both change between Python minor versions, and a
key must not miss only because the interpreter was upgraded.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

_SKIPPED_FIELDS = frozenset({"ctx", "type_comment", "kind"})
_PARSE_FLAGS = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def parse_code(source: str) -> ast.Module | None:
    """The syntax tree of ``source`` (top-level ``await`` allowed), or None."""
    try:
        tree = compile(source, "<state>", "exec", _PARSE_FLAGS, dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    assert isinstance(tree, ast.Module)
    return tree


@functools.lru_cache(maxsize=1024)
def normalized_code(source: str) -> str:
    """``source`` as positionless text; the source itself when it does not parse."""
    tree = parse_code(source)
    if tree is None:
        return "unparsed:" + "\n".join(line.rstrip() for line in source.strip().splitlines())
    return normalized_tree(tree)


def normalized_tree(node: ast.AST) -> str:
    """A syntax tree as positionless text."""
    parts: list[str] = []
    _emit(node, parts)
    return "".join(parts)


def _emit(value: Any, parts: list[str]) -> None:
    if isinstance(value, ast.AST):
        parts.append(type(value).__name__)
        parts.append("(")
        for name in value._fields:
            if name in _SKIPPED_FIELDS:
                continue
            parts.append(name)
            parts.append("=")
            _emit(getattr(value, name, None), parts)
            parts.append(",")
        parts.append(")")
    elif isinstance(value, list):
        parts.append("[")
        for item in value:
            _emit(item, parts)
            parts.append(",")
        parts.append("]")
    else:
        # Constants: the type matters (1 is not 1.0 nor "1"); repr is exact for each.
        parts.append(f"{type(value).__name__}:{value!r}")
