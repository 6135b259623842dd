"""Fan-out: states with no path between them run at the same time (DESIGN §3 "Fan-out").

A state's *base* is the join of its upstream states' outputs: the output of the last of
them, with the changes of the others that it does not descend from put on top, in plan
order. It depends on the plan and the recorded outputs only, never on which branch ended
first, so a run gives the same variables however its branches were timed.

Branches run in worker processes (an :class:`Executor`); states marked ``--in-kernel``
(and ``--always-run`` ones) run in the driving process between polls, while the workers
go on. Only this process appends events. Each branch attempt is a ``StateEntered`` then a
``StateCompleted`` or ``StateFailed``; a worker that died leaves a ``worker_lost`` failure,
retried as the next attempt under the state's retry policy. A failure that cannot be
retried stops new dispatches; the branches running finish (their work is recorded) and the
run fails.

Two independent states that changed one variable to different values fail the later one
with ``branch_conflict``; neither's changes reach the run's final variables.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Collection, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, Generic, Protocol

from nbflow.engine.attempt import error_from_exception
from nbflow.engine.caching import RunCache
from nbflow.engine.context import C
from nbflow.engine.facts import FactScope
from nbflow.engine.logs import RunLogger
from nbflow.engine.replaying import check_replay
from nbflow.engine.results import Body, RunPhase, RunResult
from nbflow.engine.serving import cached_outputs, record_served
from nbflow.engine.writer import RunWriter
from nbflow.errors import NbflowError
from nbflow.model.config import RetryPolicy
from nbflow.model.errors import ErrorCategory, ErrorInfo
from nbflow.model.events import (
    AttemptInterrupted,
    BranchAssigned,
    Event,
    RetryScheduled,
    RunCompleted,
    RunStatus,
    StateCompleted,
    StateEntered,
    StateFailed,
    StateKeyed,
    StateSkipped,
)
from nbflow.model.manifest import Manifest
from nbflow.model.plan import StateSpec
from nbflow.parallel.executors import Executor
from nbflow.parallel.tasks import BranchOutcome, BranchTask, Finished

if TYPE_CHECKING:
    from nbflow.engine.core import Engine, Steps

SERVED = "served"
"""What :meth:`FanOut._enter` returns for an attempt completed from the cache."""

POLL_S = 0.05
"""Longest wait for a branch before timers (backoff, timeouts) are looked at again."""

Changes = tuple[tuple[str, ...], tuple[str, ...]]
"""Variables a state created or changed, and those it removed."""


class MergingCodec(Protocol):
    """What joining branches needs of a codec, besides capture and restore."""

    def changes(self, before: str, after: str) -> Changes: ...

    def load(self, snapshot_id: str) -> Any:
        """The snapshot's context, apart from the driving process's own."""
        ...

    def same_variable(self, name: str, first: str, second: str) -> bool: ...

    def compose(
        self, start: str, layers: Sequence[tuple[str, Collection[str], Collection[str]]]
    ) -> str: ...


class BranchRunner(Protocol):
    """How the driving process runs one kind of state in workers (notebook code, Flow
    functions), shows what they printed, and takes the run's joined variables."""

    def executor(self, max_parallel: int) -> Executor:
        """The executor branches run on (started; an unreachable cluster raises)."""
        ...

    def in_kernel(self, spec: StateSpec) -> bool:
        """Whether ``spec`` runs in this process rather than in a worker."""
        ...

    def task(self, spec: StateSpec, key: str, base_snapshot_id: str) -> BranchTask:
        """The picklable task of one attempt of ``spec``."""
        ...

    def received(self, spec: StateSpec, outcome: BranchOutcome) -> None:
        """Show what the attempt printed and displayed, and what it did not save."""
        ...

    def joined(self, initial_snapshot_id: str, snapshot_id: str) -> None:
        """The run ended with the variables of ``snapshot_id``: put them in place."""
        ...

    def waiting(self) -> None:
        """Called while the branches run, between polls (pictures catch up)."""
        ...

    def current(self) -> Any:
        """The driving process's variables now (a notebook run: after plain cells)."""
        ...


