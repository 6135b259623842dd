"""Shared fixtures: a real ``.nbflow`` home in ``tmp_path`` and engines over it."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kernel_harness import Kernel

from nbflow.engine import Body, Engine, Failpoints, JsonContextCodec, StartRequest, store_manifest
from nbflow.model import Edge, Manifest, Plan, RetryPolicy, RunConfig, StateSpec
from nbflow.store import Home


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    with Home(tmp_path / ".nbflow") as opened:
        yield opened


class Sleeps(list[float]):
    """Records the backoff waits the engine asked for, without waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def chain_plan(*state_ids: str, flow_id: str = "flow", **spec_options: Any) -> Plan:
    """States in a chain: each depends on the one before."""
    states = tuple(StateSpec(id=s, **spec_options) for s in state_ids)
    edges = tuple(Edge(upstream=a, downstream=b) for a, b in itertools.pairwise(state_ids))
    return Plan(flow_id=flow_id, states=states, edges=edges)


def make_engine(
    home: Home,
    bodies: Mapping[str, Body[Any]] | Callable[[Manifest, StateSpec], Body[Any]],
    *,
    failpoints: Failpoints | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Engine[Any]:
    return Engine(
        home.artifacts,
        home.events,
        JsonContextCodec(home.artifacts),
        bodies,
        failpoints=failpoints,
        sleep=sleep if sleep is not None else Sleeps(),
    )


def start_request(
    home: Home,
    plan: Plan,
    context: Any = None,
    *,
    run_config: RunConfig | None = None,
    parameters: dict[str, Any] | None = None,
) -> StartRequest[Any]:
    manifest = Manifest(
        flow_id=plan.flow_id,
        plan=plan,
        parameters=parameters or {},
        run_config=run_config or RunConfig(),
    )
    manifest_id = store_manifest(home.artifacts, manifest)
    return StartRequest.for_manifest(manifest, manifest_id, {} if context is None else context)


def recorder(log: list[str], name: str, **updates: Any) -> Body[Any]:
    """A body that notes its name in ``log`` and adds ``updates`` to the context."""

    def body(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append(name)
        return {**ctx, **updates}

    return body


def source_resolver(manifest: Manifest, spec: StateSpec) -> Body[Any]:
    """Builds a state's body from the source stored in the manifest (``def body(ctx)``)."""
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(spec.source), namespace)
    body: Body[Any] = namespace["body"]
    return body


RETRY_TWICE = RetryPolicy(max_attempts=3)


def final_context(engine: Engine[Any], result: Any) -> Any:
    """The context a run ended with."""
    assert result.final_snapshot_id is not None
    return engine.codec.restore(result.final_snapshot_id)


KernelFactory = Callable[..., Kernel]


@pytest.fixture
def kernels(tmp_path: Path) -> Iterator[KernelFactory]:
    """Start real kernels in ``tmp_path`` (a notebook folder); all are stopped at the end."""
    started: list[Kernel] = []

    def start(notebook: str = "analysis.ipynb", folder: Path | None = None, **env: str) -> Kernel:
        kernel = Kernel(folder or tmp_path, notebook, **env)
        started.append(kernel)
        return kernel

    yield start
    for kernel in started:
        children: list[int] = []
        with contextlib.suppress(Exception):  # already gone
            children = _descendants(kernel.pid)  # worker processes of parallel runs
        with contextlib.suppress(Exception):  # already killed or closed
            kernel.close()
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PICTURES = ("image/svg+xml", "text/html")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The example notebooks run as a new user's first run: with no history.

    Their saved outputs show a first run. On an existing history their states would be
    served from the cache and say so, which is right for a user and wrong for a
    comparison of outputs; the cache itself is tested in tests/kernel/test_cache_kernel.py.
    """
    if not any(NOTEBOOKS in Path(str(item.fspath)).parents for item in items):
        return
    for item in items:
        notebook: Any = item.parent
        if hasattr(notebook, "skip_compare") and PICTURES[0] not in notebook.skip_compare:
            # Pictures are compared as their text/plain rendering, as nbval does with PNGs:
            # their drawing (durations as bar widths) is tested by the SVG tests.
            notebook.skip_compare = (*notebook.skip_compare, *PICTURES)
    for history in [NOTEBOOKS / ".nbflow", *NOTEBOOKS.glob("*/.nbflow")]:
        shutil.rmtree(history, ignore_errors=True)
    for leftover in (NOTEBOOKS / "service_calls.txt", *NOTEBOOKS.rglob("*.output.ipynb")):
        leftover.unlink(missing_ok=True)


@pytest.fixture
def processes() -> Iterator[list[int]]:
    """Pids to SIGKILL at the end of the test, whatever happens (and their children)."""
    started: list[int] = []
    yield started
    for pid in list(started):
        with contextlib.suppress(OSError):
            started += _descendants(pid)
    for pid in started:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def worker_pools() -> Iterator[None]:
    """Worker pools this test process starts (fan-out runs of a ``Flow``) are stopped at
    the end of the test, and every process they left is SIGKILLed by pid."""
    import multiprocessing.forkserver as forkserver

    from nbflow.parallel.executors import close_executors

    yield
    server: int | None = getattr(forkserver._forkserver, "_forkserver_pid", None)
    leftover = [server, *_descendants(server)] if server else []
    close_executors()
    for pid in leftover:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


DASK = str(Path(sys.executable).parent / "dask")


def _wait_for_text(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture
def scheduler(tmp_path: Path, processes: list[int]) -> Iterator[str]:
    """A scheduler and a worker (two worker processes under a nanny) on 127.0.0.1; the
    scheduler's address."""
    info = tmp_path / "scheduler.json"
    logs = (tmp_path / "dask.log").open("w")
    common = ["--no-dashboard", "--scheduler-file", str(info)]
    started = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", *common],
        stdout=logs,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    processes.append(started.pid)
    _wait_for_text(info)
    worker = subprocess.Popen(
        [DASK, "worker", "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "2", *common],
        stdout=logs,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    processes.append(worker.pid)
    yield str(json.loads(info.read_text())["address"])
    logs.close()


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in map(int, (task / "children").read_text().split()):
            found += [child, *_descendants(child)]
    return found
