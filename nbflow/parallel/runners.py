"""What the branch runners of a kernel and of a ``Flow`` share: where branches run, and
which states stay in the driving process."""

from __future__ import annotations

from typing import Any

from nbflow.model.plan import StateSpec
from nbflow.parallel.executors import Executor, dask_address, open_executor


class Branches:
    """Executor choice and in-process states, for :class:`~nbflow.engine.fanout.BranchRunner`
    implementations."""

    def __init__(self) -> None:
        self.dask: str | Any | None = None
        """``dask`` of the run being started: an address, ``local`` or a ``Client`` (a
        resume uses ``$NBFLOW_DASK``, else the local pool)."""

    def executor(self, max_parallel: int) -> Executor:
        address = self.dask if self.dask is not None else dask_address(None)
        return open_executor(max_parallel, address)

    def in_kernel(self, spec: StateSpec) -> bool:
        return spec.in_kernel or spec.always_run
