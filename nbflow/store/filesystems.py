"""Which filesystem holds a folder, and whether SQLite's WAL is safe there.

SQLite's WAL mode keeps its index in shared memory (``-shm``), which only processes on one
machine share; on NFS, SMB/CIFS and FUSE mounts the memory map and the byte-range locks
behind it are not reliable, and SQLite's own documentation says not to use WAL there. A
``.nbflow`` on such a mount is therefore opened in rollback-journal mode: slower commits,
no shared memory, and locks taken on the database file itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NETWORK_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre",
     "gpfs", "beegfs", "davfs", "sshfs", "ncpfs", "virtiofs"}
)  # fmt: skip
"""Filesystem types that may be shared between machines."""
LOCAL_FUSE_TYPES = frozenset({"fuseblk"})
"""FUSE types that are local block devices (ntfs-3g, exfat): WAL works there."""


@dataclass(frozen=True)
class Mount:
    """The mount that holds a path."""

    point: str
    fs_type: str
    source: str

    @property
    def is_network(self) -> bool:
        """Whether WAL mode is unsafe on this mount (network or FUSE)."""
        kind = self.fs_type
        if kind in LOCAL_FUSE_TYPES:
            return False
        return kind in NETWORK_TYPES or kind == "fuse" or kind.startswith("fuse.")

    def describe(self) -> str:
        """``NFS (server:/export on /mnt/share)`` and the like, for messages."""
        kind = self.fs_type
        label = {"nfs": "NFS", "nfs4": "NFS", "cifs": "SMB/CIFS", "smb3": "SMB/CIFS"}.get(kind)
        if label is None:
            label = "FUSE" if kind.startswith("fuse") else kind
        return f"{label} ({kind}, {self.source} on {self.point})"


def _unescape(field: str) -> str:
    """Mount table fields escape space, tab, newline and backslash as octal."""
    out, index = [], 0
    while index < len(field):
        if field[index] == "\\" and field[index + 1 : index + 4].isdigit():
            out.append(chr(int(field[index + 1 : index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a ``/proc/self/mountinfo`` text."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append(Mount(_unescape(fields[4]), tail[0], _unescape(tail[1])))
    return mounts


def mount_of(path: Path, mountinfo: str | None = None) -> Mount | None:
    """The mount holding ``path`` (the deepest mount point above it), or None if unknown."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best: Mount | None = None
    for mount in parse_mountinfo(mountinfo):
        point = mount.point.rstrip("/") or "/"
        inside = target == point or target.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = mount
    return best
