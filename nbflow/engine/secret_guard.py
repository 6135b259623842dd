"""The last check before an event is written: no secret reaches the event log.

Every event of a run passes through :class:`SecretGuard` on its way to the store. The
text a user should still read (a failure's message and traceback, a note) is *redacted*:
the secret is replaced by a marker and the rest is kept. Anything else that holds a
secret is refused with ``secrets_detected``, because the paths that produce it (facts,
manifests, contexts) check their values first with a clearer error; reaching this point
means a path was missed, and failing closed is the only safe answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nbflow.errors import NbflowError
from nbflow.hashing.code_secrets import find_secrets_in_code
from nbflow.hashing.ids import is_content_id
from nbflow.hashing.redact import KnownSecrets, Redaction, redact
from nbflow.hashing.secrets import find_secrets
from nbflow.model.errors import ErrorInfo
from nbflow.model.events import (
    Event,
    Note,
    ReplayChecked,
    RetryScheduled,
    RunCompleted,
    RunStarted,
    StateCached,
    StateCompleted,
    StateEntered,
    StateFailed,
    StateKeyed,
    StateSkipped,
)

Reporter = Callable[[str, list[Redaction]], None]
"""Told what was redacted, and where (``state 'fetch'``), so the user can be told once."""

_CHECKED_MIN = 8  # shorter strings (state names, statuses) cannot hold a token
_ONLY_NAMES_AND_IDS = (
    RunStarted,
    StateEntered,
    StateCompleted,
    RunCompleted,
    RetryScheduled,
    StateCached,
    StateSkipped,  # tags were checked with the manifest
    ReplayChecked,  # a run id and variable names of a snapshot already written
)


class SecretGuard:
    """Redacts failure texts and notes; refuses any other event that holds a secret."""

    def __init__(self, known: KnownSecrets, report: Reporter | None = None) -> None:
        self.known = known
        self._report = report

    def check(self, event: Event) -> Event:
        """``event`` as it may be written."""
        if isinstance(event, _ONLY_NAMES_AND_IDS):
            # State ids and the flow id were checked with the manifest; the rest are
            # content ids, cache keys, run ids, numbers and nbflow's own words. The hot
            # path stays cheap.
            return event
        if isinstance(event, StateKeyed) and event.reason is None:
            return event  # a key and its facets: hashes, which hold nothing
        if isinstance(event, StateFailed):
            error, done = self._redact_error(event.error)
            if done:
                self._tell(f"the error of state {event.state_id!r}", done)
                return event.model_copy(update={"error": error})
            return event
        if isinstance(event, Note):
            text, done = redact(event.text, self.known)
            if done:
                self._tell("a note", done)
                return event.model_copy(update={"text": text})
            return event
        self._refuse_secrets(event)
        return event

    def _redact_error(self, error: ErrorInfo) -> tuple[ErrorInfo, list[Redaction]]:
        done: list[Redaction] = []
        message, found = redact(error.message, self.known)
        done += found
        details = _redact_strings(error.details, self.known, done) if error.details else None
        if not done:
            return error, []
        return error.model_copy(update={"message": message, "details": details}), done

    def _refuse_secrets(self, event: Event) -> None:
        code: list[str] = []
        strings = [
            s for s in _strings(event.model_dump(mode="json"), code) if len(s) >= _CHECKED_MIN
        ]
        if not strings and not code:
            return
        sources = self.known.find("\n".join(strings + code))
        kinds = [f.kind for f in find_secrets(strings)] + [f"the value of {s}" for s in sources]
        kinds += [f.kind for source in code for f in find_secrets_in_code(source)]
        if kinds:
            raise NbflowError(
                "secrets_detected",
                f"a {event.kind} event would write a secret ({'; '.join(kinds)}); "
                "nothing was written",
                name=event.kind,
                hint="keep credentials in the environment or a secrets manager, and out of "
                "the values nbflow records",
            )

    def _tell(self, where: str, done: list[Redaction]) -> None:
        if self._report is not None:
            self._report(where, done)


def _strings(value: Any, code: list[str]) -> list[str]:
    """The strings of a JSON document, content ids left out; state code goes to ``code``."""
    if isinstance(value, str):
        return [] if is_content_id(value) or _is_cache_key(value) else [value]
    if isinstance(value, dict):
        found: list[str] = []
        for key, item in value.items():
            if key == "source" and isinstance(item, str):
                code.append(item)
            else:
                found += _strings(item, code)
        return found
    if isinstance(value, list):
        return [s for item in value for s in _strings(item, code)]
    return []


def _is_cache_key(value: str) -> bool:
    """``cacheN:<content id>`` (see :func:`nbflow.cache.make_key`)."""
    prefix, _, rest = value.partition(":")
    return prefix.startswith("cache") and prefix[5:].isdigit() and is_content_id(rest)


def _redact_strings(value: Any, known: KnownSecrets, done: list[Redaction]) -> Any:
    if isinstance(value, str):
        text, found = redact(value, known)
        done += found
        return text
    if isinstance(value, dict):
        return {key: _redact_strings(item, known, done) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_strings(item, known, done) for item in value]
    return value
