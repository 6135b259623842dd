"""What a state printed and displayed in a worker, recorded in order and shown again
in the cell that runs the plan."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

_TEXT_LIMIT = 1 << 20
"""Recorded stream text per state beyond this is cut (with a note): outputs travel back
with the outcome."""


@dataclass(frozen=True)
class OutputRecord:
    """One output: ``stdout``/``stderr`` text, or a ``display`` bundle (``result`` for
    the value of the cell's last expression)."""

    kind: str
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


class _Stream:
    """A text stream that appends what is written to the recorder."""

    def __init__(self, recorder: OutputRecorder, kind: str) -> None:
        self._recorder = recorder
        self._kind = kind
        self.encoding = "utf-8"

    def write(self, text: str) -> int:
        self._recorder.text(self._kind, text)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class OutputRecorder:
    """Collects stdout, stderr and displays in the order they happen."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []
        self._size = 0

    def text(self, kind: str, text: str) -> None:
        if not text or self._size > _TEXT_LIMIT:
            return
        self._size += len(text)
        if self._size > _TEXT_LIMIT:
            text += "\n[nbflow: output cut at 1 MiB]\n"
        last = self.records[-1] if self.records else None
        if last is not None and last.kind == kind:
            self.records[-1] = OutputRecord(kind, last.text + text)
        else:
            self.records.append(OutputRecord(kind, text))

    def display(self, kind: str, data: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        self.records.append(OutputRecord(kind, data=dict(data), metadata=dict(metadata or {})))

    @contextmanager
    def recording(self, shell: Any) -> Iterator[None]:
        """Record everything ``shell``'s code prints or displays meanwhile."""
        streams: tuple[TextIO, TextIO] = (sys.stdout, sys.stderr)
        publisher = shell.display_pub
        hook = shell.displayhook
        old_publish = publisher.publish
        old_write = hook.write_format_data
        old_prompt = hook.write_output_prompt

        def publish(data: dict[str, Any], metadata: dict[str, Any] | None = None, **_: Any) -> None:
            self.display("display", data, metadata)

        def write_format_data(data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
            self.display("result", data, metadata)

        sys.stdout = _Stream(self, "stdout")
        sys.stderr = _Stream(self, "stderr")
        publisher.publish = publish
        hook.write_format_data = write_format_data
        hook.write_output_prompt = lambda: None
        try:
            yield
        finally:
            sys.stdout, sys.stderr = streams
            publisher.publish = old_publish
            hook.write_format_data = old_write
            hook.write_output_prompt = old_prompt


def show_outputs(records: tuple[OutputRecord, ...]) -> None:
    """Show recorded outputs here, in order: text on this process's streams, displays
    through IPython's display machinery (plain text when there is none)."""
    for record in records:
        if record.kind == "stdout":
            sys.stdout.write(record.text)
            sys.stdout.flush()
        elif record.kind == "stderr":
            sys.stderr.write(record.text)
            sys.stderr.flush()
        else:
            _display(record)


def _display(record: OutputRecord) -> None:
    from IPython.core.getipython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.display_pub.publish(data=record.data, metadata=record.metadata)
        return
    text = record.data.get("text/plain")
    if text is not None:
        print(text)


def notebook_outputs(records: tuple[OutputRecord, ...]) -> list[dict[str, Any]]:
    """Recorded outputs as the outputs of a notebook cell (nbformat 4)."""
    outputs: list[dict[str, Any]] = []
    for record in records:
        if record.kind in ("stdout", "stderr"):
            outputs.append({"output_type": "stream", "name": record.kind, "text": record.text})
        elif record.kind == "result":
            outputs.append(
                {
                    "output_type": "execute_result",
                    "data": record.data,
                    "metadata": record.metadata,
                    "execution_count": None,
                }
            )
        else:
            outputs.append(
                {"output_type": "display_data", "data": record.data, "metadata": record.metadata}
            )
    return outputs
