"""The ``.nbflow/`` folder: creation with private permissions, and its fixed files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nbflow.errors import StorageError

HOME_DIRNAME = ".nbflow"
DB_NAME = "nbflow.db"
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by nbflow.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
DIR_MODE = 0o700
FILE_MODE = 0o600


@dataclass(frozen=True)
class HomeLayout:
    """Paths inside one ``.nbflow/`` folder."""

    root: Path

    @property
    def objects(self) -> Path:
        """Where artifacts live, as ``objects/<2 hex>/<rest>``."""
        return self.root / "objects"

    @property
    def tmp(self) -> Path:
        """Where artifacts are written before they are renamed into place."""
        return self.root / "tmp"

    @property
    def database(self) -> Path:
        """The SQLite event store."""
        return self.root / DB_NAME


def ensure_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with mode 0700, fsyncing the new entries."""
    if path.is_dir():
        return
    ensure_dir(path.parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise StorageError(
                "home_not_a_directory",
                f"{path} exists and is not a folder",
                name=str(path),
                hint="move the file away or set NBFLOW_HOME to another folder",
            ) from None
        return
    os.chmod(path, DIR_MODE)  # mkdir's mode is filtered through the umask
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with ``data``, mode 0600, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_home(root: Path) -> HomeLayout:
    """Create ``root`` as an nbflow home if needed and return its layout.

    Raises :class:`StorageError` with code ``home_not_writable`` when the folder cannot be
    created or written, naming the folder and how to choose another.
    """
    layout = HomeLayout(root)
    try:
        ensure_dir(root)
        for sub in (layout.objects, layout.tmp):
            ensure_dir(sub)
        gitignore = root / ".gitignore"
        if not gitignore.exists():
            write_private_file(gitignore, b"*\n")
        tag = root / "CACHEDIR.TAG"
        if not tag.exists():
            write_private_file(tag, CACHEDIR_TAG.encode())
    except PermissionError as exc:
        raise StorageError(
            "home_not_writable",
            f"cannot create or write the nbflow folder {root}: {exc.strerror}",
            name=str(root),
            hint="set NBFLOW_HOME to a writable folder, or pass home= to nbflow.Flow",
        ) from exc
    return layout