@dataclass(frozen=True)
class Parked:
    """Command to a driver that runs a notebook cell by cell (``nbflow run``): nothing is
    to be done until the next cell; reply with a :class:`Release`, :class:`Barrier` or
    :class:`Finish`."""

    running: tuple[str, ...] = ()


@dataclass(frozen=True)
class Release:
    """Reply to :class:`Parked`: state ``state_id``'s cell was reached. A branch starts
    as soon as its upstream is done; a state that runs in the kernel runs now, in its
    cell (the reply then waits for it)."""

    state_id: str


@dataclass(frozen=True)
class Barrier:
    """Reply to :class:`Parked`: a plain cell is about to run. Wait for every state
    released so far and put the joined variables in place; the plain cell's changes
    become part of the bases of the states released after it."""


@dataclass(frozen=True)
class Finish:
    """Reply to :class:`Parked`: the last cell was run; finish every state."""


Instruction = Release | Barrier | Finish


@dataclass
class _Running:
    spec: StateSpec
    attempt: int
    base: str
    since: float
    assigned: bool = False
    key: str | None = None
    """Its cache key: its outputs are indexed under it when it completes."""


@dataclass(frozen=True)
class Progress:
    """Where a fan-out run starts: what its history holds (empty for a new run)."""

    initial_snapshot_id: str
    completed: Mapping[str, str]
    """State → the snapshot it left."""
    bases: Mapping[str, str]
    """State → the base of its completed attempt."""
    next_attempt: Mapping[str, int]
    retry: Mapping[str, int]
    """Failed states to retry on resume → their next attempt number."""
    failed: tuple[str, ErrorInfo] | None = None
    """A failed state that cannot be retried: the run fails at once."""
    gated: bool = False
    """Driven by a notebook's cells: a state starts only once its cell is reached."""


