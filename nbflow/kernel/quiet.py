"""Knowing that no code ran since the last checkpoint, so that a state cell captures once.

In run mode a ``%%state`` cell is a one-state run: it captures the namespace as the run's
start, runs its code, and captures again. When the cell right before was a state cell too,
its last capture already holds the namespace this cell starts from, unless some code ran
in between. :class:`QuietWatch` decides that, and answers "in doubt" whenever it cannot be
sure; the codec then captures as before. The answer decides the run's recorded start and
its cache key, so a wrong "quiet" would be a wrong result: every rule below fails closed.

Code reaches a kernel's namespace by these ways, each watched:

* a cell (``pre_run_cell``): exactly one may have started since, the state cell asking;
* a kernel message (widget callbacks arrive as ``comm_msg``; completions may evaluate
  properties; the debugger arrives on the control channel): every handler of the kernel is
  wrapped to count its messages, but for a few that only read the kernel's own records;
* a thread: any live thread that is not the kernel's, IPython's or nbflow's, at the last
  capture or now;
* the event loop: a task whose coroutine is not the kernel's, or a callback waiting in the
  loop whose function is not (a GUI event loop integration counts as doubt too);
* nbflow itself (a restore puts new objects into the namespace): the names and the
  identities of their values must be those of the last capture, which are held until then.

Left out, knowingly: finalizers (``__del__``) and signal handlers that write to the
namespace. Neither is a way notebooks change their data.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_READ_ONLY_MESSAGES = frozenset(
    {
        "kernel_info_request",
        "comm_info_request",
        "history_request",
        "is_complete_request",
        "usage_request",
        "connect_request",
        "list_subshell_request",
    }
)
"""Requests that read the kernel's own records and run no user code."""

_KERNEL_PACKAGES = ("ipykernel", "IPython", "jupyter_client", "zmq", "tornado", "comm", "asyncio")
"""Packages whose tasks and loop callbacks are the kernel's own machinery."""
_THREAD_PACKAGES = frozenset({"ipykernel", "IPython", "jupyter_client", "zmq", "comm", "nbflow"})
"""Packages whose threads are the kernel's (not asyncio or tornado: a thread running an
event loop of its own runs whatever the user gave it)."""


@dataclass
class _Mark:
    snapshot_id: str
    cells: int
    messages: int
    values: dict[str, Any]
    """The namespace's items at the capture, IPython's left out (it rebinds ``_i`` and the
    like at every cell); holding them keeps every ``id`` unique."""


class QuietWatch:
    """Counts what could have changed a shell's namespace since its last capture."""

    def __init__(self, shell: Any, owned: Callable[[str, Any], bool]) -> None:
        self._shell = shell
        self._owned = owned
        self._cells = 0
        self._state_cell = False
        self._messages = 0
        self._mark: _Mark | None = None
        self._unwrap: list[Callable[[], None]] = []
        self._roots = _package_roots()
        shell.events.register("pre_run_cell", self._before_cell)
        kernel = getattr(shell, "kernel", None)
        for handlers_name in ("shell_handlers", "control_handlers"):
            handlers = getattr(kernel, handlers_name, None)
            if isinstance(handlers, dict):
                self._wrap(handlers)

    def close(self) -> None:
        """Stop watching: the hook and the kernel's handlers are as they were."""
        self._shell.events.unregister("pre_run_cell", self._before_cell)
        for undo in self._unwrap:
            undo()
        self._unwrap.clear()
        self._mark = None

    def mark(self, snapshot_id: str, namespace: dict[str, Any]) -> None:
        """``snapshot_id`` holds ``namespace`` as it is now."""
        if self._doubt_outside_cells() is not None:
            self._mark = None  # something may run between now and the next look
            return
        values = {name: value for name, value in namespace.items() if not self._owned(name, value)}
        self._mark = _Mark(snapshot_id, self._cells, self._messages, values)

    def forget(self) -> None:
        """Drop the last mark (and the values it holds)."""
        self._mark = None

    def unchanged(self, namespace: dict[str, Any]) -> str | None:
        """The last capture's snapshot id if certainly nothing changed ``namespace`` since;
        None when in doubt (and the mark is dropped: it holds the values alive). When
        nothing changed, the mark stands for now: a state served from the cache with its
        outputs in place already captures nothing more, and the next cell may ask."""
        mark, self._mark = self._mark, None
        if mark is None or self._doubt(mark, namespace) is not None:
            return None
        self._mark = _Mark(mark.snapshot_id, self._cells, self._messages, mark.values)
        return mark.snapshot_id

    def _doubt(self, mark: _Mark, namespace: dict[str, Any]) -> str | None:
        """Why ``namespace`` may have changed since ``mark``; None when it cannot have."""
        if self._cells != mark.cells + 1 or not self._state_cell:
            return "a cell ran since"
        expected = mark.messages + (1 if self._unwrap else 0)  # the state cell's request
        if self._messages != expected:
            return "the kernel handled a message since"
        if self._rebound(mark.values, namespace):
            return "a name was bound again"
        return self._doubt_outside_cells()

    def _rebound(self, values: dict[str, Any], namespace: dict[str, Any]) -> bool:
        count = 0
        for name, value in namespace.items():
            if self._owned(name, value):
                continue
            count += 1
            if values.get(name, _MISSING) is not value:
                return True
        return count != len(values)

    # -- what runs outside cells --------------------------------------------------------

    def _doubt_outside_cells(self) -> str | None:
        for thread in threading.enumerate():
            if not self._kernel_thread(thread):
                return f"thread {thread.name!r} is alive"
        kernel = getattr(self._shell, "kernel", None)
        if getattr(kernel, "eventloop", None) is not None:
            return "a GUI event loop is integrated"
        loop = _kernel_loop(kernel)
        if loop is None:
            return None
        return self._loop_doubt(loop)

    def _kernel_thread(self, thread: threading.Thread) -> bool:
        if thread is threading.main_thread() or thread.name.startswith("nbflow"):
            return True
        kind = type(thread)
        if "Subshell" in kind.__name__:  # runs cells concurrently with this one
            return False
        if kind is not threading.Thread:
            return _top(kind.__module__) in _THREAD_PACKAGES
        target = getattr(thread, "_target", None)
        if target is None or getattr(target, "func", None) is not None:  # partials: doubt
            return False
        module = getattr(getattr(target, "__func__", target), "__module__", None)
        return isinstance(module, str) and _top(module) in _THREAD_PACKAGES

    def _loop_doubt(self, loop: asyncio.AbstractEventLoop) -> str | None:
        current = asyncio.current_task(loop) if loop.is_running() else None
        for task in asyncio.all_tasks(loop):
            if task is current:
                continue
            if not self._kernel_coroutine(task.get_coro()):
                return f"task {task.get_name()!r} is pending"
        scheduled = getattr(loop, "_scheduled", None)
        ready = getattr(loop, "_ready", None)
        if scheduled is None or ready is None:
            return "the event loop's callbacks cannot be seen"
        for handle in [*scheduled, *ready]:
            if handle.cancelled():
                continue
            callback = getattr(handle, "_callback", None)
            arguments = getattr(handle, "_args", ()) or ()
            owner = getattr(callback, "__self__", None)
            if isinstance(owner, asyncio.Task):  # a task's step: the task is judged above
                continue
            if not self._is_kernel_callable(callback) or not all(
                self._is_kernel_callable(argument)
                if callable(argument)
                else self._kernel_coroutine(argument)
                for argument in arguments
                if callable(argument) or _is_coroutine(argument)
            ):
                return "a callback is waiting in the event loop"
        return None

    def _kernel_coroutine(self, coroutine: Any) -> bool:
        """Whether every coroutine in ``coroutine``'s chain of awaits is the kernel's:
        a library's coroutine may be awaiting the user's."""
        link, depth = coroutine, 0
        while _is_coroutine(link) and depth < 64:
            code = getattr(link, "cr_code", None) or getattr(link, "gi_code", None)
            if code is None or not self._in_roots(code.co_filename):
                return False
            link = getattr(link, "cr_await", None) or getattr(link, "gi_yieldfrom", None)
            depth += 1
        return depth > 0

    def _is_kernel_callable(self, function: Any) -> bool:
        for part in _unwrapped(function):
            module = getattr(part, "__module__", None)
            if not isinstance(module, str) or not _ours(module):
                return False
        return True

    def _in_roots(self, filename: str) -> bool:
        return any(filename.startswith(root) for root in self._roots)

    # -- counting -----------------------------------------------------------------------

    def _before_cell(self, info: Any) -> None:
        self._cells += 1
        raw = str(getattr(info, "raw_cell", "") or "")
        self._state_cell = raw.lstrip().startswith("%%state")

    def _wrap(self, handlers: dict[str, Any]) -> None:
        originals = dict(handlers)
        for name, handler in originals.items():
            if name not in _READ_ONLY_MESSAGES and callable(handler):
                handlers[name] = self._counting(handler)

        def undo() -> None:
            for name, handler in originals.items():
                handlers[name] = handler

        self._unwrap.append(undo)

    def _counting(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self._messages += 1
            return handler(*args, **kwargs)

        return counted


_MISSING = object()


def _top(module: str) -> str:
    return module.partition(".")[0]


def _ours(module: str) -> bool:
    return _top(module) in _KERNEL_PACKAGES or _top(module) == "nbflow"


def _is_coroutine(value: Any) -> bool:
    return hasattr(value, "cr_code") or hasattr(value, "gi_code")


def _kernel_loop(kernel: Any) -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        loop = getattr(getattr(kernel, "io_loop", None), "asyncio_loop", None)
        return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


def _unwrapped(function: Any) -> Iterator[Any]:
    """``function`` and, for a partial, what it wraps and the callables it passes on
    (an event loop library wraps a user's callback that way)."""
    seen = 0
    while seen < 8:
        seen += 1
        wrapped = getattr(function, "func", None)
        if wrapped is None or not callable(wrapped):
            yield getattr(function, "__func__", function)
            return
        for argument in getattr(function, "args", ()):
            if callable(argument):
                yield from _unwrapped(argument)
        function = wrapped
    yield function


def _package_roots() -> tuple[str, ...]:
    roots: list[str] = []
    for name in (*_KERNEL_PACKAGES, "nbflow"):
        module = sys.modules.get(name)
        location = getattr(module, "__file__", None)
        if isinstance(location, str):
            roots.append(str(Path(location).parent) + "/")
    return tuple(roots)
