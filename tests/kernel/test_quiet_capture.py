"""A state cell right after a state cell captures the namespace once, and anything that
could have changed the namespace in between makes it capture twice, as before.

Captures are counted by a spy in the kernel that appends a line to a file per capture, so
that reading the count runs no cell (a cell would itself be a reason to capture)."""

from __future__ import annotations

import uuid
from pathlib import Path

from conftest import KernelFactory
from kernel_harness import Kernel

from nbflow.engine.history import read_history
from nbflow.snapshot import NamespaceCodec
from nbflow.store import Home

SPY = """\
def __nbflow_test_spy__(capture, log):
    def counted(context):
        with open(log, 'a') as file:
            file.write('capture\\n')
        return capture(context)
    return counted
__nbflow__.session.snapshots.capture = __nbflow_test_spy__(
    __nbflow__.session.snapshots.capture, {log!r}
)
del __nbflow_test_spy__
"""


class Counted:
    """A kernel whose captures are counted per cell."""

    def __init__(self, kernel: Kernel, log: Path) -> None:
        self.kernel = kernel
        self.log = log
        kernel.ok("%load_ext nbflow")
        kernel.ok(SPY.format(log=str(log)))

    def captures(self, cell: str) -> int:
        """Run ``cell``; how many captures it made."""
        before = self._count()
        self.kernel.ok(cell)
        return self._count() - before

    def _count(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0


def initial_variables(folder: Path, state: str) -> dict[str, object]:
    """The namespace the newest run of ``state`` started from."""
    with Home(folder / ".nbflow") as home:
        for record in home.events.runs():
            history = read_history(record.run_id, home.events.read_range(record.run_id))
            if state in history.completed:
                return NamespaceCodec(home.artifacts).restore(history.started.initial_snapshot_id)
    raise AssertionError(f"no run of {state}")


def send_comm_message(kernel: Kernel, target: str, data: dict[str, object]) -> None:
    """Open a comm to ``target`` and send it ``data``, as a widget's frontend does, then
    wait until the kernel handled both (a kernel_info request is answered after them)."""
    client = kernel.client
    comm_id = uuid.uuid4().hex
    client.shell_channel.send(
        client.session.msg("comm_open", {"comm_id": comm_id, "target_name": target, "data": {}})
    )
    client.shell_channel.send(client.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))
    msg_id = client.kernel_info()
    while client.get_shell_msg(timeout=30)["parent_header"].get("msg_id") != msg_id:
        pass


