"""Running independent states at once, in worker processes (DESIGN §3 "Fan-out").

Workers receive snapshot ids, not data: they restore a state's base snapshot from the
store (buffers memory-mapped), run its code, write the variables as artifacts and return
their ids. Only the driving process appends events, so a worker's death is an orphaned
attempt and nothing more.

Layers: :mod:`.tasks` (what travels to a worker and back), :mod:`.outputs` (what a state
printed or displayed), :mod:`.worker` (the worker side), :mod:`.local_pool` and
:mod:`.dask_pool` (the two executors), :mod:`.executors` (choosing one).
"""

from nbflow.parallel.executors import Executor, open_executor
from nbflow.parallel.tasks import BranchOutcome, BranchTask, Finished

__all__ = ["BranchOutcome", "BranchTask", "Executor", "Finished", "open_executor"]
