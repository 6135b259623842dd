"""Canonical JSON, content ids and secret detection."""

from nbflow.hashing.canonical import FloatNotAllowed, NotJsonValue, canonical_json, check_canonical
from nbflow.hashing.ids import (
    ALGORITHM,
    content_id,
    content_id_of_buffers,
    digest_of,
    is_content_id,
    new_hasher,
)
from nbflow.hashing.secrets import (
    SecretFinding,
    find_secrets,
    find_secrets_in_text,
    looks_like_credential_name,
)

__all__ = [
    "ALGORITHM",
    "FloatNotAllowed",
    "NotJsonValue",
    "SecretFinding",
    "canonical_json",
    "check_canonical",
    "content_id",
    "content_id_of_buffers",
    "digest_of",
    "find_secrets",
    "find_secrets_in_text",
    "is_content_id",
    "looks_like_credential_name",
    "new_hasher",
]
