"""One opened ``.nbflow/`` folder: its database, artifact store, event store and leases."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from nbflow.store.artifacts import ArtifactStore
from nbflow.store.blobs import SqliteBlobs
from nbflow.store.cache_index import SqliteCacheIndex
from nbflow.store.database import Database
from nbflow.store.events import EventStore, SqliteEventStore
from nbflow.store.file_digests import SqliteFileDigests
from nbflow.store.layout import HOME_DIRNAME, HomeLayout, prepare_home
from nbflow.store.leases import SqliteLeases
from nbflow.store.references import documents_of
from nbflow.store.signing import SigningKey, SqliteSignatures


class Home:
    """The stores of one nbflow folder. Use as a context manager or call :meth:`close`.

    ``key`` signs what this process writes and is required of what it loads (default:
    this user's key, see :mod:`nbflow.store.signing`).
    """

    def __init__(self, root: Path | str, *, key: SigningKey | None = None) -> None:
        self.layout: HomeLayout = prepare_home(Path(root))
        self.database = Database(self.layout.database)
        try:
            self.key = key or SigningKey.load()
            self.signatures = SqliteSignatures(self.database)
            self.artifacts = ArtifactStore(
                self.layout,
                SqliteBlobs(self.database),
                database=self.database,
                signatures=self.signatures,
                key=self.key,
            )
            events = SqliteEventStore(self.database)
            self.events: EventStore = events
            self.leases = SqliteLeases(self.database, events)
            self.cache = SqliteCacheIndex(self.database)
            self.file_digests = SqliteFileDigests(self.database)
            if self.database.migrated_from is not None and self._made_here():
                self.adopt_legacy_history()
            if self.database.repaired:
                logging.getLogger("nbflow.store").warning(
                    "%s: damaged index entries were rebuilt from the intact rows: %s",
                    self.layout.database,
                    "; ".join(self.database.repaired[:3]),
                )
        except BaseException:
            self.database.close()
            raise

    @classmethod
    def beside(cls, folder: Path | str) -> Home:
        """Open ``<folder>/.nbflow``, the home of the notebooks in ``folder``."""
        return cls(Path(folder) / HOME_DIRNAME)

    @property
    def root(self) -> Path:
        """The ``.nbflow`` folder."""
        return self.layout.root

    def network_notice(self) -> str | None:
        """What to tell the user once when the history is on a network or FUSE mount."""
        mount = self.database.network_mount
        if mount is None:
            return None
        return (
            f"{self.root} is on {mount.describe()}: SQLite's WAL is not safe there, so the "
            "history uses a rollback journal (slower commits). Do not drive one notebook's "
            "runs from two machines at once; set NBFLOW_HOME to a local folder for speed"
        )

    def _made_here(self) -> bool:
        """Whether this user's nbflow made the folder: owned by this user, private modes."""
        try:
            folder, database = os.stat(self.root), os.stat(self.layout.database)
        except OSError:
            return False
        uid = os.getuid()
        private = not (stat.S_IMODE(folder.st_mode) & 0o077) and not (
            stat.S_IMODE(database.st_mode) & 0o077
        )
        return folder.st_uid == uid and database.st_uid == uid and private

    def adopt_legacy_history(self) -> int:
        """Sign the documents of a history written before nbflow signed them; how many.

        Called once, when a schema-1 database is first opened by the user who owns it
        (see docs/decisions.md, "Signed history").
        """
        roots = documents_of(self.events)
        with self.artifacts.batch():
            for artifact_id in roots:
                self.artifacts.sign(artifact_id)
        return len(roots)

    def close(self) -> None:
        """Make pending writes durable, checkpoint the WAL and close the database."""
        try:
            self.leases.close()
            self.artifacts.flush()
        finally:
            self.database.close()

    def __enter__(self) -> Home:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
