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

TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
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

_END_OF_LITERAL = r"(?=[ \t]*(?:$|[,)\]};#]))"
"""A literal counts only where it ends the expression: ``"x" + token`` is computed."""
ASSIGNED_LITERAL = re.compile(
    r"""(?imx)
    (?<![\w?&])                            # not inside a word, not a URL query name
    (?P<name>[a-z_][a-z0-9_]*)            # the name assigned to
    [ \t]*(?::[ \t]*(?P<annotation>[a-z_][a-z0-9_.\[\], |]*?))?  # an optional annotation
    [ \t]*(?:=|:)[ \t]*                    # assignment, or a dict/keyword colon
    [rbuf]*(?P<quote>['"])(?P<value>[^'"\n]{4,})(?P=quote)
    """
    + _END_OF_LITERAL
)
QUOTED_KEY_LITERAL = re.compile(
    r"""(?imx)
    (?P<q1>['"])(?P<name>[a-z_][a-z0-9_.-]*)(?P=q1)[ \t]*(?::|\][ \t]*=)[ \t]*
    [rbuf]*(?P<quote>['"])(?P<value>[^'"\n]{4,})(?P=quote)
    """
    + _END_OF_LITERAL
)


_MIGHT_HOLD = re.compile(
    r"(?i)pass|secret|cred|key|token|auth"
    r"|AKIA|ASIA|AGPA|AIDA|AROA|AIza|gh[pousr]_|github_pat_|glpat-|xox|xapp-|sk_|rk_|sk-"
    r"|hf_|eyJ|-----BEGIN|hooks\.slack"
)
"""Every secret :func:`find_secrets` finds holds one of these: a credential word of a name,
or the fixed start of a token format. Text without any cannot hold one."""


def might_hold_secret(text: str) -> bool:
    """False when ``text`` certainly holds no secret :func:`find_secrets` would find; a fast
    first look (one regular expression) before the full check."""
    return _MIGHT_HOLD.search(text) is not None


@dataclass(frozen=True)
class SecretFinding:
    """One suspected secret: what kind and where; the value itself is never kept."""

    kind: str
    where: str


_REFERENCE_WORDS = frozenset(
    """
    name names id ids arn path paths file files filename env var variable url uri endpoint
    field fields column columns col cols type length len prompt label header policy regex
    pattern dir folder location scope scopes count expiry ttl version format prefix suffix
    size hash mode manager store vault rotation required enabled reset
    """.split()  # noqa: SIM905 - a list of words reads better as words
)
"""A last part that makes a credential-like name *refer* to a credential rather than hold
one: ``secret_name``, ``credentials_path``, ``token_url``, ``password_field``."""


def looks_like_credential_name(name: str) -> bool:
    """Whether a variable or key called ``name`` probably holds a credential.

    ``api_token``, ``DB_PASSWORD``, ``apiKey`` and ``aws_secret_key`` do; ``tokens``,
    ``tokenizer``, ``token_ids``, ``max_tokens``, ``key_columns``, ``sort_key``,
    ``rng_key``, ``secret_name`` and ``credentials_path`` do not.
    """
    parts = [p for p in _NAME_SPLIT.split(_CAMEL.sub("_", name).lower()) if p]
    if len(parts) >= 2 and parts[-1] in _REFERENCE_WORDS:
        return False
    if any(part in CREDENTIAL_WORDS for part in parts):
        return True
    if "apikey" in "".join(parts):
        return True
    if "token" in parts:
        after = parts[parts.index("token") + 1 :]
        if all(part in _TOKEN_QUALIFIERS for part in after):
            return True
    return len(parts) >= 2 and parts[-1] in ("key", "keys") and parts[-2] in _KEY_OWNERS


def find_token_formats(text: str, where: str = "text") -> list[SecretFinding]:
    """Known token formats in ``text`` (private keys, cloud and API tokens), anywhere."""
    return [SecretFinding(kind, where) for kind, pattern in TOKEN_PATTERNS if pattern.search(text)]


def find_secrets_in_text(text: str, where: str = "text") -> list[SecretFinding]:
    """Suspected secrets in ``text``: token formats and literals assigned to credential names.

    For Python source, :func:`nbflow.hashing.code_secrets.find_secrets_in_code` reads the
    code itself and is more precise.
    """
    findings = find_token_formats(text, where)
    for pattern in (ASSIGNED_LITERAL, QUOTED_KEY_LITERAL):
        for match in pattern.finditer(text):
            value = match.group("value")
            names = [match.group("name")]
            if "annotation" in pattern.groupindex and match.group("annotation"):
                names.append(match.group("annotation").strip())
            for name in names:
                if looks_like_credential_name(name) and not is_placeholder(value):
                    findings.append(SecretFinding(f"string literal assigned to {name!r}", where))
                    break
    return findings


_ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
_PLACEHOLDER_WORDS = ("your", "changeme", "change_me", "replace", "placeholder", "todo", "dummy")


def is_placeholder(value: str) -> bool:
    """Whether a credential-like literal is a placeholder (``"<your key>"``, ``"xxxx"``)."""
    stripped = value.strip()
    lowered = stripped.lower()
    if stripped.startswith(("$", "{", "<", "%")) or "..." in stripped:
        return True
    if len(set(lowered)) == 1:  # "xxxxxxxx", "********"
        return True
    if _ENV_NAME.fullmatch(stripped) or looks_like_credential_name(stripped):
        return True  # "OPENAI_API_KEY", "password": the name of a credential, not one
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
                and not is_placeholder(item)
            ):
                findings.append(SecretFinding(f"value of credential-like key {key!r}", path))
            findings.extend(find_secrets(item, path))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            findings.extend(find_secrets(item, f"{where}[{index}]"))
    return findings
