"""Finding the notebook a kernel runs, and so the ``.nbflow`` folder beside it.

Order (DESIGN §1): ``NBFLOW_HOME`` chooses the home folder outright; otherwise the notebook
is taken from VS Code's ``__vsc_ipynb_file__``, then IPython's ``__session__`` or the
``JPY_SESSION_NAME`` variable that Jupyter servers set, and the folder is the notebook's.
Without any of them (a console, an unsaved buffer) the working directory is used and the
flow is called ``untitled``. A renamed notebook keeps the name it had when its kernel
started until the kernel restarts, because Jupyter does not tell a running kernel.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbflow.store.layout import HOME_DIRNAME

UNTITLED = "untitled"


@dataclass(frozen=True)
class NotebookLocation:
    """Where the notebook is and where its history goes."""

    folder: Path
    """The notebook's folder (or the working directory)."""
    notebook: str | None
    """The notebook's file name, or None when it is not known."""
    home: Path
    """The ``.nbflow`` folder to use."""
    found_by: str
    """How the notebook was found, for the message shown on load."""

    @property
    def flow_id(self) -> str:
        """The flow's name: the notebook's file name, or ``untitled``."""
        return self.notebook or UNTITLED


def locate(user_ns: Mapping[str, Any], environ: Mapping[str, str], cwd: Path) -> NotebookLocation:
    """Where the notebook of this kernel is, from its namespace and environment."""
    notebook_path: Path | None = None
    found_by = "the working directory"
    for source, value in (
        ("VS Code", user_ns.get("__vsc_ipynb_file__")),
        ("the Jupyter session", user_ns.get("__session__")),
        ("JPY_SESSION_NAME", environ.get("JPY_SESSION_NAME")),
    ):
        if isinstance(value, str) and value.strip():
            notebook_path = Path(value)
            found_by = source
            break
    if notebook_path is not None:
        # Servers may give a path relative to their root; the kernel starts in the
        # notebook's folder, so a relative path keeps only its name.
        folder = notebook_path.parent if notebook_path.is_absolute() else cwd
        name: str | None = notebook_path.name
    else:
        folder, name = cwd, None
    configured = environ.get("NBFLOW_HOME")
    if configured:
        return NotebookLocation(folder, name, Path(configured), "NBFLOW_HOME")
    return NotebookLocation(folder, name, folder / HOME_DIRNAME, found_by)


def fallback_home(folder: Path, environ: Mapping[str, str]) -> Path:
    """A private home for a notebook whose own folder cannot be written."""
    cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return Path(cache) / "nbflow" / digest / HOME_DIRNAME


def current_environment() -> Mapping[str, str]:
    """The process environment (a seam for tests that start real kernels)."""
    return os.environ
