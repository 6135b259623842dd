"""Helpers shared by the snapshot tests (a module, not a conftest: mypy sees one
``conftest`` per project)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nbflow.snapshot import NamespaceCodec
from nbflow.store import Home


@functools.cache
def shared_home() -> Home:
    """One real home for the property tests of a run, whose examples would otherwise each
    pay for a new database. Removed when the test process exits."""
    folder = Path(tempfile.mkdtemp(prefix="nbflow-snapshot-"))
    home = Home(folder / ".nbflow")

    def remove() -> None:
        home.close()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return home


def roundtrip(home: Home, namespace: dict[str, Any]) -> dict[str, Any]:
    """Capture with one codec and restore with a fresh one, as after a kernel restart."""
    snapshot_id = NamespaceCodec(home.artifacts).capture(namespace)
    return NamespaceCodec(home.artifacts).restore(snapshot_id)


def define(source: str) -> dict[str, Any]:
    """Run ``source`` as a notebook cell would: in a namespace that is ``__main__``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(source, namespace)
    return namespace
