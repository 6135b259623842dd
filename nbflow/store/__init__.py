"""Storage: the ``.nbflow/`` layout, the artifact store and the SQLite event store."""

from nbflow.store.artifacts import ArtifactStore
from nbflow.store.database import Database
from nbflow.store.events import EventStore, RunRecord, SqliteEventStore, now_us
from nbflow.store.home import Home
from nbflow.store.layout import HOME_DIRNAME, HomeLayout, prepare_home

__all__ = [
    "HOME_DIRNAME",
    "ArtifactStore",
    "Database",
    "EventStore",
    "Home",
    "HomeLayout",
    "RunRecord",
    "SqliteEventStore",
    "now_us",
    "prepare_home",
]
