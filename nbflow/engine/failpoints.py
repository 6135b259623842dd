"""Test-only failpoints and the control-flow signals the engine raises through user code."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Failpoints:
    """Switches that make the engine stop at chosen points, for crash tests.

    ``stop_after_body_once``: the next attempt whose body returns stops the engine before
    its checkpoint is recorded, as if the process had died right there.
    """

    stop_after_body_once: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take_stop_after_body(self) -> bool:
        """True once after ``stop_after_body_once`` was set."""
        with self._lock:
            armed = self.stop_after_body_once
            self.stop_after_body_once = False
            return armed
