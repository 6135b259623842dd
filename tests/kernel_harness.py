"""Real kernels for tests: started with jupyter_client in a folder, driven cell by cell."""

from __future__ import annotations

import os
import queue
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class CellResult:
    """What one executed cell produced."""

    status: str
    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)
    """text/plain of execute_result and display_data outputs."""
    error: str | None = None
    """``ename: evalue`` of an error output."""
    traceback: str = ""

    @property
    def text(self) -> str:
        """Everything shown, as text."""
        return "\n".join([self.stdout, self.stderr, *self.results, self.traceback])


class Kernel:
    """One IPython kernel process in ``folder``, as a notebook named ``notebook`` has."""

    def __init__(self, folder: Path, notebook: str = "analysis.ipynb", **env: str) -> None:
        self.folder = folder
        environment = {k: v for k, v in os.environ.items() if k != "NBFLOW_HOME"}
        if notebook:
            environment["JPY_SESSION_NAME"] = str(folder / notebook)
        else:
            environment.pop("JPY_SESSION_NAME", None)
        environment.update(env)
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(folder), env=environment)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    @property
    def pid(self) -> int:
        provisioner = self.manager.provisioner
        assert provisioner is not None
        process = getattr(provisioner, "process", None)
        assert process is not None
        return int(process.pid)

    def submit(self, code: str) -> str:
        """Send a cell without waiting; its message id."""
        return str(self.client.execute(code, allow_stdin=False, stop_on_error=True))

    def collect(self, msg_id: str, timeout: float = 120) -> CellResult:
        """Gather the outputs of a submitted cell until the kernel is idle again."""
        result = CellResult(status="unknown")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"cell did not finish in {timeout} s: {result.text}")
            try:
                msg = self.client.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    result.stdout += content["text"]
                else:
                    result.stderr += content["text"]
            elif kind in ("execute_result", "display_data"):
                result.results.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                result.error = f"{content['ename']}: {content['evalue']}"
                result.traceback += ANSI.sub("", "\n".join(content["traceback"])) + "\n"
            elif kind == "status" and content["execution_state"] == "idle":
                break
        while True:
            reply = self.client.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                result.status = reply["content"]["status"]
                return result

    def displays(self, code: str, timeout: float = 120) -> list[dict[str, str]]:
        """Execute ``code``; the data of every display it sent (updates included), in
        order."""
        return [
            dict(message["content"]["data"])
            for message in self.messages(code, timeout)
            if message["msg_type"] in ("display_data", "update_display_data", "execute_result")
        ]

    def messages(self, code: str, timeout: float = 120) -> list[dict[str, Any]]:
        """Execute ``code``; every iopub message it caused, in order (header, content)."""
        msg_id = self.submit(code)
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            found.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                reply = self.client.get_shell_msg(timeout=30)
                assert reply["content"]["status"] == "ok", reply["content"]
                return found
        raise TimeoutError(f"{code!r} did not finish in {timeout} s")

    def run(self, code: str, timeout: float = 120) -> CellResult:
        """Execute one cell and return what it produced."""
        return self.collect(self.submit(code), timeout)

    def ok(self, code: str, timeout: float = 120) -> CellResult:
        """Execute a cell that must succeed."""
        result = self.run(code, timeout)
        assert result.status == "ok", result.text
        return result

    def interrupt(self) -> None:
        """What the notebook's stop button does."""
        self.manager.interrupt_kernel()

    def kill(self) -> None:
        """SIGKILL the kernel process, as a crash would."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.manager.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.close()

    def wait_for_file_text(self, path: Path, text: str, timeout: float = 60) -> None:
        """Poll until ``path`` contains ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and text in path.read_text():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{path} never contained {text!r}")

    def close(self) -> None:
        """Stop the channels and the kernel."""
        try:
            self.client.stop_channels()
        finally:
            if self.manager.is_alive():
                self.manager.shutdown_kernel(now=True)
            else:
                self.manager.cleanup_resources()


def state_cell(name: str, log: Path, code: str, options: str = "") -> str:
    """A state cell that appends its name to ``log`` and then runs ``code``."""
    return f"%%state {name} {options}\nopen({str(log)!r}, 'a').write({name!r} + '\\n')\n{code}\n"


def hang_unless(flag: Path) -> str:
    """Code that blocks until ``flag`` exists: the first run hangs and is killed."""
    return f"import os, time\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.05)"


def logged(log: Path) -> list[str]:
    """The state names appended to ``log`` so far."""
    return log.read_text().split() if log.exists() else []
