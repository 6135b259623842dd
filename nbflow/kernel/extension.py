"""``%load_ext nbflow``: registers the magics and opens the notebook's history."""

from __future__ import annotations

import os
import sys
from typing import Any

from IPython.core.interactiveshell import InteractiveShell

from nbflow.errors import NbflowError
from nbflow.kernel.magics import Handle, NbflowMagics
from nbflow.kernel.session import KernelSession, StateFailedError, StateInterruptedError
from nbflow.kernel.transform import HANDLE, transform_cell
from nbflow.ui.presenter import Presenter
from nbflow.ui.text import TextPresenter

_SESSIONS: dict[int, KernelSession] = {}
"""The extension's handle: one session per shell."""


def _show_state_error(
    shell: InteractiveShell, etype: type, value: BaseException, tb: Any, tb_offset: Any = None
) -> None:
    # A state's own traceback was shown where it happened; one line says what follows.
    # Other nbflow errors (a full disk, a damaged history) are one line too: their code,
    # what happened and how to fix it; an internal traceback would help nobody.
    if isinstance(value, (StateFailedError, StateInterruptedError)):
        print(f"nbflow: {value.message}")
    elif isinstance(value, NbflowError):
        hint = f" ({value.hint})" if value.hint else ""
        print(f"nbflow: [{value.code}] {value.message}{hint}", file=sys.stderr)
    else:
        print(f"nbflow: {value}")
    return None


def load(shell: InteractiveShell) -> KernelSession:
    """Load nbflow into ``shell`` (idempotent) and return its session."""
    existing = _SESSIONS.get(id(shell))
    if existing is not None:
        return existing
    session = KernelSession(shell, TextPresenter())  # type: ignore[arg-type]
    presenter = _presenter_for(shell, session)
    session.presenter = presenter
    _SESSIONS[id(shell)] = session
    shell.register_magics(NbflowMagics(shell, session))
    shell.user_ns[HANDLE] = Handle(session)
    shell.user_ns_hidden[HANDLE] = None
    shell.input_transformers_cleanup.append(transform_cell)
    shell.set_custom_exc((NbflowError,), _show_state_error)  # type: ignore[no-untyped-call]
    location = session.location
    notebook = location.notebook or "an unnamed notebook (flow 'untitled')"
    presenter.message(f"nbflow: {notebook}, history in {session.home.root}")
    notice = session.home.network_notice()
    if notice is not None:
        presenter.message(f"nbflow: {notice}")
    session.views.banner()
    return session


def _presenter_for(shell: InteractiveShell, session: KernelSession) -> Presenter:
    """Widgets in a kernel with ipywidgets (a frontend may draw them), text elsewhere.

    ``NBFLOW_TEXT=1`` asks for text even in a kernel.
    """
    if getattr(shell, "kernel", None) is None or os.environ.get("NBFLOW_TEXT") == "1":
        return TextPresenter()
    try:
        from nbflow.ui.widgets import WidgetPresenter
    except ImportError:
        return TextPresenter()
    return WidgetPresenter(session)


def unload(shell: InteractiveShell) -> None:
    """Remove what :func:`load` added."""
    session = _SESSIONS.pop(id(shell), None)
    if session is None:
        return
    if transform_cell in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(transform_cell)
    shell.user_ns.pop(HANDLE, None)
    shell.user_ns_hidden.pop(HANDLE, None)
    shell.set_custom_exc((), None)  # type: ignore[no-untyped-call]
    magics = shell.magics_manager.magics
    magics["cell"].pop("state", None)
    magics["line"].pop("flow", None)
    session.close()
