"""Secrets known by value, and redaction of text before it is written.

A token read from the environment has no format to recognise it by, yet it shows up in an
exception message (``f"401 for token {token}"``), in a URL built from it, or in a fact. So
besides token formats, nbflow knows secrets *by value*: the values of environment
variables whose names look like credentials (``API_TOKEN``, ``DB_PASSWORD``), and the
string values of variables a snapshot withheld for their names. :class:`KnownSecrets`
holds them in memory only; :func:`redact` replaces them, known token formats and
literals assigned to credential names with a marker, so that the rest of a message or a
traceback is kept for the user.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nbflow.hashing.secrets import (
    ASSIGNED_LITERAL,
    QUOTED_KEY_LITERAL,
    TOKEN_PATTERNS,
    is_placeholder,
    looks_like_credential_name,
)

MIN_KNOWN_LENGTH = 6
"""Shorter values are not searched for: ``API_KEY=1`` would redact every digit 1."""
MARKER = "[secret withheld by nbflow]"


@dataclass(frozen=True)
class Redaction:
    """One thing :func:`redact` replaced: what it was, never its value."""

    kind: str


class KnownSecrets:
    """Values that must never be written: credential-like environment variables, and
    values registered with :meth:`add` (variables withheld from a snapshot)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._env_seen: tuple[int, int] | None = None
        self._from_env: dict[str, str] = {}
        self._added: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        self._generation = 0

    @property
    def generation(self) -> int:
        """Changes whenever the set of known values changes (for caches of verdicts)."""
        self._refresh_environment()
        return self._generation

    def add(self, value: str | bytes, source: str) -> None:
        """Remember ``value`` (from ``source``, such as ``variable 'api_token'``) as secret."""
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if len(text) >= MIN_KNOWN_LENGTH and text not in self._added:
            self._added[text] = source
            self._pattern = None
            self._generation += 1

    def sources(self) -> dict[str, str]:
        """Every known value and where it came from."""
        self._refresh_environment()
        return {**self._from_env, **self._added}

    def find(self, text: str) -> list[str]:
        """Where the known values found in ``text`` came from."""
        pattern = self.pattern()
        if pattern is None:
            return []
        known = self.sources()
        return sorted({known[m.group(0)] for m in pattern.finditer(text)})

    def occurs_in(self, data: bytes) -> str | None:
        """Where the first known value found in ``data`` (UTF-8 bytes) came from, or None."""
        for value, source in self.sources().items():
            if value.encode("utf-8", "replace") in data:
                return source
        return None

    def pattern(self) -> re.Pattern[str] | None:
        """One regular expression matching every known value, or None when none is known."""
        self._refresh_environment()
        if self._pattern is None:
            values = sorted({**self._from_env, **self._added}, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, values))) if values else None
        return self._pattern

    def _refresh_environment(self) -> None:
        # Decoding os.environ costs ~0.1 ms; its raw bytes dict hashes in microseconds
        # (bytes cache their hash), so the environment is read again only when it changed.
        raw = getattr(self._environ, "_data", None)
        items = raw.items() if isinstance(raw, dict) else self._environ.items()
        seen = (len(self._environ), hash(tuple(items)))
        if seen == self._env_seen:
            return
        self._env_seen = seen
        found = {
            value: f"the environment variable {name}"
            for name, value in self._environ.items()
            if len(value) >= MIN_KNOWN_LENGTH and looks_like_credential_name(name)
        }
        if found != self._from_env:
            self._from_env = found
            self._pattern = None
            self._generation += 1


def redact(text: str, known: KnownSecrets | None = None) -> tuple[str, list[Redaction]]:
    """``text`` with every secret replaced by :data:`MARKER`, and what was replaced."""
    done: list[Redaction] = []
    if known is not None:
        pattern = known.pattern()
        if pattern is not None and pattern.search(text):
            sources = known.sources()
            done += [Redaction(f"the value of {sources[m]}") for m in pattern.findall(text)]
            text = pattern.sub(MARKER, text)
    for kind, token in TOKEN_PATTERNS:
        text, count = token.subn(MARKER, text)
        done += [Redaction(f"a {kind}")] * count
    for literal in (ASSIGNED_LITERAL, QUOTED_KEY_LITERAL):
        text = literal.sub(lambda m: _redact_literal(m, done), text)
    return text, _unique(done)


def _redact_literal(match: re.Match[str], done: list[Redaction]) -> str:
    name, value = match.group("name"), match.group("value")
    if not looks_like_credential_name(name) or is_placeholder(value) or MARKER in value:
        return match.group(0)
    done.append(Redaction(f"a string literal assigned to {name!r}"))
    start, end = match.span("value")
    whole = match.group(0)
    offset = match.start()
    return whole[: start - offset] + MARKER + whole[end - offset :]


def _unique(items: Iterable[Redaction]) -> list[Redaction]:
    return list(dict.fromkeys(items))
