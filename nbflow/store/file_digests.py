"""Content ids of the files states declare (``--inputs``), with a stat cache.

A file's content id is its blake3 hash. Hashing a 1 GB file on every run would cost more
than many states, so the id is kept with the file's ``stat`` (size, modification and
change times in nanoseconds, inode, device) in the ``file_digests`` table, and the file is
read again only when one of them changed. Rewriting a file changes its times even when
its size stays the same.

File times have a granularity (a kernel tick, or two seconds on some filesystems), so a
file rewritten in the same tick as it was hashed keeps its stat. A stat is therefore
kept only for a file last modified at least :data:`SETTLED_NS` before it was hashed, and
unchanged while it was read; a newer file is read again every time until it settles.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from nbflow.hashing.ids import ALGORITHM, new_hasher
from nbflow.store.database import Database

_CHUNK = 1 << 24
SETTLED_NS = 2_000_000_000
"""How old a file's modification time must be for its stat to stand for its content."""


def expand(patterns: Iterable[str], folder: Path) -> list[tuple[str, Path | None]]:
    """``(pattern or path, file)`` for every file ``patterns`` name under ``folder``, in
    order; a pattern that matches nothing gives ``(pattern, None)``."""
    found: list[tuple[str, Path | None]] = []
    for pattern in patterns:
        base = Path(pattern).expanduser()
        root = base if base.is_absolute() else folder / base
        if any(ch in pattern for ch in "*?["):
            relative = str(base) if not base.is_absolute() else str(base.relative_to("/"))
            anchor = Path("/") if base.is_absolute() else folder
            matches = sorted(p for p in anchor.glob(relative) if p.is_file())
        elif root.is_dir():
            matches = sorted(p for p in root.rglob("*") if p.is_file())
        else:
            matches = [root] if root.is_file() else []
        if not matches:
            found.append((pattern, None))
        found.extend((pattern, match) for match in matches)
    return found


class SqliteFileDigests:
    """The ``file_digests`` table: a file's content id for as long as its stat is the same."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.hashed_bytes = 0
        """Bytes read to hash files so far (the stat cache keeps it small)."""

    def digest(self, path: Path) -> str:
        """The content id of the file at ``path``."""
        info = os.stat(path)
        stat = json.dumps(
            [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]
        )
        name = str(path.resolve())
        with self.database.reading() as conn:
            row = conn.execute(
                "SELECT stat, digest FROM file_digests WHERE path = ?", (name,)
            ).fetchone()
        if row is not None and row[0] == stat:
            return str(row[1])
        hasher = new_hasher()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
                self.hashed_bytes += len(chunk)
        digest = f"{ALGORITHM}:{hasher.hexdigest()}"
        after = os.stat(path)
        settled = time.time_ns() - info.st_mtime_ns >= SETTLED_NS
        if not settled or (after.st_mtime_ns, after.st_size) != (info.st_mtime_ns, info.st_size):
            return digest  # may change again within the same tick: not remembered
        with self.database.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO file_digests (path, stat, digest) VALUES (?, ?, ?)",
                (name, stat, digest),
            )
        return digest
