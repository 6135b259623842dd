"""Signed history: a per-user key, and HMACs of the documents that lead to unpickling.

Pickles run code when they are loaded, so a ``.nbflow`` made by someone else is as
dangerous as their code (DESIGN §5). Every manifest and snapshot document this user's
nbflow writes is signed: an HMAC-SHA256, under a key only this user can read, of the
document's content id. Because the id is the blake3 hash of the document's bytes, and the
document names every artifact it uses by its own hash, one signature covers everything a
restore or a resume will unpickle or execute. Readers check the signature before they
read the document, then the document's hash, then each artifact's hash.

The key lives beside Jupyter's own notebook secret, in ``jupyter_data_dir()`` (which
follows ``JUPYTER_DATA_DIR``, ``XDG_DATA_HOME`` and ``HOME``): never in a notebook folder,
so copying a project never copies the key. It is created 0600 on first use; a key file
that others can read, or that another user owns, is refused.

JSON contexts of the Python API are not signed: they are parsed, never unpickled or run,
and the manifest that names their code is signed.

Signatures are rows of the ``signatures`` table rather than fields inside the documents:
a document's id stays the hash of its content alone, so identical manifests are still
recognised as identical, and adopting a foreign history (``nbflow trust``) adds rows
without rewriting a single artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import sqlite3
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nbflow.errors import NbflowError, StorageError
from nbflow.model.errors import ErrorCategory
from nbflow.store.database import Database
from nbflow.store.layout import DIR_MODE, FILE_MODE

KEY_FILE = "nbflow_signing_key"
_DOMAIN = b"nbflow-document-v1\x00"
_KEY_BYTES = 32


class UntrustedHistoryError(NbflowError):
    """A document of the history is not signed with this user's key: nothing was loaded."""

    category = ErrorCategory.TRUST


def key_path() -> Path:
    """Where this user's key is: ``<jupyter data dir>/nbflow_signing_key``."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / KEY_FILE


@dataclass(frozen=True)
class SigningKey:
    """This user's secret, and the short id that names it in the signatures table."""

    secret: bytes
    path: Path

    @property
    def key_id(self) -> str:
        """A public name of the key (a hash of it), stored beside each signature."""
        return hashlib.sha256(b"nbflow-key-id\x00" + self.secret).hexdigest()[:16]

    def mac(self, artifact_id: str) -> str:
        """The signature of the document ``artifact_id``."""
        return hmac.new(self.secret, _DOMAIN + artifact_id.encode(), hashlib.sha256).hexdigest()

    @classmethod
    def load(cls, path: Path | None = None) -> SigningKey:
        """This user's key, created on first use."""
        path = path or key_path()
        try:
            return cls(_read_key(path), path)
        except FileNotFoundError:
            pass
        _create_key(path)
        return cls(_read_key(path), path)


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise _insecure(path, "it belongs to another user")
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise _insecure(path, f"others may read it (mode {stat.S_IMODE(info.st_mode):o})")
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        secret = bytes.fromhex(data.decode("ascii").strip())
    except ValueError:
        secret = b""
    if len(secret) < _KEY_BYTES:
        raise StorageError(
            "signing_key_unreadable",
            f"the nbflow signing key {path} is not a key nbflow wrote",
            name=str(path),
            hint="move the file away; a new key is made, and histories signed with the old "
            "one must then be adopted again with `nbflow trust`",
        )
    return secret


def _create_key(path: Path) -> None:
    """Write a new key without ever exposing a partial or readable file."""
    try:
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
            os.write(fd, secrets.token_hex(_KEY_BYTES).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process made the key meanwhile: use that
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except OSError as exc:
        raise StorageError(
            "signing_key_unwritable",
            f"cannot create the nbflow signing key {path}: {exc.strerror or exc}",
            name=str(path),
            hint="make the folder writable, or set JUPYTER_DATA_DIR to a private folder",
        ) from exc


def _insecure(path: Path, why: str) -> StorageError:
    return StorageError(
        "signing_key_insecure",
        f"the nbflow signing key {path} is refused: {why}",
        name=str(path),
        hint=f"run `chmod 600 {path}` if it is yours; otherwise move it away",
    )


class SqliteSignatures:
    """The ``signatures`` table: ``(artifact id, key id) -> mac``."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @staticmethod
    def insert_in(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, str]]) -> None:
        """Insert ``(artifact_id, key_id, mac)`` rows inside the caller's transaction."""
        conn.executemany(
            "INSERT OR REPLACE INTO signatures (artifact_id, key_id, mac) VALUES (?, ?, ?)", rows
        )

    def put(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """Durably store signature rows in their own transaction."""
        if rows:
            with self.database.transaction() as conn:
                self.insert_in(conn, rows)

    def mac(self, artifact_id: str, key_id: str) -> str | None:
        """The stored signature of ``artifact_id`` under ``key_id``, or None."""
        with self.database.reading() as conn:
            row = conn.execute(
                "SELECT mac FROM signatures WHERE artifact_id = ? AND key_id = ?",
                (artifact_id, key_id),
            ).fetchone()
        return str(row[0]) if row else None

    def signed_by(self, key_id: str) -> set[str]:
        """Every artifact id signed under ``key_id``."""
        with self.database.reading() as conn:
            rows = conn.execute(
                "SELECT artifact_id FROM signatures WHERE key_id = ?", (key_id,)
            ).fetchall()
        return {row[0] for row in rows}

    def delete(self, artifact_id: str) -> None:
        """Forget every signature of ``artifact_id`` (garbage collection)."""
        with self.database.transaction() as conn:
            conn.execute("DELETE FROM signatures WHERE artifact_id = ?", (artifact_id,))
