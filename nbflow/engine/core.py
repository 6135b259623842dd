"""The engine: start a run from a manifest, run its states, resume it from its events.

Semantics follow DESIGN §3. The engine is synchronous and runs state bodies on the calling
thread: in a kernel that is the main thread, where IPython expects user code to run.
Rejected alternative: an asyncio engine. Bodies are blocking user code, and an event loop
would need nesting inside the kernel's own loop. Parallel branches did not need one either:
fan-out (:mod:`.fanout`) runs them in worker processes and only this thread appends events.
Serving a state from the cache is :mod:`.serving`, replay's manifest and check
:mod:`.replaying`; both are shared with fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic

from nbflow.engine.attempt import error_from_exception
from nbflow.engine.caching import CachePolicy, RunCache
from nbflow.engine.children import ChildKey, ChildRecord
from nbflow.engine.context import C, ContextCodec
from nbflow.engine.contract import (
    check_start_contract,
    read_manifest,
    validate_execution_mode,
)
from nbflow.engine.facts import CURRENT_SCOPE, FactScope, FactValues
from nbflow.engine.failpoints import Failpoints
from nbflow.engine.fanout import BranchRunner, FanOut, Parked, Progress
from nbflow.engine.history import RunHistory, read_history
from nbflow.engine.logs import RunLogger
from nbflow.engine.plan import topological_order
from nbflow.engine.replaying import check_replay, replay_manifest
from nbflow.engine.results import Body, BodyResolver, RunPhase, RunResult, StartRequest
from nbflow.engine.secret_guard import Reporter, SecretGuard
from nbflow.engine.serving import cached_outputs, record_served
from nbflow.engine.writer import RunWriter
from nbflow.errors import HistoryError, NbflowError, StorageError
from nbflow.hashing.redact import KnownSecrets, Redaction
from nbflow.model.config import FanOutJoin, RetryPolicy, RunConfig
from nbflow.model.errors import ErrorInfo
from nbflow.model.events import (
    AttemptInterrupted,
    CheckpointsDiscarded,
    Event,
    EventEnvelope,
    FactRecorded,
    FanOutStarted,
    RetryScheduled,
    RunCompleted,
    RunStarted,
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
from nbflow.store.artifacts import ArtifactStore
from nbflow.store.cache_index import SqliteCacheIndex
from nbflow.store.events import EventStore
from nbflow.store.leases import Lease, SqliteLeases, current_owner

Listener = Callable[[EventEnvelope], None]

DAMAGE_CODES = frozenset(
    {
        "artifact_corrupt",
        "artifact_not_found",
        "snapshot_undecodable",
        "snapshot_not_namespace",
        "context_undecodable",
    }
)
"""Errors that mean a checkpoint's bytes are damaged or gone (resume falls back)."""


@dataclass(frozen=True)
class CallBody(Generic[C]):
    """Command to a driver: run ``body`` on ``context`` and send back what it returns."""

    spec: StateSpec
    attempt: int
    body: Body[C]
    context: C
    scope: FactScope | None = None
    """What :func:`nbflow.fact` records into; the driver makes it current around the body."""

    @contextmanager
    def facts(self) -> Iterator[None]:
        """Make this attempt's facts current, in the caller's context."""
        if self.scope is not None:
            self.scope.begin(self.spec.id)
        token = CURRENT_SCOPE.set(self.scope)
        try:
            yield
        finally:
            CURRENT_SCOPE.reset(token)


@dataclass(frozen=True)
class Wait:
    """Command to a driver: wait ``seconds`` (a retry's backoff)."""

    seconds: float


@dataclass(frozen=True)
class Starting:
    """Notice to a driver that runs each state's cell itself: state ``state_id`` is next.
    Nothing of it has happened yet; everything it does (and says) happens in its cell."""

    state_id: str


@dataclass(frozen=True)
class Served:
    """Notice to a driver: state ``state_id`` was served from the cache; its code does not
    run (a driver that runs each state's cell itself moves on to the next cell)."""

    state_id: str


Steps = Generator["CallBody[Any] | Wait | Served | Starting | Parked", Any, RunResult]
"""A run in progress. The semantics live in these generators; the drivers only execute
bodies and waits, synchronously (:meth:`Engine.start`) or awaiting them
(:meth:`Engine.start_async`), so both share one implementation of DESIGN §3."""


