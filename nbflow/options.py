"""Parsing the option values users type: durations and backoff specifications."""

from __future__ import annotations

import re

from nbflow.errors import NbflowError
from nbflow.model.config import Backoff, ExponentialBackoff, FixedBackoff

_DURATION = re.compile(r"(?P<number>[0-9]+)(?P<unit>ms|s|m|h)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_MAX_MS = 2**53  # stays exact in JSON readers that use doubles


class OptionError(NbflowError):
    """An option value could not be understood; the message says what was expected."""


def parse_duration_ms(text: str, *, option: str = "duration") -> int:
    """``250ms``, ``2s``, ``5m`` or ``1h`` as integer milliseconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is not None and len(match.group("number")) > 16:
        raise OptionError(
            "bad_duration",
            f"{option}: {text[:40]!r}… is too long",
            name=option,
            hint="durations up to about 285,000 years are accepted; use a smaller number",
        )
    if match is None:
        raise OptionError(
            "bad_duration",
            f"{option}: {text!r} is not a duration",
            name=option,
            hint="write a whole number and a unit: 250ms, 2s, 5m or 1h",
        )
    value = int(match.group("number")) * _UNIT_MS[match.group("unit")]
    if value > _MAX_MS:
        raise OptionError(
            "bad_duration",
            f"{option}: {text!r} is too long",
            name=option,
            hint="durations up to about 285,000 years are accepted; use a smaller number",
        )
    return value


def parse_backoff(text: str) -> Backoff:
    """``fixed:D`` or ``exp:BASE..MAX`` as a backoff policy."""
    kind, sep, rest = text.strip().partition(":")
    if sep and kind == "fixed":
        return FixedBackoff(delay_ms=parse_duration_ms(rest, option="--backoff"))
    if sep and kind in ("exp", "exponential"):
        base_text, dots, max_text = rest.partition("..")
        if dots:
            base = parse_duration_ms(base_text, option="--backoff")
            top = parse_duration_ms(max_text, option="--backoff")
            if top < base:
                raise OptionError(
                    "bad_backoff",
                    f"--backoff: the maximum {max_text} is below the base {base_text}",
                    name="--backoff",
                    hint="write exp:BASE..MAX with BASE <= MAX, e.g. exp:1s..60s",
                )
            return ExponentialBackoff(base_ms=base, max_ms=top)
    raise OptionError(
        "bad_backoff",
        f"--backoff: {text!r} is not a backoff",
        name="--backoff",
        hint="write fixed:2s or exp:1s..60s",
    )