class FanOut(Generic[C]):
    """One fan-out run (or resume) of a manifest; :meth:`steps` drives it."""

    def __init__(
        self,
        engine: Engine[C],
        manifest: Manifest,
        order: list[StateSpec],
        bodies: Mapping[str, Body[C]],
        writer: RunWriter,
        scope: FactScope,
        runner: BranchRunner,
        executor: Executor,
        progress: Progress,
        cache: RunCache[C] | None = None,
    ) -> None:
        self.engine = engine
        self.codec: MergingCodec = engine.codec  # type: ignore[assignment]
        self.manifest = manifest
        self.order = order
        self.bodies = bodies
        self.writer = writer
        self.scope = scope
        self.runner = runner
        self.executor = executor
        self.cache = cache
        mode = manifest.run_config.execution_mode
        self.max_parallel: int = getattr(mode, "max_parallel", 1)
        self.initial = progress.initial_snapshot_id
        self.epoch = progress.initial_snapshot_id
        """Where bases start: the run's initial variables, or in a notebook run the
        kernel's variables after the last plain cell."""
        self.epoch_states: frozenset[str] = frozenset()
        """The states whose outputs :attr:`epoch` holds already."""
        self.gated = progress.gated
        self.released: set[str] = set()
        self.wait_for: Instruction | None = None
        """What the driver waits for (a barrier, the end, a state run in the kernel)."""
        self._recapture = False
        self.completed: dict[str, str] = dict(progress.completed)
        self.bases: dict[str, str] = dict(progress.bases)
        self.attempts: dict[str, int] = dict(progress.next_attempt)
        self.attempts.update(progress.retry)
        self.failure: tuple[str, ErrorInfo] | None = progress.failed
        self.conflicted: set[str] = set()
        self.running: dict[str, _Running] = {}
        self.delayed: dict[str, float] = {}
        self.in_kernel_attempt: _Running | None = None
        self._changes: dict[str, Changes] = {}
        self._joins: dict[frozenset[str], str] = {}
        self.ancestors = _ancestors(manifest, order)
        self.log = RunLogger(writer.run_id)

    # -- the loop -------------------------------------------------------------------------

    def steps(self) -> Steps:
        """Run the pending states; the run's result once none is left."""
        with _interrupts_raise():
            try:
                if self.gated and self.completed:  # a notebook resumed: the kernel is new
                    self._new_epoch(self._join(frozenset(self.completed)))
                while True:
                    spec = self._dispatch_ready()
                    if spec is not None:
                        yield from self._run_in_kernel(spec)
                        continue
                    if len(self.completed) == len(self.order):
                        break
                    if self.failure is not None and not self.running:
                        break
                    if self._wait_over():
                        instruction = yield Parked(tuple(r.spec.id for r in self.running.values()))
                        self._instructed(instruction)
                        continue
                    if not self.running and not self._waiting():
                        break  # nothing runs and nothing can: an upstream failed
                    for finished in self.executor.poll(self._poll_timeout()):
                        self._finished(finished)
                    self._enforce_timeouts()
                    self.runner.waiting()
            except BaseException as exc:
                self._stop_all(type(exc).__name__)
                raise
        return self._end()

    def _wait_over(self) -> bool:
        """In a notebook run: whether what the driver waits for has happened (then the
        loop parks until the next cell)."""
        if not self.gated:
            return False
        wait = self.wait_for
        if isinstance(wait, Release):
            done = wait.state_id in self.completed or self.failure is not None
        elif isinstance(wait, Barrier):
            done = self.released <= set(self.completed) or (
                self.failure is not None and not self.running
            )
            if done and self.failure is None:
                self._new_epoch(self._join(frozenset(self.completed)))
                self._recapture = True
        else:
            done = wait is None
        if done:
            self.wait_for = None
        return done

    def _instructed(self, instruction: Instruction) -> None:
        for finished in self.executor.poll(0):
            self._finished(finished)
        if isinstance(instruction, Release):
            if self._recapture:  # the plain cells since the barrier changed the kernel
                self._recapture = False
                self.epoch = self.engine.codec.capture(self.runner.current())
                self._joins.clear()
            self.released.add(instruction.state_id)
            spec = self.manifest.plan.state(instruction.state_id)
            if self.runner.in_kernel(spec):
                self.wait_for = instruction
        elif isinstance(instruction, Barrier):
            self.wait_for = instruction
        else:
            self.released |= {spec.id for spec in self.order}
            self.wait_for = instruction

    def _new_epoch(self, snapshot_id: str) -> None:
        """Put the joined variables of every completed state in place; bases start there."""
        self.runner.joined(self.epoch, snapshot_id)
        self.epoch = snapshot_id
        self.epoch_states = frozenset(self.completed)
        self._joins.clear()

    def _dispatch_ready(self) -> StateSpec | None:
        """Send every ready state to a worker while slots are free; a ready state that
        runs in the kernel is returned (it runs next, the workers going on meanwhile)."""
        if self.failure is not None:
            return None
        progressed = True
        while progressed:
            progressed = False
            for spec in self._ready():
                if set(spec.tags) & set(self.manifest.run_config.skip_tags):
                    self._skip(spec)
                    progressed = True
                    break
                if self.runner.in_kernel(spec):
                    return spec
                if len(self.running) >= self.max_parallel:
                    return None
                self._dispatch(spec)
        return None

    def _ready(self) -> Iterator[StateSpec]:
        now = time.monotonic()
        busy = {r.spec.id for r in self.running.values()}
        for spec in self.order:
            if spec.id in self.completed or spec.id in busy:
                continue
            if self.gated and spec.id not in self.released:
                continue
            if self.delayed.get(spec.id, 0.0) > now:
                continue
            if all(up in self.completed for up in self.manifest.plan.upstream_of(spec.id)):
                yield spec

    def _waiting(self) -> bool:
        """Whether a retry is waiting out its backoff."""
        return self.failure is None and any(state not in self.completed for state in self.delayed)

    def _poll_timeout(self) -> float:
        now = time.monotonic()
        ahead = [at - now for state, at in self.delayed.items() if state not in self.completed]
        for running in self.running.values():
            if running.spec.timeout_ms:
                ahead.append(running.since + running.spec.timeout_ms / 1000 - now)
        return max(0.0, min([POLL_S, *ahead]))

    # -- one branch -----------------------------------------------------------------------

    def _key(self, spec: StateSpec, attempt: int) -> str:
        return f"nbflow-{self.writer.run_id[:12]}-{spec.id}-{attempt}"

    def _enter(self, spec: StateSpec, attempt: int, base: str, context: Any) -> str | None:
        """Record the attempt, keyed; serve it from the cache if an entry fits (then it
        is completed, and None returned), else its key (or None when it has none)."""
        entered: list[Event] = [
            StateEntered(state_id=spec.id, attempt=attempt, base_snapshot_id=base)
        ]
        if self.cache is None:
            self.writer.append(*entered)
            return None
        if context is None:
            context = self.codec.load(base)
        keyed = self.cache.key(spec, base, context)
        entered.append(
            StateKeyed(
                state_id=spec.id, key=keyed.key, reason=keyed.reason, facets=dict(keyed.facets)
            )
        )
        if keyed.key is None:
            self.writer.append(*entered)
            return None
        found = cached_outputs(
            self.engine.codec, self.cache, keyed.key, base, context, self.writer.run_id
        )
        if found is not None:
            entry, snapshot_id, _ = found
            changes = self.codec.changes(base, snapshot_id)
            if self._conflict(spec.id, snapshot_id, changes) is None:
                for event in entered:
                    self.writer.stage(event)
                record_served(self.cache, entry, keyed.key, spec, snapshot_id, self.writer)
                self.writer.flush()
                self.completed[spec.id] = snapshot_id
                self.bases[spec.id] = base
                self._changes[spec.id] = changes
                self.log.for_attempt(spec.id, attempt).info("served from the cache")
                return SERVED
            self.conflicted.clear()  # run it: its own outputs are judged when it ends
        self.writer.append(*entered)
        return keyed.key

    def _dispatch(self, spec: StateSpec) -> None:
        attempt = self.attempts.get(spec.id, 0)
        base = self.base_of(spec.id)
        cache_key = self._enter(spec, attempt, base, None)
        if cache_key == SERVED:
            return
        key = self._key(spec, attempt)
        self.executor.submit(key, self.runner.task(spec, key, base))
        running = _Running(spec, attempt, base, time.monotonic(), key=cache_key)
        self.running[key] = running
        worker = self.executor.worker_of(key)
        if worker is not None:
            self.writer.append(BranchAssigned(state_id=spec.id, attempt=attempt, worker=worker))
            running.assigned = True
        self.log.for_attempt(spec.id, attempt).info("branch started from %s", base)

    def _finished(self, finished: Finished) -> None:
        running = self.running.pop(finished.key, None)
        if running is None:
            return  # cancelled meanwhile
        spec = running.spec
        if finished.worker and not running.assigned:
            self.writer.append(
                BranchAssigned(state_id=spec.id, attempt=running.attempt, worker=finished.worker)
            )
        outcome = finished.outcome
        if outcome is None:
            self._failed(
                running,
                ErrorInfo(
                    code="worker_lost",
                    category=ErrorCategory.INTERRUPTED,
                    retryable=True,
                    message=f"attempt {running.attempt} of state {spec.id!r} was lost: "
                    f"{finished.lost}",
                ),
            )
            return
        self.runner.received(spec, outcome)
        if outcome.error is not None or outcome.snapshot_id is None:
            self._failed(running, outcome.error or _no_snapshot(spec))
            return
        self._completed(running, outcome.snapshot_id, (outcome.changed, outcome.removed))

    def _completed(self, running: _Running, snapshot_id: str, changes: Changes) -> None:
        spec = running.spec
        conflict = self._conflict(spec.id, snapshot_id, changes)
        if conflict is not None:
            self._failed(running, conflict)
            return
        within = None
        if self.cache is not None and running.key is not None:
            took_ms = int((time.monotonic() - running.since) * 1000)
            within = self.cache.record(
                running.key, spec, self.writer.run_id, running.base, snapshot_id, took_ms
            )
        completed = StateCompleted(state_id=spec.id, context_snapshot_id=snapshot_id)
        self.writer.append(completed, within=within)
        self.completed[spec.id] = snapshot_id
        self.bases[spec.id] = running.base
        self._changes[spec.id] = changes
        self.log.for_attempt(spec.id, running.attempt).info("completed with %s", snapshot_id)

    def _failed(self, running: _Running, error: ErrorInfo) -> None:
        spec, attempt = running.spec, running.attempt
        self.writer.append(StateFailed(state_id=spec.id, attempt=attempt, error=error))
        log = self.log.for_attempt(spec.id, attempt)
        policy: RetryPolicy = spec.retry or self.manifest.run_config.retry_policy
        if error.retryable and attempt + 1 < policy.max_attempts and self.failure is None:
            delay_ms = policy.delay_ms(attempt)
            self.writer.append(
                RetryScheduled(state_id=spec.id, next_attempt=attempt + 1, delay_ms=delay_ms)
            )
            log.warning("failed (%s); retrying in %d ms", error.code, delay_ms)
            self.attempts[spec.id] = attempt + 1
            self.delayed[spec.id] = time.monotonic() + delay_ms / 1000
            return
        self.attempts[spec.id] = attempt + 1
        log.error("failed (%s); no retries left, run fails", error.code)
        if self.failure is None:
            self.failure = (spec.id, error)

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for key, running in list(self.running.items()):
            limit = running.spec.timeout_ms
            if limit and now - running.since > limit / 1000:
                self.executor.cancel(key)
                del self.running[key]
                self._failed(
                    running,
                    ErrorInfo(
                        code="timeout",
                        category=ErrorCategory.TIMEOUT,
                        retryable=True,
                        message=f"state {running.spec.id!r} exceeded its time limit of "
                        f"{limit} ms; its worker was stopped",
                    ),
                )

    def _skip(self, spec: StateSpec) -> None:
        attempt = self.attempts.get(spec.id, 0)
        base = self.base_of(spec.id)
        tags = sorted(set(spec.tags) & set(self.manifest.run_config.skip_tags))
        self.writer.append(
            StateEntered(state_id=spec.id, attempt=attempt, base_snapshot_id=base),
            StateSkipped(state_id=spec.id, tags=tuple(tags)),
            StateCompleted(state_id=spec.id, context_snapshot_id=base),
        )
        self.completed[spec.id] = base
        self.bases[spec.id] = base
        self._changes[spec.id] = ((), ())

    def _run_in_kernel(self, spec: StateSpec) -> Generator[Any, Any, None]:
        from nbflow.engine.core import CallBody

        attempt = self.attempts.get(spec.id, 0)
        base = self.base_of(spec.id)
        context = self.engine.codec.restore(base)
        cache_key = self._enter(spec, attempt, base, context)
        if cache_key == SERVED:
            return
        running = _Running(spec, attempt, base, time.monotonic(), key=cache_key)
        self.in_kernel_attempt = running
        try:
            result = yield CallBody(spec, attempt, self.bodies[spec.id], context, self.scope)
        except Exception as exc:
            self.in_kernel_attempt = None
            self._failed(running, error_from_exception(spec, exc))
            return
        self.in_kernel_attempt = None
        try:
            snapshot_id = self.engine.codec.capture(result)
            changes = self.codec.changes(base, snapshot_id)
        except NbflowError as exc:
            self._failed(running, exc.info())
            return
        self._completed(running, snapshot_id, changes)

    def _stop_all(self, reason: str) -> None:
        """An interrupt: stop every branch; their attempts stay open (resume retries
        them), noted for the timeline."""
        stopped = list(self.running.values())
        if self.in_kernel_attempt is not None:
            stopped.append(self.in_kernel_attempt)
        for key in list(self.running):
            self.executor.cancel(key)
        self.running.clear()
        with contextlib.suppress(NbflowError):
            self.writer.append(
                *(
                    AttemptInterrupted(state_id=r.spec.id, attempt=r.attempt, reason=reason)
                    for r in stopped
                )
            )

    # -- joining --------------------------------------------------------------------------

    def changes_of(self, state_id: str) -> Changes:
        """What ``state_id``'s completed attempt changed (read back on resume)."""
        if state_id not in self._changes:
            self._changes[state_id] = self.codec.changes(
                self.bases[state_id], self.completed[state_id]
            )
        return self._changes[state_id]

    def base_of(self, state_id: str) -> str:
        """The join of the outputs of ``state_id``'s upstream states."""
        return self._join(self.ancestors[state_id])

    def _join(self, states: frozenset[str]) -> str:
        states = states - self.epoch_states
        if not states:
            return self.epoch
        if states in self._joins:
            return self._joins[states]
        in_order = [spec.id for spec in self.order if spec.id in states]
        last = in_order[-1]
        covered = self.ancestors[last] | {last}
        rest = [state for state in in_order if state not in covered]
        if not rest:
            joined = self.completed[last]
        else:
            layers = [(self.completed[s], *self.changes_of(s)) for s in rest]
            joined = self.codec.compose(self.completed[last], layers)
        self._joins[states] = joined
        return joined

    def _independent(self, first: str, second: str) -> bool:
        return first not in self.ancestors[second] and second not in self.ancestors[first]

    def _conflict(self, state_id: str, snapshot_id: str, changes: Changes) -> ErrorInfo | None:
        changed, removed = changes
        mine = set(changed) | set(removed)
        for other in [spec.id for spec in self.order if spec.id in self.completed]:
            if other in self.conflicted or not self._independent(state_id, other):
                continue
            other_changed, other_removed = self.changes_of(other)
            for name in sorted(mine & (set(other_changed) | set(other_removed))):
                if name in removed and name in other_removed:
                    continue
                if (
                    name in removed
                    or name in other_removed
                    or not self.codec.same_variable(name, snapshot_id, self.completed[other])
                ):
                    first, second = sorted((state_id, other))
                    self.conflicted |= {state_id, other}
                    return ErrorInfo(
                        code="branch_conflict",
                        category=ErrorCategory.CONFLICT,
                        retryable=False,
                        message=f"states {first!r} and {second!r} can run at once and both "
                        f"change variable {name!r}, to different values; nothing of either "
                        "was merged",
                        details={"states": [first, second], "variable": name},
                    )
        return None

    # -- the end --------------------------------------------------------------------------

    def _end(self) -> RunResult:
        if self.failure is not None:
            state_id, error = self.failure
            kept = frozenset(
                s
                for s in self.completed
                if s not in self.conflicted and not (self.ancestors[s] & self.conflicted)
            )
            final = self._join(kept)
            self.writer.append(RunCompleted(status=RunStatus.FAILED, final_snapshot_id=final))
            self.runner.joined(self.epoch, final)
            return RunResult(self.writer.run_id, RunPhase.FAILED, final, state_id, error)
        final = self._join(frozenset(self.completed))
        checked = None
        replay_of = self.manifest.run_config.replay_of
        if replay_of:
            checked = check_replay(
                self.engine.codec, replay_of, self.engine.history(replay_of), final
            )
            self.writer.append(checked)
        self.writer.append(RunCompleted(status=RunStatus.COMPLETED, final_snapshot_id=final))
        self.runner.joined(self.epoch, final)
        self.log.info("run completed")
        return RunResult(self.writer.run_id, RunPhase.COMPLETED, final, replay=checked)


def _no_snapshot(spec: StateSpec) -> ErrorInfo:
    return ErrorInfo(
        code="worker_error",
        category=ErrorCategory.STORAGE,
        retryable=True,
        message=f"the worker of state {spec.id!r} returned no snapshot",
    )


def _ancestors(manifest: Manifest, order: list[StateSpec]) -> dict[str, frozenset[str]]:
    found: dict[str, frozenset[str]] = {}
    for spec in order:  # upstream states come first
        ups = manifest.plan.upstream_of(spec.id)
        closure: set[str] = set(ups)
        for up in ups:
            closure |= found[up]
        found[spec.id] = frozenset(closure)
    return found


@contextlib.contextmanager
def _interrupts_raise() -> Iterator[None]:
    """While branches run, SIGINT (the kernel's stop button) raises KeyboardInterrupt
    here, where the loop waits, so that the branches are stopped and recorded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def deliver(signum: int, frame: FrameType | None) -> Any:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, deliver)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