@dataclass(frozen=True)
class _Start:
    """Where run_states begins: a state, its attempt number and its base snapshot."""

    state_id: str
    attempt: int
    base_snapshot_id: str


@dataclass
class _Live(Generic[C]):
    """The context in memory and the snapshot it is known to equal."""

    snapshot_id: str
    context: C


class Engine(Generic[C]):
    """Runs plans durably: every step is an event, every completed state a checkpoint."""

    def __init__(
        self,
        artifacts: ArtifactStore,
        events: EventStore,
        codec: ContextCodec[C],
        bodies: BodyResolver[C] | Mapping[str, Body[C]],
        *,
        failpoints: Failpoints | None = None,
        sleep: Callable[[float], None] = time.sleep,
        secrets: KnownSecrets | None = None,
        leases: SqliteLeases | None = None,
        cache: SqliteCacheIndex | None = None,
        cache_policy: CachePolicy[C] | None = None,
        fact_values: FactValues | None = None,
    ) -> None:
        self.artifacts = artifacts
        self.leases = leases
        """Where runs are leased; without it (tests of the engine alone) nothing is."""
        self.cache = cache
        self.cache_policy = cache_policy
        """How states are keyed and served from ``cache``; None: nothing is cached."""
        self.fact_values = fact_values
        """Where facts that are not small JSON are stored; None: only JSON facts."""
        self.home_path = ""
        """The folder of the history this engine writes (named by its child runs)."""
        self.events = events
        self.codec = codec
        self._resolve = _as_resolver(bodies)
        self.failpoints = failpoints or Failpoints()
        self._sleep = sleep
        self.listeners: list[Listener] = []
        self.announce_states = False
        """Yield :class:`Starting` before each state (for a driver that runs each state
        in a cell of its own); what was staged is committed first, so that the state
        before it is durable when its cell ends."""
        self.secrets = secrets if secrets is not None else KnownSecrets()
        """Secret values in this process; nothing of them is written (DESIGN §4)."""
        self.redaction_listeners: list[Reporter] = []
        """Told what was withheld from an event, so the user hears it once."""
        self._guard = SecretGuard(self.secrets, self._redacted)
        self.branches: BranchRunner | None = None
        """How states run in worker processes; without it a fan-out run is refused."""

    # -- public operations ----------------------------------------------------------------

    def start(self, request: StartRequest[C]) -> RunResult:
        """Validate ``request``, record RunStarted and run every state of the plan."""
        return self._drive(self._start_steps(request))

    async def start_async(self, request: StartRequest[C]) -> RunResult:
        """:meth:`start` for bodies that return awaitables; waits do not block the loop."""
        return await self._drive_async(self._start_steps(request))

    def resume(self, run_id: str) -> RunResult:
        """Continue ``run_id`` where its events say it stopped (DESIGN §3, Resume)."""
        return self._drive(self._resume_steps(run_id))

    async def resume_async(self, run_id: str) -> RunResult:
        """:meth:`resume` for bodies that return awaitables."""
        return await self._drive_async(self._resume_steps(run_id))

    def start_steps(self, request: StartRequest[C]) -> Steps:
        """The steps of :meth:`start`, for a caller that runs each body itself."""
        return self._start_steps(request)

    def resume_steps(self, run_id: str) -> Steps:
        """The steps of :meth:`resume`, for a caller that runs each body itself."""
        return self._resume_steps(run_id)

    def _executor_for(self, config: RunConfig) -> Executor | None:
        """The executor of a fan-out run (reachable, or the error says why), else None."""
        mode = config.execution_mode
        if not isinstance(mode, FanOutJoin):
            return None
        if self.branches is None:
            validate_execution_mode(config)  # refuses: this engine has no workers
            return None
        return self.branches.executor(mode.max_parallel)

    def _start_steps(self, request: StartRequest[C]) -> Steps:
        check_start_contract(
            request.manifest, request.manifest_id, request.plan, request.run_config
        )
        if not self.artifacts.exists(request.manifest_id):
            raise StorageError(
                "manifest_not_found",
                f"manifest {request.manifest_id} is not in the artifact store",
                name=request.manifest_id,
                hint="store it first with nbflow.engine.store_manifest(artifacts, manifest)",
            )
        order = topological_order(request.plan)
        bodies = {spec.id: self._resolve(request.manifest, spec) for spec in order}
        executor = self._executor_for(request.run_config)
        run_id = request.run_id or uuid.uuid4().hex
        if request.run_id is not None and self.events.head_seq(run_id) > 0:
            raise HistoryError(
                "run_exists",
                f"run {run_id} exists already; it is resumed, not started again",
                name=run_id,
                hint="resume it instead",
            )
        lease = None
        if self.leases is not None:  # nobody can know the run yet: taken with RunStarted
            lease = self.leases.new_lease(run_id, current_owner(request.plan.flow_id))
        try:
            return (yield from self._start_held(request, order, bodies, run_id, lease, executor))
        finally:
            self._let_go(lease)

    def _start_held(
        self,
        request: StartRequest[C],
        order: list[StateSpec],
        bodies: dict[str, Body[C]],
        run_id: str,
        lease: Lease | None,
        executor: Executor | None = None,
    ) -> Steps:
        log = RunLogger(run_id)
        initial_snapshot_id = self.codec.capture(request.initial_context)
        fan_out = _fan_out_started(request.run_config, executor)
        writer = self._writer(run_id, 0, lease)
        take = None
        if self.leases is not None and lease is not None:
            take = partial(self.leases.insert_in, lease=lease)
        writer.append(
            RunStarted(
                op_id=request.plan.flow_id,
                manifest_id=request.manifest_id,
                initial_snapshot_id=initial_snapshot_id,
            ),
            *request.notes,
            *fan_out,
            within=take,
        )
        if self.leases is not None and lease is not None:
            self.leases.hold(lease)
        log.info("run started from manifest %s", request.manifest_id)
        if executor is not None:
            progress = Progress(initial_snapshot_id, {}, {}, {}, {}, gated=self.announce_states)
            fan = self._fan_out(
                request.manifest,
                order,
                bodies,
                writer,
                {},
                {},
                executor,
                progress,
                request.use_cache,
            )
            return (yield from fan.steps())
        return (
            yield from self._run_states(
                request.manifest,
                order,
                bodies,
                writer,
                completed=set(),
                current_snapshot_id=initial_snapshot_id,
                start=None,
                facts={},
                live=_Live(initial_snapshot_id, request.initial_context),
                use_cache=request.use_cache,
            )
        )

    def _resume_steps(self, run_id: str) -> Steps:
        record = self.events.run(run_id)
        lease = None
        if self.leases is not None and record is not None and record.status == "running":
            # run_in_progress if another live process drives it; taken over if it is gone
            lease = self.leases.acquire(run_id, current_owner(record.flow_id))
            self.leases.hold(lease)
        try:
            return (yield from self._resume_held(run_id, lease))
        finally:
            self._let_go(lease)

    def _let_go(self, lease: Lease | None) -> None:
        """Give up a lease still held when the steps end without ``RunCompleted`` (an
        interrupt, a failpoint, an error); one that ended the run went with it."""
        if self.leases is not None and lease is not None and self.leases.holds(lease):
            with contextlib.suppress(NbflowError):  # a lease left behind expires
                self.leases.release(lease)

    def _resume_held(self, run_id: str, lease: Lease | None) -> Steps:
        history = self.history(run_id)
        if history.run_completed is not None:
            RunLogger(run_id).info("run already ended; nothing to resume")
            return _ended_result(run_id, history)
        manifest = read_manifest(self.artifacts, history.started.manifest_id)
        executor = self._executor_for(manifest.run_config)
        if history.started.op_id != manifest.flow_id:
            raise HistoryError(
                "run_started_op_id_mismatch",
                f"run {run_id} started flow {history.started.op_id!r} but its manifest is "
                f"for {manifest.flow_id!r}",
                name=run_id,
            )
        order = topological_order(manifest.plan)
        unknown = set(history.completed) - {spec.id for spec in order}
        if unknown:
            raise HistoryError(
                "invalid_attempt_envelopes",
                f"run {run_id} completed states its manifest does not have: {sorted(unknown)}",
                name=run_id,
            )
        writer = self._writer(run_id, history.head_seq, lease)
        log = RunLogger(run_id)
        if executor is not None:
            return (yield from self._resume_fan_out(history, manifest, order, writer, executor))
        while True:
            start = self._resume_point(history, manifest, order, writer, log)
            if isinstance(start, RunResult):
                return start
            try:  # a codec that unpickles refuses an unsigned snapshot (untrusted_history)
                context = self.codec.restore(start.base_snapshot_id)
                break
            except NbflowError as exc:
                if exc.code not in DAMAGE_CODES:
                    raise
                self._fall_back(history, start.base_snapshot_id, exc, writer, log)
                history = self.history(run_id)
        bodies = {
            spec.id: self._resolve(manifest, spec)
            for spec in order
            if spec.id not in history.completed
        }
        return (
            yield from self._run_states(
                manifest,
                order,
                bodies,
                writer,
                completed=set(history.completed),
                current_snapshot_id=history.last_checkpoint,
                start=start,
                facts=dict(history.facts),
                live=_Live(start.base_snapshot_id, context),
                attempted=dict(history.last_attempt),
                children=history.children,
            )
        )

    def _fall_back(
        self,
        history: RunHistory,
        damaged: str,
        error: NbflowError,
        writer: RunWriter,
        log: RunLogger,
    ) -> None:
        """Go back to the newest intact checkpoint before ``damaged`` (DESIGN §5: the run
        falls back or fails clearly); the states after it will run again."""
        checkpoints: list[tuple[str | None, str]] = [(None, history.started.initial_snapshot_id)]
        checkpoints += list(history.completed.items())
        ids = [snapshot_id for _, snapshot_id in checkpoints]
        newest = len(ids) - 1 - ids[::-1].index(damaged) if damaged in ids else len(ids)
        for index in range(newest - 1, -1, -1):
            state, snapshot_id = checkpoints[index]
            if snapshot_id == damaged:
                continue
            try:
                self.codec.verify(snapshot_id)
            except NbflowError:
                continue
            discarded = [s for s, _ in checkpoints[index + 1 :] if s is not None]
            writer.append(
                CheckpointsDiscarded(
                    states=discarded,
                    snapshot_id=snapshot_id,
                    damaged_snapshot_id=damaged,
                    reason=error.message,
                )
            )
            where = f"the checkpoint after {state!r}" if state else "the run's start"
            log.warning("checkpoint %s is damaged; continuing from %s", damaged, where)
            return
        raise type(error)(
            error.code,
            f"{error.message}; the run has no intact checkpoint to fall back to",
            name=error.name,
            hint="start the run anew (`%flow run --fresh`, `nbflow run --fresh`); "
            "`nbflow verify` lists what is damaged",
            details=error.details,
        ) from error

    def cancel(self, run_id: str) -> RunResult:
        """End an unfinished run as cancelled; an ended run is returned unchanged."""
        history = self.history(run_id)
        if history.run_completed is not None:
            return _ended_result(run_id, history)
        lease = None
        if self.leases is not None:  # a run driven elsewhere right now is not cancelled
            lease = self.leases.acquire(run_id, current_owner(history.started.op_id))
            history = self.history(run_id)  # a takeover appended to it
        writer = self._writer(run_id, history.head_seq, lease)
        writer.append(
            RunCompleted(status=RunStatus.CANCELLED, final_snapshot_id=history.last_checkpoint)
        )
        RunLogger(run_id).info("run cancelled")
        return RunResult(run_id, RunPhase.CANCELLED, history.last_checkpoint)

    # -- drivers ----------------------------------------------------------------------------

    def _drive(self, steps: Steps) -> RunResult:
        with self.artifacts.batch():
            reply: Any = None
            failure: BaseException | None = None
            while True:
                command = advance(steps, reply, failure)
                reply = failure = None
                if isinstance(command, RunResult):
                    return command
                if isinstance(command, Wait):
                    self._sleep(command.seconds)
                    continue
                if isinstance(command, (Served, Starting, Parked)):
                    continue
                try:
                    with command.facts():
                        reply = command.body(command.context)
                except BaseException as exc:  # handed to the run's steps, which decide
                    failure = exc

    async def _drive_async(self, steps: Steps) -> RunResult:
        with self.artifacts.batch():
            reply: Any = None
            failure: BaseException | None = None
            while True:
                command = advance(steps, reply, failure)
                reply = failure = None
                if isinstance(command, RunResult):
                    return command
                if isinstance(command, Wait):
                    await asyncio.sleep(command.seconds)
                    continue
                if isinstance(command, (Served, Starting, Parked)):
                    continue
                try:
                    with command.facts():
                        reply = command.body(command.context)
                        if inspect.isawaitable(reply):
                            reply = await reply
                except BaseException as exc:  # handed to the run's steps, which decide
                    failure = exc

    def history(self, run_id: str) -> RunHistory:
        """The run's events folded into a :class:`RunHistory`; ``run_not_found`` if none."""
        if self.events.head_seq(run_id) == 0:
            raise StorageError(
                "run_not_found",
                f"there is no run {run_id}",
                name=run_id,
                hint="list runs with %flow runs or `nbflow runs`",
            )
        return read_history(run_id, self.events.read_range(run_id, 1, None))

    # -- resume decision ------------------------------------------------------------------

    def _resume_point(
        self,
        history: RunHistory,
        manifest: Manifest,
        order: list[StateSpec],
        writer: RunWriter,
        log: RunLogger,
    ) -> _Start | RunResult:
        orphan = history.open_attempt
        if orphan is not None:
            log.warning(
                "attempt %d of %s never ended; retrying it", orphan.attempt, orphan.state_id
            )
            return _Start(orphan.state_id, orphan.attempt + 1, orphan.base_snapshot_id)
        pending = next((spec for spec in order if spec.id not in history.completed), None)
        if pending is None:
            writer.append(
                RunCompleted(status=RunStatus.COMPLETED, final_snapshot_id=history.last_checkpoint)
            )
            log.info("all states had completed; run marked completed")
            return RunResult(writer.run_id, RunPhase.COMPLETED, history.last_checkpoint)
        failure = history.last_failure.get(pending.id)
        if failure is None:
            return _Start(pending.id, history.next_attempt(pending.id), history.last_checkpoint)
        policy = _policy(manifest, pending)
        if failure.error.retryable and failure.attempt + 1 < policy.max_attempts:
            log.info("retrying failed state %s as attempt %d", pending.id, failure.attempt + 1)
            return _Start(pending.id, failure.attempt + 1, failure.base_snapshot_id)
        writer.append(
            RunCompleted(status=RunStatus.FAILED, final_snapshot_id=history.last_checkpoint)
        )
        log.warning("state %s cannot be retried; run marked failed", pending.id)
        return RunResult(
            writer.run_id, RunPhase.FAILED, history.last_checkpoint, pending.id, failure.error
        )

    # -- running --------------------------------------------------------------------------

    def _run_cache(self, manifest: Manifest, use_cache: bool) -> RunCache[C] | None:
        if not use_cache or self.cache is None or self.cache_policy is None:
            return None
        return RunCache(self.cache_policy, self.cache, manifest)

    def _run_states(
        self,
        manifest: Manifest,
        order: list[StateSpec],
        bodies: Mapping[str, Body[C]],
        writer: RunWriter,
        *,
        completed: set[str],
        current_snapshot_id: str,
        start: _Start | None,
        facts: dict[str, object],
        live: _Live[C] | None,
        attempted: Mapping[str, int] | None = None,
        use_cache: bool = True,
        children: Mapping[ChildKey, ChildRecord] | None = None,
    ) -> Steps:
        replay_of = manifest.run_config.replay_of
        replayed = self.history(replay_of) if replay_of else None
        scope = self._scope(manifest, writer, facts, children, replayed)
        cache = self._run_cache(manifest, use_cache)
        found_start = start is None
        for spec in order:
            if spec.id in completed:
                continue
            if start is not None and not found_start and spec.id != start.state_id:
                continue
            if start is not None and spec.id == start.state_id:
                found_start = True
                attempt, base = start.attempt, start.base_snapshot_id
            else:
                # A state discarded by a fallback was attempted before: number on.
                attempt = (attempted or {}).get(spec.id, -1) + 1
                base = current_snapshot_id
            skipped = sorted(set(spec.tags) & set(manifest.run_config.skip_tags))
            if skipped:
                live = yield from self._skip(spec, attempt, base, writer, live, skipped)
                current_snapshot_id = base
                continue
            policy = _policy(manifest, spec)
            while True:
                outcome = yield from self._attempt(
                    spec, bodies[spec.id], attempt, base, writer, scope, live, cache
                )
                if isinstance(outcome, _Live):
                    live = outcome
                    current_snapshot_id = outcome.snapshot_id
                    break
                live = None
                if outcome is None:  # failpoint: stop as if the process died here
                    writer.flush()
                    return RunResult(writer.run_id, RunPhase.RUNNING, current_snapshot_id)
                log = RunLogger(writer.run_id).for_attempt(spec.id, attempt)
                if outcome.retryable and attempt + 1 < policy.max_attempts:
                    delay_ms = policy.delay_ms(attempt)
                    writer.append(
                        RetryScheduled(
                            state_id=spec.id, next_attempt=attempt + 1, delay_ms=delay_ms
                        )
                    )
                    log.warning("failed (%s); retrying in %d ms", outcome.code, delay_ms)
                    if delay_ms:
                        yield Wait(delay_ms / 1000)
                    attempt += 1
                    continue
                writer.append(
                    RunCompleted(status=RunStatus.FAILED, final_snapshot_id=current_snapshot_id)
                )
                log.error("failed (%s); no retries left, run failed", outcome.code)
                return RunResult(
                    writer.run_id, RunPhase.FAILED, current_snapshot_id, spec.id, outcome
                )
        checked = None
        if replay_of and replayed is not None:
            checked = check_replay(self.codec, replay_of, replayed, current_snapshot_id)
        if checked is not None:
            writer.append(checked)
        writer.append(
            RunCompleted(status=RunStatus.COMPLETED, final_snapshot_id=current_snapshot_id)
        )
        RunLogger(writer.run_id).info("run completed")
        return RunResult(writer.run_id, RunPhase.COMPLETED, current_snapshot_id, replay=checked)

    def _scope(
        self,
        manifest: Manifest,
        writer: RunWriter,
        facts: dict[str, object],
        children: Mapping[ChildKey, ChildRecord] | None,
        replayed: RunHistory | None,
    ) -> FactScope:
        """What :func:`nbflow.fact` and :func:`nbflow.child` record into for this run."""

        def record_fact(key: str, value: object, snapshot_id: str | None) -> None:
            writer.append(FactRecorded(key=key, value=value, snapshot_id=snapshot_id))

        return FactScope(
            facts,
            record_fact,
            self.secrets,
            self.fact_values,
            dict(replayed.facts) if replayed is not None else None,
            manifest.run_config.replay_of or "",
            run_id=writer.run_id,
            append=partial(_append_one, writer),
            children=dict(children or {}),
            replayed_children=dict(replayed.children) if replayed is not None else None,
            home=self.home_path,
        )

    def _fan_out(
        self,
        manifest: Manifest,
        order: list[StateSpec],
        bodies: Mapping[str, Body[C]],
        writer: RunWriter,
        facts: dict[str, object],
        children: Mapping[ChildKey, ChildRecord],
        executor: Executor,
        progress: Progress,
        use_cache: bool = True,
    ) -> FanOut[C]:
        assert self.branches is not None
        replay_of = manifest.run_config.replay_of
        replayed = self.history(replay_of) if replay_of else None
        scope = self._scope(manifest, writer, facts, children, replayed)
        cache = self._run_cache(manifest, use_cache)
        return FanOut(
            self, manifest, order, bodies, writer, scope, self.branches, executor, progress, cache
        )

    def _resume_fan_out(
        self,
        history: RunHistory,
        manifest: Manifest,
        order: list[StateSpec],
        writer: RunWriter,
        executor: Executor,
    ) -> Steps:
        """Resume a fan-out run: every orphaned attempt runs again as the next attempt,
        failed states are retried as the policy allows, completed ones are kept."""
        log = RunLogger(writer.run_id)
        writer.append(*_fan_out_started(manifest.run_config, executor))
        for orphan in history.open_attempts.values():
            log.warning(
                "attempt %d of %s never ended; retrying it", orphan.attempt, orphan.state_id
            )
        retry: dict[str, int] = {}
        failed = None
        for state_id, failure in history.last_failure.items():
            if state_id in history.completed or state_id in history.open_attempts:
                continue
            if history.last_attempt.get(state_id) != failure.attempt:
                continue  # a later attempt was entered (and is open or ended)
            policy = _policy(manifest, manifest.plan.state(state_id))
            if failure.error.retryable and failure.attempt + 1 < policy.max_attempts:
                retry[state_id] = failure.attempt + 1
            elif failed is None:
                failed = (state_id, failure.error)
        progress = Progress(
            history.started.initial_snapshot_id,
            dict(history.completed),
            dict(history.completed_base),
            {spec.id: history.next_attempt(spec.id) for spec in order},
            retry,
            failed,
            gated=self.announce_states,
        )
        bodies = {
            spec.id: self._resolve(manifest, spec)
            for spec in order
            if spec.id not in history.completed
        }
        fan = self._fan_out(
            manifest,
            order,
            bodies,
            writer,
            dict(history.facts),
            history.children,
            executor,
            progress,
        )
        return (yield from fan.steps())

    def _attempt(
        self,
        spec: StateSpec,
        body: Body[C],
        attempt: int,
        base_snapshot_id: str,
        writer: RunWriter,
        scope: FactScope,
        live: _Live[C] | None,
        cache: RunCache[C] | None = None,
    ) -> Generator[CallBody[C] | Served | Starting, C, _Live[C] | ErrorInfo | None]:
        """Run one attempt: the new live context, the failure, or None at the failpoint."""
        log = RunLogger(writer.run_id).for_attempt(spec.id, attempt)
        if self.announce_states:
            writer.flush()
            yield Starting(spec.id)
        # The base is restored before the attempt is recorded: a base that cannot be
        # loaded (damaged, foreign) raises with nothing appended, and the run stays as it
        # was, resumable once the cause is fixed.
        if live is not None and live.snapshot_id == base_snapshot_id:
            context = live.context
        else:
            context = self.codec.restore(base_snapshot_id)
        keyed = cache.key(spec, base_snapshot_id, context) if cache is not None else None
        entered: list[Event] = [
            StateEntered(state_id=spec.id, attempt=attempt, base_snapshot_id=base_snapshot_id)
        ]
        if keyed is not None:
            entered.append(
                StateKeyed(
                    state_id=spec.id,
                    key=keyed.key,
                    reason=keyed.reason,
                    facets=dict(keyed.facets),
                )
            )
        if cache is not None and keyed is not None and keyed.key is not None:
            # Served from the cache, the attempt is recorded in one commit with its
            # StateCached: putting the outputs in has no effect outside this process.
            for event in entered:
                writer.stage(event)
            served = self._serve(cache, keyed.key, spec, base_snapshot_id, context, writer)
            if served is not None:
                log.info("attempt served from the cache, from %s", base_snapshot_id)
                yield Served(spec.id)
                return served
            writer.flush()  # the attempt is durable before its code runs
        else:
            writer.append(*entered)
        log.info("attempt started from %s", base_snapshot_id)
        started = time.monotonic()
        try:
            result = yield CallBody(spec, attempt, body, context, scope)
        except Exception as exc:
            return self._fail(spec, attempt, writer, error_from_exception(spec, exc))
        except (KeyboardInterrupt, SystemExit) as exc:
            # The attempt stays open, so resume retries it; the event is for the timeline.
            writer.append(
                AttemptInterrupted(state_id=spec.id, attempt=attempt, reason=type(exc).__name__)
            )
            log.warning("interrupted by %s", type(exc).__name__)
            raise
        if self.failpoints.take_stop_after_body():
            log.warning("failpoint: stopping before the checkpoint is recorded")
            return None
        try:
            snapshot_id = self.codec.capture(result)
        except StorageError as exc:
            # The code ran; only saving failed (a full disk). That is no failure of the
            # state: the attempt stays open, as after a crash, and a resume runs it again
            # once the disk has room. The note may not fit on the disk either.
            with contextlib.suppress(NbflowError):
                writer.append(
                    AttemptInterrupted(
                        state_id=spec.id, attempt=attempt, reason=f"not saved: {exc.code}"
                    )
                )
            log.error("checkpoint not saved: %s", exc.message)
            raise
        except NbflowError as exc:
            return self._fail(spec, attempt, writer, exc.info())
        within = None
        if cache is not None and keyed is not None and keyed.key is not None:
            took_ms = int((time.monotonic() - started) * 1000)
            within = cache.record(
                keyed.key, spec, writer.run_id, base_snapshot_id, snapshot_id, took_ms
            )
        writer.stage(StateCompleted(state_id=spec.id, context_snapshot_id=snapshot_id), within)
        log.info("completed with snapshot %s", snapshot_id)
        return _Live(snapshot_id, result)

    def _skip(
        self,
        spec: StateSpec,
        attempt: int,
        base_snapshot_id: str,
        writer: RunWriter,
        live: _Live[C] | None,
        tags: list[str],
    ) -> Generator[Starting, C, _Live[C] | None]:
        """Enter and complete ``spec`` on its base snapshot, its code not run (DESIGN §3
        "Skip tags"): its downstream sees its upstream's variables."""
        if self.announce_states:
            writer.flush()
            yield Starting(spec.id)
        writer.append(
            StateEntered(state_id=spec.id, attempt=attempt, base_snapshot_id=base_snapshot_id),
            StateSkipped(state_id=spec.id, tags=tuple(tags)),
        )
        writer.stage(StateCompleted(state_id=spec.id, context_snapshot_id=base_snapshot_id))
        RunLogger(writer.run_id).for_attempt(spec.id, attempt).info("skipped (tags %s)", tags)
        return live if live is not None and live.snapshot_id == base_snapshot_id else None

    def _serve(
        self,
        cache: RunCache[C],
        key: str,
        spec: StateSpec,
        base_snapshot_id: str,
        context: C,
        writer: RunWriter,
    ) -> _Live[C] | None:
        """Complete the open attempt from the cache, if an intact entry has ``key``."""
        found = cached_outputs(self.codec, cache, key, base_snapshot_id, context, writer.run_id)
        if found is None:
            return None
        entry, snapshot_id, reused_context = found
        record_served(cache, entry, key, spec, snapshot_id, writer)
        return _Live(snapshot_id, reused_context)

    def replay_manifest(self, run_id: str) -> tuple[Manifest, str, str]:
        """For a replay of ``run_id``: its manifest with ``replay_of`` set (stored), that
        manifest's id, and the snapshot ``run_id`` started from."""
        return replay_manifest(self.artifacts, run_id, self.history(run_id))

    def _fail(
        self, spec: StateSpec, attempt: int, writer: RunWriter, error: ErrorInfo
    ) -> ErrorInfo:
        writer.append(StateFailed(state_id=spec.id, attempt=attempt, error=error))
        return error

    def _writer(self, run_id: str, head_seq: int, lease: Lease | None = None) -> RunWriter:
        return RunWriter(
            self.events, run_id, head_seq, self.listeners, self._guard, self.leases, lease
        )

    def _redacted(self, where: str, done: list[Redaction]) -> None:
        for listener in self.redaction_listeners:
            listener(where, done)


