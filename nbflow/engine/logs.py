"""Engine logging: every record carries the run id, state id and attempt."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

LOGGER = logging.getLogger("nbflow.engine")


class RunLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds ``run_id``, ``state_id`` and ``attempt`` to each record's attributes."""

    def __init__(
        self, run_id: str, state_id: str | None = None, attempt: int | None = None
    ) -> None:
        super().__init__(LOGGER, {"run_id": run_id, "state_id": state_id, "attempt": attempt})

    def for_attempt(self, state_id: str, attempt: int) -> RunLogger:
        """A logger for one attempt of one state in the same run."""
        assert self.extra is not None
        return RunLogger(str(self.extra["run_id"]), state_id, attempt)

    def process(
        self, msg: str, kwargs: MutableMapping[str, Any]
    ) -> tuple[str, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs
