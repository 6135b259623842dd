"""The Dask executor: branches run as tasks on the workers of a ``dask.distributed``
cluster (``--dask ADDRESS``, ``NBFLOW_DASK``, a ``Client``, or ``local`` for a
``LocalCluster`` started here).

Dask runs a task again when the worker running it died; nbflow does not let that count
twice. Each attempt claims a file in the home as it starts (:func:`run_claimed`), so the
re-run finds the claim and reports the attempt lost; the kernel then retries it as a new
attempt, recorded as such. Workers on other machines need the home on a filesystem they
share (DESIGN §7).
"""

from __future__ import annotations

import time
from typing import Any

from nbflow.errors import NbflowError
from nbflow.parallel.tasks import BranchOutcome, BranchTask, Finished
from nbflow.parallel.worker import BranchLost, release_claim, run_claimed

CONNECT_TIMEOUT_S = 5


def _unreachable(address: str, exc: BaseException) -> NbflowError:
    return NbflowError(
        "dask_unreachable",
        f"the Dask scheduler at {address} cannot be reached ({type(exc).__name__}: {exc}); "
        "nothing was started",
        name=address,
        hint="start it (`dask scheduler`, then `dask worker ADDRESS`), check the address, "
        "or run without --dask to use local worker processes",
    )


def _missing() -> NbflowError:
    return NbflowError(
        "dask_not_installed",
        "--dask needs dask.distributed, which is not installed",
        hint="pip install 'nbflow[dask]'",
    )


class DaskPool:
    """Branches on a Dask cluster; :meth:`submit` and :meth:`poll` as in ``Executor``."""

    def __init__(self, address: str | Any, size: int) -> None:
        try:
            import distributed
        except ImportError:
            raise _missing() from None
        dist: Any = distributed
        self._cluster: Any = None
        self._own_client = True
        self.size = size
        if isinstance(address, dist.Client):
            self._client: Any = address
            self._own_client = False
            self.name = f"dask {self._client.scheduler_info().get('address', '?')}"
        elif address == "local":
            self._cluster = dist.LocalCluster(
                n_workers=size,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                host="127.0.0.1",
            )
            self._client = dist.Client(self._cluster)
            self.name = f"dask {self._cluster.scheduler_address} (LocalCluster)"
        else:
            try:
                self._client = dist.Client(
                    address, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False
                )
            except (OSError, TimeoutError) as exc:
                raise _unreachable(str(address), exc) from None
            self.name = f"dask {address}"
        self._futures: dict[str, Any] = {}
        self._homes: dict[str, str] = {}

    def start(self) -> None:
        """Wait until the cluster has a worker (a cluster of none would wait forever)."""
        try:
            self._client.wait_for_workers(1, timeout=30)
        except (OSError, TimeoutError) as exc:
            raise _unreachable(self.name, exc) from None

    def resize(self, size: int) -> None:
        """A LocalCluster of ours grows to ``size`` workers; another cluster is the
        user's to size (branches beyond its workers wait in its queue)."""
        if self._cluster is not None and size > self.size:
            self._cluster.scale(size)
            try:
                self._client.wait_for_workers(size, timeout=60)
            except (OSError, TimeoutError) as exc:
                raise _unreachable(self.name, exc) from None
        self.size = max(self.size, size)

    def submit(self, key: str, task: BranchTask) -> None:
        future = self._client.submit(run_claimed, task, key=key, pure=False, retries=0)
        self._futures[key] = future
        self._homes[key] = task.home

    def worker_of(self, key: str) -> str | None:
        return None  # known when the outcome comes back

    def poll(self, timeout: float) -> list[Finished]:
        if not self._futures:
            time.sleep(timeout)
            return []
        # Futures learn of their end from the client's own thread; looking costs nothing.
        deadline = time.monotonic() + timeout
        while not any(f.done() for f in self._futures.values()):
            if time.monotonic() >= deadline:
                return []
            time.sleep(0.005)
        finished: list[Finished] = []
        for key, future in list(self._futures.items()):
            if not future.done():
                continue
            del self._futures[key]
            release_claim(self._homes.pop(key), key)
            finished.append(self._finished(key, future))
        return finished

    def _finished(self, key: str, future: Any) -> Finished:
        if future.status == "finished":
            outcome: BranchOutcome = future.result()
            return Finished(key, outcome, worker=outcome.worker)
        if future.status == "cancelled":
            return Finished(key, None, lost="its Dask task was cancelled")
        error = future.exception()
        if isinstance(error, BranchLost):
            return Finished(key, None, lost="its Dask worker died while it ran")
        if type(error).__name__ == "KilledWorker":
            return Finished(key, None, lost=f"Dask gave up on it: {error}")
        return Finished(key, None, lost=f"its Dask task failed: {type(error).__name__}: {error}")

    def cancel(self, key: str) -> None:
        future = self._futures.pop(key, None)
        if future is not None:
            future.cancel()
            release_claim(self._homes.pop(key), key)

    def pids(self) -> list[int]:
        return []

    def close(self) -> None:
        for key in list(self._futures):
            self.cancel(key)
        if self._own_client:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