def _fan_out_started(config: RunConfig, executor: Executor | None) -> tuple[FanOutStarted, ...]:
    mode = config.execution_mode
    if executor is None or not isinstance(mode, FanOutJoin):
        return ()
    return (FanOutStarted(max_parallel=mode.max_parallel, executor=executor.name),)


def _append_one(writer: RunWriter, event: Event) -> None:
    writer.append(event)


def advance(
    steps: Steps, reply: Any, failure: BaseException | None
) -> CallBody[Any] | Wait | Served | Starting | Parked | RunResult:
    """Send a body's result (or throw its exception) into ``steps``; the next command, or
    the run's result once the steps are done."""
    try:
        return steps.throw(failure) if failure is not None else steps.send(reply)
    except StopIteration as stop:
        result: RunResult = stop.value
        return result


def _policy(manifest: Manifest, spec: StateSpec) -> RetryPolicy:
    return spec.retry or manifest.run_config.retry_policy


def _ended_result(run_id: str, history: RunHistory) -> RunResult:
    assert history.run_completed is not None
    ended = history.run_completed
    failed_state = history.last_failed_state if ended.status == RunStatus.FAILED else None
    failure = history.last_failure.get(failed_state) if failed_state else None
    return RunResult(
        run_id,
        RunPhase(ended.status.value),
        ended.final_snapshot_id,
        failed_state,
        failure.error if failure else None,
    )


def _as_resolver(bodies: BodyResolver[C] | Mapping[str, Body[C]]) -> BodyResolver[C]:
    if not isinstance(bodies, Mapping):
        return bodies
    table = bodies  # not copied: a Flow keeps declaring into the mapping it passed

    def resolve(manifest: Manifest, spec: StateSpec) -> Body[C]:
        try:
            return table[spec.id]
        except KeyError:
            raise NbflowError(
                "state_body_missing",
                f"no code was given for state {spec.id!r} of flow {manifest.flow_id!r}",
                name=spec.id,
                hint="pass a body for every state of the plan",
            ) from None

    return resolve
