"""One opened ``.nbflow/`` folder: its artifact store and its event store together."""

from __future__ import annotations

from pathlib import Path

from nbflow.store.artifacts import ArtifactStore
from nbflow.store.events import EventStore, SqliteEventStore
from nbflow.store.layout import HOME_DIRNAME, HomeLayout, prepare_home


class Home:
    """The stores of one nbflow folder. Use as a context manager or call :meth:`close`."""

    def __init__(self, root: Path | str) -> None:
        self.layout: HomeLayout = prepare_home(Path(root))
        events = SqliteEventStore(self.layout.database)
        self.artifacts = ArtifactStore(self.layout, inline=events)
        events.set_commit_hooks(self.artifacts.prepare_commit, self.artifacts.committed)
        self.events: EventStore = events

    @classmethod
    def beside(cls, folder: Path | str) -> Home:
        """Open ``<folder>/.nbflow``, the home of the notebooks in ``folder``."""
        return cls(Path(folder) / HOME_DIRNAME)

    @property
    def root(self) -> Path:
        """The ``.nbflow`` folder."""
        return self.layout.root

    def close(self) -> None:
        """Make pending writes durable and close the database connection."""
        self.artifacts.flush()
        self.events.close()

    def __enter__(self) -> Home:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
