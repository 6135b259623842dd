"""Early writeback: every byte of a file artifact is handed to the disk as it is written,
and a file descriptor that cannot take the call leaves writes working."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from nbflow.hashing import content_id
from nbflow.store import Home, artifacts, writeback


def test_every_written_byte_is_handed_to_the_disk_in_order(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "_WRITE_CHUNK", 1 << 16)
    ranges: list[tuple[int, int]] = []
    real = writeback.start_writeback

    def spy(fd: int, offset: int, nbytes: int) -> None:
        ranges.append((offset, nbytes))
        real(fd, offset, nbytes)

    monkeypatch.setattr(artifacts, "start_writeback", spy)
    parts = [os.urandom(300_000), os.urandom(70_000)]
    artifact_id = home.artifacts.put_buffers(parts)
    assert artifact_id == content_id(b"".join(parts))
    assert home.artifacts.get(artifact_id) == b"".join(parts)
    # Contiguous ranges from 0 to the end: nothing skipped, nothing handed twice.
    offset = 0
    for start, nbytes in ranges:
        assert start == offset
        assert 0 < nbytes <= 1 << 16
        offset += nbytes
    assert offset == 370_000


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_a_descriptor_that_refuses_the_call_turns_it_off_without_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writeback, "_kick", writeback._bind())
    assert writeback._kick is not None
    path = tmp_path / "file"
    path.write_bytes(b"x" * 10_000)
    fd = os.open(path, os.O_RDONLY)
    try:
        writeback.start_writeback(fd, 0, 10_000)  # a regular file takes it
    finally:
        os.close(fd)
    assert writeback._kick is not None
    read_end, write_end = os.pipe()
    try:
        writeback.start_writeback(write_end, 0, 10)  # a pipe cannot: ESPIPE
    finally:
        os.close(read_end)
        os.close(write_end)
    assert writeback._kick is None
    writeback.start_writeback(123456, 0, 10)  # off: no call, no error
