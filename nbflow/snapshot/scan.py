"""A fast look for secrets in a variable's pickled bytes, before they are written.

Strings can hide anywhere in a value (an object's attribute, an object-dtype column, a
tuple in a set), where the container walk of :mod:`nbflow.snapshot.filters` does not reach.
Their pickled form holds them verbatim, so the in-band bytes are searched instead. Running
:func:`nbflow.hashing.secrets.find_secrets_in_text` over megabytes is far too slow (about
3 MB/s), so hints are located first by regular expressions that start with a literal (GB/s):
the fixed prefixes of the token formats that module knows, and credential words. Only a
window of text around each hint is then given to ``find_secrets_in_text``, which stays the
one judge of what is a secret. At most :data:`MAX_WINDOWS` windows are judged per segment,
token prefixes first: a value with more hints than that (text full of "key", "token" or
"task-") is only partly judged. That bounds the cost of a capture; it is a known limit.

The codec caches verdicts by the segment's content id, so unchanged variables are not
scanned again.
"""

from __future__ import annotations

import re

from nbflow.hashing.secrets import find_secrets_in_text

MAX_WINDOWS = 64
_REACH = 256  # text on each side of a hint given to the judge
_MAX_WINDOW = 1024

# One pattern per leading literal: the regex engine skips to that byte at memchr speed,
# several times faster than one ``bytes.find`` per prefix and than one big alternation.
_TOKEN_HINTS = tuple(
    re.compile(pattern)
    for pattern in (
        rb"A(?:KIA|SIA|GPA|IDA|ROA|Iza)",
        rb"g(?:h[pousr]_|ithub_pat_|lpat-)",
        rb"xox[abposr]-",
        rb"sk(?:_live_|-)",
        rb"rk_live_",
        rb"hf_",
        rb"eyJ",
        rb"-----BEGIN",
    )
)
_WORD_HINTS = tuple(
    re.compile(word) for word in (rb"pass", rb"secret", rb"token", rb"cred", rb"key")
)
"""Searched in the lower-cased bytes: credential words of names assigned in text."""


def scan_segment(data: bytes) -> str | None:
    """The kind of the first secret found in pickled bytes ``data``, or None."""
    budget = MAX_WINDOWS
    for haystack, hints in ((data, _TOKEN_HINTS), (data.lower(), _WORD_HINTS)):
        positions = sorted(_hits(haystack, hints, limit=budget * 8))
        for start, end in _windows(positions, len(data)):
            if budget == 0:
                return None
            budget -= 1
            findings = find_secrets_in_text(data[start:end].decode("latin-1"), "value")
            if findings:
                return findings[0].kind
    return None


def _hits(haystack: bytes, hints: tuple[re.Pattern[bytes], ...], limit: int) -> list[int]:
    found: list[int] = []
    for hint in hints:
        for match in hint.finditer(haystack):
            found.append(match.start())
            if len(found) >= limit:
                return found
    return found


def _windows(positions: list[int], size: int) -> list[tuple[int, int]]:
    """Merge hits closer than the reach into windows of at most ``_MAX_WINDOW`` bytes."""
    windows: list[tuple[int, int]] = []
    for at in positions:
        start, end = max(0, at - _REACH), min(size, at + _REACH)
        if windows and start <= windows[-1][1] and end - windows[-1][0] <= _MAX_WINDOW:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows
