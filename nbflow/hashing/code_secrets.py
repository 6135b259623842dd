"""Secrets written into Python code: string literals bound to credential-like names.

Code is read as code. The source is parsed with :mod:`ast` and a literal counts only where
the language binds it to a credential-like name: an assignment (``password = "..."``,
``self.api_key = "..."``, ``cfg["password"] = "..."``, ``x: password = "..."``), a
keyword argument, a dict entry, a parameter default, or a comparison. Anything computed
is not a literal, so ``api_key = os.environ.get("API_KEY")``, ``"...?access_token=" +
token`` and f-strings with fields are never refused; a regular expression over the text
could not tell those apart and refused real work.

Token formats (``ghp_…``, ``AKIA…``) are found anywhere in the text, comments included.
IPython syntax (``%magic``, ``!shell``) is blanked out before parsing; source that still
does not parse is judged by the text rules of :mod:`nbflow.hashing.secrets`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from nbflow.hashing.secrets import (
    SecretFinding,
    find_secrets_in_text,
    find_token_formats,
    is_placeholder,
    looks_like_credential_name,
)

_IPYTHON_LINE = re.compile(r"^\s*(?:%|!|\?)|^\s*[\w.,\s]+=\s*[%!]")
_MIN_LITERAL = 4
_PARSE_FLAGS = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def find_secrets_in_code(source: str, where: str = "code") -> list[SecretFinding]:
    """Suspected secrets in Python (or IPython) ``source``."""
    findings = find_token_formats(source, where)
    tree = _parse(source)
    if tree is None:
        return findings + [f for f in find_secrets_in_text(source, where) if f not in findings]
    for name, line in _bound_literals(tree):
        kind = f"string literal assigned to {name!r} on line {line}"
        findings.append(SecretFinding(kind, where))
    return findings


def _parse(source: str) -> ast.Module | None:
    for text in (source, _without_ipython_syntax(source)):
        try:
            tree = compile(text, "<state>", "exec", _PARSE_FLAGS, dont_inherit=True)
            assert isinstance(tree, ast.Module)
            return tree
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return None


def _without_ipython_syntax(source: str) -> str:
    """``source`` with IPython-only lines blanked, so that line numbers stay."""
    lines = source.split("\n")
    return "\n".join("" if _IPYTHON_LINE.match(line) else line for line in lines)


def _literal(node: ast.AST | None) -> bool:
    """Whether ``node`` is a constant string (or a sum of them) long enough to be a secret."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        value = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
        return len(value.strip()) >= _MIN_LITERAL and not is_placeholder(value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = [node.left, node.right]
        return all(isinstance(p, (ast.Constant, ast.BinOp)) for p in parts) and all(
            _literal(p) or _empty_constant(p) for p in parts
        )
    return False


def _empty_constant(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in ("", b"")


def _target_names(target: ast.AST) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Attribute):
        yield target.attr
    elif isinstance(target, ast.Subscript):
        key = target.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            yield key.value
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _annotation_names(annotation: ast.AST | None) -> Iterator[str]:
    if isinstance(annotation, ast.Name):
        yield annotation.id
    elif isinstance(annotation, ast.Attribute):
        yield annotation.attr


def _pairs(target: ast.AST, value: ast.AST | None) -> Iterator[tuple[ast.AST, ast.AST | None]]:
    """Target and value, elementwise for ``a, b = "x", "y"``."""
    if (
        isinstance(target, (ast.Tuple, ast.List))
        and isinstance(value, (ast.Tuple, ast.List))
        and len(target.elts) == len(value.elts)
    ):
        for sub_target, sub_value in zip(target.elts, value.elts, strict=True):
            yield from _pairs(sub_target, sub_value)
    else:
        yield target, value


def _bound_literals(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """``(name, line)`` of every literal bound to a credential-like name."""
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        candidates: list[tuple[str, ast.AST | None]] = []
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for sub_target, value in _pairs(target, node.value):
                    candidates += [(name, value) for name in _target_names(sub_target)]
        elif isinstance(node, ast.AnnAssign):
            names = [*_target_names(node.target), *_annotation_names(node.annotation)]
            candidates += [(name, node.value) for name in names]
        elif isinstance(node, ast.NamedExpr):
            candidates.append((node.target.id, node.value))
        elif isinstance(node, ast.keyword) and node.arg is not None:
            candidates.append((node.arg, node.value))
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    candidates.append((key.value, value))
        elif isinstance(node, ast.arguments):
            positional = [*node.posonlyargs, *node.args]
            defaults = [None] * (len(positional) - len(node.defaults)) + list(node.defaults)
            candidates += [(a.arg, d) for a, d in zip(positional, defaults, strict=True)]
            candidates += [
                (a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True)
            ]
        elif isinstance(node, ast.Compare) and len(node.comparators) == 1:
            left, right = node.left, node.comparators[0]
            for side, other in ((left, right), (right, left)):
                candidates += [(name, other) for name in _target_names(side)]
        for name, value in candidates:
            if _literal(value) and looks_like_credential_name(name):
                yield name, line
