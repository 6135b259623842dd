"""Starting a file's writeback early, so that its final ``fsync`` has little left to wait for.

Written bytes sit in the page cache until the kernel decides to write them back, which for
a file written at memory speed is usually when ``fsync`` asks: the disk then idles while
the bytes are copied and hashed, and the copy then waits for the disk. Linux's
``sync_file_range(SYNC_FILE_RANGE_WRITE)`` starts the writeback of a range without
waiting for it, so the disk works while the rest of the file is still being written.

It promises nothing: durability still comes from ``fsync``, which also reports any write
error. Where the call does not exist (not Linux, or no C library to bind), or fails, it is
simply not made again in this process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

_SYNC_FILE_RANGE_WRITE = 2
"""From ``<fcntl.h>``: start writing back the dirty pages of the range, do not wait."""

_Kick = Callable[[int, int, int], int]


def _bind() -> _Kick | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return lambda fd, offset, nbytes: int(function(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE))


_kick: _Kick | None = _bind()


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the kernel to start writing ``nbytes`` of ``fd`` from ``offset`` to the disk."""
    global _kick
    if _kick is None or nbytes <= 0:
        return
    if _kick(fd, offset, nbytes) != 0:
        _kick = None  # e.g. a file system that does not support it: fsync does it all