def test_a_state_cell_after_a_state_cell_captures_once_and_starts_from_its_snapshot(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    counted = Counted(kernels(NBFLOW_TEXT="1"), tmp_path / "captures.log")
    assert counted.captures("%%state first\nx = 1") == 2  # a plain cell ran before it
    assert counted.captures("%%state second\ny = x + 1") == 1
    assert counted.captures("%%state third\nz = y + 1") == 1
    assert initial_variables(tmp_path, "third") == {"x": 1, "y": 2}
    # A plain cell in between: captured again, and the run starts from what it did.
    counted.kernel.ok("x = 5")
    assert counted.captures("%%state fourth\nw = x") == 2
    assert initial_variables(tmp_path, "fourth") == {"x": 5, "y": 2, "z": 3}
    # Served from the cache with its outputs in place: no capture, and the next state
    # still starts from the same checkpoint.
    assert counted.captures("%%state fourth\nw = x") == 0
    assert counted.captures("%%state sixth\nu = 1") == 1
    assert initial_variables(tmp_path, "sixth") == {"x": 5, "y": 2, "z": 3, "w": 5}
    # A restore puts new objects into the namespace: captured again.
    counted.kernel.ok("%flow restore second")
    assert counted.captures("%%state fifth\nv = 0") == 2


def test_a_widget_message_between_two_state_cells_is_seen(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    counted = Counted(kernels(NBFLOW_TEXT="1"), tmp_path / "captures.log")
    counted.kernel.ok(
        "from comm import get_comm_manager\n"
        "def __nbflow_test_target__(comm, message):\n"
        "    @comm.on_msg\n"
        "    def changed(message):\n"
        "        get_ipython().user_ns['level'] = message['content']['data']['level']\n"
        "get_comm_manager().register_target('nbflow-test', __nbflow_test_target__)\n"
        "del __nbflow_test_target__, get_comm_manager"
    )
    counted.captures("%%state first\nlevel = 1")
    assert counted.captures("%%state quiet\nquiet = True") == 1  # the target alone is quiet
    send_comm_message(counted.kernel, "nbflow-test", {"level": 7})
    assert counted.captures("%%state second\nseen = level") == 2
    assert initial_variables(tmp_path, "second") == {"level": 7, "quiet": True}


def assert_seen(counted: Counted, making: str, cleanup: str, label: str) -> None:
    """A state cell that leaves ``making`` behind makes the next state cell capture
    twice; after ``cleanup``, a pair of state cells is quiet again. (New state names
    each time: a state served from the cache captures once in any case.)"""
    counted.kernel.ok(f"%%state {label}_making\n{making}")
    assert counted.captures(f"%%state {label}_after\nafter = 1") == 2, making
    counted.kernel.ok(cleanup)
    counted.captures(f"%%state {label}_settle\nsettle = 1")
    assert counted.captures(f"%%state {label}_quiet\nquiet = 1") == 1, cleanup


def test_threads_tasks_and_loop_callbacks_of_the_user_mean_capturing_again(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    counted = Counted(kernels(NBFLOW_TEXT="1"), tmp_path / "captures.log")
    counted.captures("%%state start\nx = 1")
    assert counted.captures("%%state quiet\ny = 1") == 1
    # A thread of the user's, alive at the checkpoint: it may change anything, any time.
    assert_seen(
        counted,
        "import threading\n"
        "__nbflow_test_stop__ = threading.Event()\n"
        "__nbflow_test_thread__ = threading.Thread(target=__nbflow_test_stop__.wait)\n"
        "__nbflow_test_thread__.start()",
        "__nbflow_test_stop__.set()\n__nbflow_test_thread__.join()",
        "thread",
    )
    # A task of the user's on the kernel's event loop.
    assert_seen(
        counted,
        "import asyncio\n"
        "async def __nbflow_test_wait__():\n"
        "    await asyncio.sleep(3600)\n"
        "__nbflow_test_task__ = asyncio.ensure_future(__nbflow_test_wait__())",
        "__nbflow_test_task__.cancel()\n"
        "try:\n"
        "    await __nbflow_test_task__\n"
        "except asyncio.CancelledError:\n"
        "    pass",
        "task",
    )
    # A callback of the user's waiting in the loop.
    assert_seen(
        counted,
        "import asyncio\n"
        "__nbflow_test_timer__ = asyncio.get_running_loop().call_later(\n"
        "    3600, lambda: globals().update(e=2))",
        "__nbflow_test_timer__.cancel()",
        "callback",
    )
    # A coroutine of the user's handed to asyncio's own function, to be started later.
    assert_seen(
        counted,
        "import asyncio\n"
        "async def __nbflow_test_later__():\n"
        "    globals().update(e=4)\n"
        "__nbflow_test_coroutine__ = __nbflow_test_later__()\n"
        "__nbflow_test_start__ = asyncio.get_running_loop().call_later(\n"
        "    3600, asyncio.ensure_future, __nbflow_test_coroutine__)",
        "__nbflow_test_start__.cancel()\n__nbflow_test_coroutine__.close()",
        "coroutine",
    )
    # The same through tornado, which wraps the user's function in its own callback.
    assert_seen(
        counted,
        "from tornado.ioloop import IOLoop\n"
        "__nbflow_test_timeout__ = IOLoop.current().call_later(\n"
        "    3600, lambda: globals().update(e=3))",
        "IOLoop.current().remove_timeout(__nbflow_test_timeout__)",
        "tornado",
    )
