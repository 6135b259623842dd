"""IPython's own names are never saved; a user's `_`, `__` and a name shadowing an
IPython builtin are saved and restored (decided from the shell, not from a name list)."""

from __future__ import annotations

from pathlib import Path

from conftest import KernelFactory

from nbflow.engine.history import read_history
from nbflow.snapshot import NamespaceCodec
from nbflow.store import Home


def test_a_users_underscores_and_an_own_open_come_back_after_a_restart(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    kernel.ok("1 + 1")  # IPython's output cache now holds a value under _ and _<n>
    kernel.ok(
        "%%state names\n"
        "pairs = [(1, 'a'), (2, 'b')]\n"
        "first, _ = pairs[0]\n"
        "__ = 'two underscores'\n"
        "def open(*args):\n"
        "    return 'my own open'\n"
        "kept = True"
    )
    with Home(tmp_path / ".nbflow") as home:
        (record, *_rest) = home.events.runs()
        history = read_history(record.run_id, home.events.read_range(record.run_id))
        snapshot = history.completed["names"]
        names = set(NamespaceCodec(home.artifacts).document(snapshot).names())
    assert {"_", "__", "open", "first", "pairs", "kept"} <= names
    assert not names & {"In", "Out", "get_ipython", "exit", "quit", "_oh", "_ih", "_dh"}
    assert not any(n.startswith("_i") for n in names), names
    kernel.close()
    again = kernels(NBFLOW_TEXT="1")
    again.ok("%load_ext nbflow")
    again.ok("%flow restore names")
    shown = again.ok("print(repr(_), repr(__), open(), first, kept)").stdout.strip()
    assert shown == "'a' 'two underscores' my own open 1 True"


def test_ipython_names_are_not_saved_when_untouched(kernels: KernelFactory, tmp_path: Path) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    kernel.ok("'a result'")
    kernel.ok("%%state plain\nx = 1")
    with Home(tmp_path / ".nbflow") as home:
        (record, *_rest) = home.events.runs()
        history = read_history(record.run_id, home.events.read_range(record.run_id))
        names = set(NamespaceCodec(home.artifacts).document(history.completed["plain"]).names())
    assert names == {"x"}, names
    restored = kernel.ok("%flow restore plain\nprint(open is __builtins__.open or 'ipython', _)")
    assert "a result" in restored.stdout, "IPython's own _ was left as it was"
