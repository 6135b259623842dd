"""The executor interface and the choice between the local pool and Dask.

An executor is kept per process and reused: the local pool's workers, or a Dask client
(and the ``LocalCluster`` of ``--dask local``), start once and serve later runs.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from nbflow.parallel.tasks import BranchTask, Finished

DASK_ENV = "NBFLOW_DASK"
DASK_DEFAULT_PARALLEL = 8
"""Branches at once with ``--dask`` and no ``--parallel``: the cluster queues the rest."""


class Executor(Protocol):
    """Runs branch tasks in other processes and reports each one's end."""

    name: str
    """``local`` or ``dask <address>``: recorded in the run's ``FanOutStarted``."""
    size: int

    def start(self) -> None:
        """Be ready to run tasks (workers started, cluster reachable)."""
        ...

    def resize(self, size: int) -> None: ...

    def submit(self, key: str, task: BranchTask) -> None:
        """Run ``task`` (queued if every worker is busy)."""
        ...

    def poll(self, timeout: float) -> list[Finished]:
        """Tasks that ended within ``timeout`` seconds."""
        ...

    def worker_of(self, key: str) -> str | None:
        """The label of the worker running ``key`` if known already."""
        ...

    def cancel(self, key: str) -> None:
        """Stop ``key`` (its worker may be killed and replaced)."""
        ...

    def pids(self) -> list[int]:
        """Process ids of local workers (none for a remote cluster)."""
        ...

    def close(self) -> None: ...


_KEPT: dict[str, Executor] = {}


def dask_address(option: str | None) -> str | None:
    """``--dask`` if given, else ``$NBFLOW_DASK``, else None (the local pool)."""
    if option:
        return option
    return os.environ.get(DASK_ENV) or None


def open_executor(size: int, dask: str | Any | None = None) -> Executor:
    """The executor for ``size`` branches at once: a kept one when it fits."""
    from nbflow.parallel.dask_pool import DaskPool
    from nbflow.parallel.local_pool import LocalPool

    if dask is not None and not isinstance(dask, str):
        pool: Executor = DaskPool(dask, size)
        pool.start()
        return pool
    where = dask or "local-pool"
    kept = _KEPT.get(where)
    if kept is not None:
        if kept.size < size:
            kept.resize(size)
        return kept
    pool = LocalPool(size) if dask is None else DaskPool(dask, size)
    pool.start()
    _KEPT[where] = pool
    return pool


def close_executors() -> None:
    """Stop every kept executor (tests; the end of a process stops them anyway)."""
    for pool in _KEPT.values():
        pool.close()
    _KEPT.clear()
