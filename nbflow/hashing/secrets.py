"""Detection of secrets in text and JSON documents before they are persisted.

Findings name the kind of secret and where it was found, never the secret itself, so that
an error message cannot leak what it warns about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

CREDENTIAL_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "secrets",
        "credential",
        "credentials",
        "creds",
        "apikey",
    }
)
"""Name parts that mark a credential wherever they stand."""
_TOKEN_QUALIFIERS = frozenset({"str", "string", "value", "val", "text"})
"""Parts that may follow ``token`` in a credential name (``token_value``); ``token_ids``
and ``token_type_ids`` are model inputs, not credentials."""
_KEY_OWNERS = frozenset(
    {
        "api",
        "access",
        "auth",
        "private",
        "signing",
        "encryption",
        "decryption",
        "master",
        "client",
        "service",
        "account",
        "session",
        "license",
        "app",
        "ssh",
        "gpg",
        "pgp",
        "rsa",
        "hmac",
        "jwt",
        "aws",
        "gcp",
        "azure",
        "openai",
        "anthropic",
        "stripe",
        "github",
        "slack",
        "subscription",
        "secret",
    }
)
"""Words that make ``<word>_key`` a credential; ``sort_key``, ``rng_key`` and ``label_key``
are not."""
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NAME_SPLIT = re.compile(r"[^a-z0-9]+")

_TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "private key block",
        re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}|\bxapp-[0-9]-[A-Za-z0-9-]{10,}")),
    ("Slack webhook", re.compile(r"hooks\.slack\.com/services/T[A-Za-z0-9_/]{10,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    ("Stripe key", re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{20,}")),
    ("OpenAI-style key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}")),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    (
        "JSON web token",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),
)

_ASSIGNED_LITERAL = re.compile(
    r"""(?ix)
    (?P<name>[a-z_][a-z0-9_]*)            # the name assigned to
    \s*(?::\s*[a-z_][a-z0-9_\[\], ]*)?    # an optional annotation
    \s*(?:=|:)\s*                          # assignment, or a dict/keyword colon
    [rbuf]*(?P<quote>['"])(?P<value>[^'"\n]{4,})(?P=quote)
    """
)
_QUOTED_KEY_LITERAL = re.compile(
    r"""(?ix)
    (?P<q1>['"])(?P<name>[a-z_][a-z0-9_.-]*)(?P=q1)\s*(?::|\]\s*=)\s*
    [rbuf]*(?P<quote>['"])(?P<value>[^'"\n]{4,})(?P=quote)
    """
)


@dataclass(frozen=True)
class SecretFinding:
    """One suspected secret: what kind and where; the value itself is never kept."""

    kind: str
    where: str


def looks_like_credential_name(name: str) -> bool:
    """Whether a variable or key called ``name`` probably holds a credential.

    ``api_token``, ``DB_PASSWORD``, ``apiKey`` and ``aws_secret_key`` do; ``tokens``,
    ``tokenizer``, ``token_ids``, ``key``, ``sort_key`` and ``rng_key`` do not.
    """
    parts = [p for p in _NAME_SPLIT.split(_CAMEL.sub("_", name).lower()) if p]
    if any(part in CREDENTIAL_WORDS for part in parts):
        return True
    if "apikey" in "".join(parts):
        return True
    if "token" in parts:
        after = parts[parts.index("token") + 1 :]
        if all(part in _TOKEN_QUALIFIERS for part in after):
            return True
    return len(parts) >= 2 and parts[-1] in ("key", "keys") and parts[-2] in _KEY_OWNERS


def find_secrets_in_text(text: str, where: str = "text") -> list[SecretFinding]:
    """Suspected secrets in ``text``: token formats and literals assigned to credential names."""
    findings: list[SecretFinding] = []
    for kind, pattern in _TOKEN_PATTERNS:
        if pattern.search(text):
            findings.append(SecretFinding(kind, where))
    for pattern in (_ASSIGNED_LITERAL, _QUOTED_KEY_LITERAL):
        for match in pattern.finditer(text):
            name = match.group("name")
            value = match.group("value")
            if looks_like_credential_name(name) and not _is_placeholder(value):
                findings.append(SecretFinding(f"string literal assigned to {name!r}", where))
    return findings


_PLACEHOLDER_WORDS = ("your", "changeme", "change_me", "replace", "placeholder", "todo", "dummy")


def _is_placeholder(value: str) -> bool:
    stripped = value.strip()
    lowered = stripped.lower()
    if stripped.startswith(("$", "{", "<", "%")) or "..." in stripped:
        return True
    if len(set(lowered)) == 1:  # "xxxxxxxx", "********"
        return True
    return lowered in {"none", "null"} or any(word in lowered for word in _PLACEHOLDER_WORDS)


def find_secrets(value: Any, where: str = "$") -> list[SecretFinding]:
    """Suspected secrets anywhere in a JSON-like ``value`` (strings, and credential keys)."""
    findings: list[SecretFinding] = []
    if isinstance(value, str):
        findings.extend(find_secrets_in_text(value, where))
    elif isinstance(value, dict):
        for key, item in value.items():
            key_findings = (
                find_secrets_in_text(key, f"{where}.<key>") if isinstance(key, str) else []
            )
            findings.extend(key_findings)
            path = f"{where}.<key>" if key_findings else f"{where}.{key}"
            if (
                isinstance(key, str)
                and isinstance(item, str)
                and item.strip()
                and looks_like_credential_name(key)
                and not _is_placeholder(item)
            ):
                findings.append(SecretFinding(f"value of credential-like key {key!r}", path))
            findings.extend(find_secrets(item, path))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            findings.extend(find_secrets(item, f"{where}[{index}]"))
    return findings
