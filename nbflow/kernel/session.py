"""One kernel's nbflow: its plan, its engine over the notebook's ``.nbflow``, its mode.

There is one session per kernel, held by the extension and passed explicitly; it is the
only state nbflow keeps in the kernel. State code runs through :mod:`.execution`; the
engine's async driver runs it, so every step is recorded as in any other run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from IPython.core.error import UsageError

from nbflow import trust
from nbflow.engine import Body, Engine, StartRequest, store_manifest
from nbflow.engine.contract import read_manifest
from nbflow.engine.core import DAMAGE_CODES
from nbflow.engine.results import RunPhase, RunResult, replay_verdict
from nbflow.errors import NbflowError
from nbflow.hashing.redact import KnownSecrets
from nbflow.kernel.arguments import StateOptions
from nbflow.kernel.branches import KernelBranches
from nbflow.kernel.cache_policy import KernelCache
from nbflow.kernel.checkpoints import resolve_run, restore_candidates, restored_effects
from nbflow.kernel.declared import DeclaredStates
from nbflow.kernel.discovery import NotebookLocation, fallback_home, locate
from nbflow.kernel.execution import Shell, run_state_code
from nbflow.kernel.ipython_names import ipython_owned
from nbflow.kernel.kernel_codec import KernelCodec
from nbflow.kernel.looking import SessionViews
from nbflow.kernel.narration import Narrator
from nbflow.kernel.notebook_fan_out import FanOutCellDriver
from nbflow.kernel.notebook_run import CellDriver
from nbflow.kernel.quiet import QuietWatch
from nbflow.kernel.usage import as_usage, usage
from nbflow.kernel.views import StateCounts, plan_staleness, run_bars, run_page
from nbflow.model.config import FanOutJoin, RunConfig
from nbflow.model.events import (
    ChildOf,
    StatesSatisfied,
)
from nbflow.model.manifest import Manifest
from nbflow.model.plan import Plan, StateSpec
from nbflow.parallel.executors import DASK_DEFAULT_PARALLEL
from nbflow.snapshot import NamespaceCodec
from nbflow.snapshot.filters import is_ipython_name
from nbflow.snapshot.values import SnapshotValues
from nbflow.store import Home
from nbflow.ui.model import AttemptBar, RunRow
from nbflow.ui.presenter import Presenter

BRANCH_OUTPUTS_MIME = "application/vnd.nbflow.branch-outputs+json"
"""What ``end_notebook_run`` hands ``nbflow run``: state id → the outputs of its cell."""


class StateFailedError(NbflowError):
    """A state ran out of attempts; its traceback was shown above."""


class StateInterruptedError(NbflowError):
    """A state was interrupted; its run stays resumable."""


class _Display(Protocol):
    def __call__(self, text: str) -> None: ...


class KernelSession:
    """The plan, mode and engine of one kernel."""

    def __init__(
        self,
        shell: Shell,
        presenter: Presenter,
        location: NotebookLocation | None = None,
    ) -> None:
        self.shell = shell
        self.presenter = presenter
        self.location = location or locate(shell.user_ns, os.environ, Path.cwd())
        self.home = self._open_home()
        self.secrets = KnownSecrets()
        """Secret values of this kernel: credential-like environment variables and the
        values of withheld variables. Nothing nbflow writes holds one."""
        self.snapshots = NamespaceCodec(self.home.artifacts, secrets=self.secrets)
        owned = ipython_owned(shell)
        self.snapshots.owned = owned
        self.quiet = QuietWatch(shell, owned)
        """Whether code ran since the namespace's last capture."""
        self.state_counts = StateCounts(self.home.artifacts)
        """How many states a run's plan has, by manifest."""
        self.cache_policy = KernelCache(self)
        self.engine: Engine[dict[str, Any]] = Engine(
            self.home.artifacts,
            self.home.events,
            KernelCodec(self),
            self._body_of,
            secrets=self.secrets,
            leases=self.home.leases,
            cache=self.home.cache,
            cache_policy=self.cache_policy,
            fact_values=SnapshotValues(self.home.artifacts, self.secrets),
        )
        self.engine.home_path = str(self.home.root)
        self.branches = KernelBranches(self)
        self.engine.branches = self.branches
        self.narrator = Narrator(self)
        self.views = SessionViews(self)
        self.engine.listeners.append(self.narrator.on_event)
        self.engine.redaction_listeners.append(self.narrator.on_redacted)
        self.mode = "run"
        self.declared = DeclaredStates(self.flow_id)
        self.satisfied: set[str] = set()
        """States completed or restored in this kernel."""
        self.restored: set[str] = set()
        self.replay_plan: list[StateSpec] = []
        self.replay_pending: list[StateSpec] = []
        self.live_run: str | None = None
        self.verbose_progress = False
        self.live_plan: Plan | None = None
        self.live_stale: dict[str, str] = {}
        """The states that were stale when the live run started (drawn so until reached)."""
        self.busy = False
        self.session_runs: dict[str, None] = {}
        """The runs this kernel drove (started or resumed), in order."""
        self.notebook_run: CellDriver | FanOutCellDriver | None = None

    @property
    def flow_id(self) -> str:
        """The notebook's flow id."""
        return self.location.flow_id

    def _open_home(self) -> Home:
        try:
            return Home(self.location.home)
        except NbflowError as exc:
            if exc.code not in ("home_not_writable", "home_not_a_directory"):
                raise
            other = fallback_home(self.location.folder, os.environ)
            self.presenter.message(
                f"nbflow: {self.location.home} cannot be written; keeping history in {other}"
            )
            self.location = NotebookLocation(
                self.location.folder, self.location.notebook, other, self.location.found_by
            )
            return Home(other)

    def close(self) -> None:
        """Release the database and stop watching the kernel."""
        self.quiet.close()
        self.home.close()

    # -- declaring ------------------------------------------------------------------------

    def declare(self, options: StateOptions, source: str) -> StateSpec:
        """Declare (or redefine) a state; a cycle is refused, naming its states."""
        return self.declared.declare(options, source)

    def plan(self, names: Iterable[str] = ()) -> Plan:
        """The declared plan, or ``names`` and everything upstream of them; validated."""
        return self.declared.plan(names)

    # -- running --------------------------------------------------------------------------

    def begin_notebook_run(
        self,
        plan_json: str,
        parameters_json: str,
        resume_run: str | None,
        use_cache: bool = True,
        run_config_json: str = "{}",
        child_json: str = "",
    ) -> None:
        """Make this kernel execute the notebook as one run (``nbflow run``): each
        ``%%state`` cell runs the next state. With ``resume_run``, its last checkpoint is
        restored now, before the remaining cells execute."""
        plan = Plan.model_validate_json(plan_json)
        parameters = json.loads(parameters_json)
        self.declared.adopt(plan)
        self.engine.announce_states = True  # each state happens in its own cell
        if resume_run is not None:
            history = usage(lambda: self.engine.history(resume_run))
            config = read_manifest(self.home.artifacts, history.started.manifest_id).run_config
            fan_out = isinstance(config.execution_mode, FanOutJoin)
        else:
            fan_out = isinstance(
                RunConfig.model_validate_json(run_config_json).execution_mode, FanOutJoin
            )
        driver_of = FanOutCellDriver if fan_out else CellDriver
        if fan_out:
            self.branches.collect_outputs = True
            self.shell.events.register("pre_run_cell", self._before_cell)
        if resume_run is not None:
            driver = driver_of(self.engine.resume_steps(resume_run))
            driver.prime()
        else:
            manifest = Manifest(
                flow_id=self.flow_id,
                plan=plan,
                parameters=parameters,
                run_config=RunConfig.model_validate_json(run_config_json),
            )
            manifest_id = usage(lambda: store_manifest(self.home.artifacts, manifest))
            notes: tuple[ChildOf, ...] = ()
            run_id = None
            if child_json:  # a child run: its id and its parent are given
                child = json.loads(child_json)
                notes, run_id = (ChildOf.model_validate(child["parent"]),), child["run_id"]
            request = StartRequest.for_manifest(
                manifest, manifest_id, self.shell.user_ns, notes, use_cache, run_id
            )
            driver = driver_of(self.engine.start_steps(request))
        self.notebook_run = driver
        self.mode = "notebook"

    def _before_cell(self, info: Any) -> None:
        """In a fan-out notebook run, a plain cell waits for the states above it."""
        driver = self.notebook_run
        raw = str(getattr(info, "raw_cell", "") or "")
        if isinstance(driver, FanOutCellDriver) and not raw.lstrip().startswith("%%state"):
            driver.barrier()

    def end_notebook_run(self) -> None:
        """After a notebook's last cell (``nbflow run``): a fan-out run finishes its
        states, and what each branch showed is handed to the command, for its cell."""
        driver = self.notebook_run
        if not isinstance(driver, FanOutCellDriver):
            return
        self.shell.events.unregister("pre_run_cell", self._before_cell)
        result = driver.finish()
        outputs, self.branches.outputs = self.branches.outputs, {}
        self.shell.display_pub.publish(
            data={BRANCH_OUTPUTS_MIME: outputs, "text/plain": "nbflow: branch outputs"}
        )
        self._finish(result, set())

    async def state_cell(self, options: StateOptions, source: str) -> None:
        """A ``%%state`` cell: declare it, and in run mode run it now as a one-state run."""
        if self.mode == "notebook" and self.notebook_run is not None:
            result = await self.notebook_run.run_state(
                self.shell, options.name, source, options.timeout_ms
            )
            if result is not None:
                self._finish(result, set())
            return
        for up in options.after:
            if up not in self.declared.specs and up not in self.satisfied:
                raise UsageError(
                    f"%%state {options.name}: upstream state {up!r} is not declared; "
                    "run the cell that declares it first"
                )
        spec = self.declare(options, source)
        if self.mode == "declare":
            after = f" after {', '.join(options.after)}" if options.after else ""
            self.presenter.message(f"nbflow: declared state {spec.id!r}{after}")
            return
        missing = [up for up in options.after if up not in self.satisfied]
        if missing:
            raise UsageError(
                f"%%state {spec.id}: upstream {', '.join(map(repr, missing))} has not "
                f"completed or been restored in this kernel. Run `%flow run {spec.id}` to "
                "run it with its upstream, or `%flow restore` to bring earlier results back"
            )
        plan = Plan(flow_id=self.flow_id, states=(spec,))
        await self._start(Manifest(flow_id=self.flow_id, plan=plan))

    async def run(
        self,
        names: list[str],
        fresh: bool,
        use_cache: bool = True,
        skip_tags: tuple[str, ...] = (),
        parallel: int = 1,
        dask: str | None = None,
    ) -> None:
        """``%flow run``: the plan (or ``names`` with their upstream) as one run; states
        carrying one of ``skip_tags`` are skipped. With ``parallel`` above 1 (or ``dask``),
        independent states run at once in worker processes (DESIGN §3 "Fan-out")."""
        plan = self.plan(names)
        self._warn_unknown_tags(plan, skip_tags)
        if dask is not None and parallel == 1:
            parallel = DASK_DEFAULT_PARALLEL
        config = RunConfig(skip_tags=skip_tags)
        if parallel > 1:
            config = config.model_copy(update={"execution_mode": FanOutJoin(max_parallel=parallel)})
        self.branches.dask = dask
        manifest = Manifest(flow_id=self.flow_id, plan=plan, run_config=config)
        manifest_id = usage(lambda: store_manifest(self.home.artifacts, manifest))
        if not fresh:
            for record in self.home.events.runs(flow_id=self.flow_id, status="running"):
                if record.manifest_id == manifest_id:
                    self.presenter.message(
                        f"nbflow: resuming interrupted run {record.run_id[:8]} of the same "
                        "plan (use --fresh to start anew)"
                    )
                    await self.resume(record.run_id)
                    return
        self.verbose_progress = True
        self.live_plan = plan
        self.live_stale = self.staleness(plan)
        try:
            await self._start(manifest, use_cache)
        finally:
            self.verbose_progress = False
            self.live_plan = None
            self.live_stale = {}

    def _warn_unknown_tags(self, plan: Plan, skip_tags: tuple[str, ...]) -> None:
        carried = {tag for spec in plan.states for tag in spec.tags}
        unknown = [tag for tag in skip_tags if tag not in carried]
        if unknown:
            self.presenter.message(
                f"nbflow: no state of the plan carries tag {', '.join(map(repr, unknown))}; "
                "nothing is skipped for it (tags are declared with %%state --tags)"
            )

    async def _start(
        self, manifest: Manifest, use_cache: bool = True, *, satisfied_notes: bool = True
    ) -> RunResult:
        manifest_id = usage(lambda: store_manifest(self.home.artifacts, manifest))
        in_plan = {spec.id for spec in manifest.plan.states}
        satisfied = sorted(self.satisfied - in_plan) if satisfied_notes else []
        replay = [
            self.declared.specs[s]
            for s in satisfied
            if s in self.declared.specs and self.declared.specs[s].always_run
        ]
        notes = (StatesSatisfied(states=satisfied, replay=replay),) if satisfied_notes else ()
        request = StartRequest.for_manifest(
            manifest, manifest_id, self.shell.user_ns, notes, use_cache
        )
        self.replay_plan = replay
        self.replay_pending = []
        with self._running():
            try:
                result = await self.engine.start_async(request)
            except KeyboardInterrupt:
                self.presenter.live_end("interrupted")
                raise self._interrupted() from None
            finally:
                self.live_run = None
        self.presenter.live_end(result.phase.value)
        self._finish(result, set(satisfied))
        return result

    async def replay(self, run: str | None) -> None:
        """``%flow replay``: run RUN's manifest again as a new run, from the variables it
        started with, with its recorded facts only; say whether it reproduced RUN."""
        run_id = self.resolve_run(run)
        manifest, _, initial = usage(lambda: self.engine.replay_manifest(run_id))
        document = usage(lambda: self.snapshots.document(initial))
        kept = {variable.name for variable in document.variables}
        aside = sorted(
            name for name in self.shell.user_ns if not is_ipython_name(name) and name not in kept
        )
        usage(lambda: self.snapshots.restore(initial, into=self.shell.user_ns))
        for name in aside:
            del self.shell.user_ns[name]
        dropped = (
            f"; removed {', '.join(aside[:8])}{' …' if len(aside) > 8 else ''}" if aside else ""
        )
        self.presenter.message(
            f"nbflow: replaying run {run_id[:8]} from the variables it started with{dropped}; "
            "facts come from its record only"
        )
        self.verbose_progress = True
        self.live_plan = manifest.plan
        try:
            result = await self._start(manifest, use_cache=False, satisfied_notes=False)
        finally:
            self.verbose_progress = False
            self.live_plan = None
        if result is not None and result.replay is not None:
            self.presenter.message(f"nbflow: {replay_verdict(result.replay)}")

    async def resume(self, run: str | None) -> None:
        """``%flow resume``: continue an interrupted run from its last checkpoint."""
        if run is None:
            newest = self.home.events.runs(flow_id=self.flow_id, limit=1)
            if newest and newest[0].status != "running":
                run = newest[0].run_id  # reported below as ended: nothing to resume
        run_id = self.resolve_run(run, interrupted=run is None)
        history = usage(lambda: self.engine.history(run_id))
        if history.run_completed is not None:
            status = history.run_completed.status.value
            failure = ""
            if history.last_failed_state:
                error = history.last_failure[history.last_failed_state].error
                failure = f" at state {history.last_failed_state!r}: {error.message}"
            self.presenter.message(
                f"nbflow: run {run_id[:8]} already ended {status}{failure}; nothing to resume"
            )
            return
        manifest = usage(lambda: read_manifest(self.home.artifacts, history.started.manifest_id))
        for spec in manifest.plan.states:  # the plan comes back without re-running cells
            self.declared.specs.setdefault(spec.id, spec)
            self.declared.upstream.setdefault(spec.id, manifest.plan.upstream_of(spec.id))
        satisfied, replay = restored_effects(self.home, run_id, history, manifest, upto=None)
        self.replay_plan = replay
        self.replay_pending = []
        self.presenter.message(
            f"nbflow: resuming run {run_id[:8]}: {len(history.completed)} of "
            f"{len(manifest.plan.states)} states done"
        )
        self.verbose_progress = True
        self.live_plan = manifest.plan
        with self._running():
            try:
                result = await self.engine.resume_async(run_id)
            except KeyboardInterrupt:
                self.presenter.live_end("interrupted")
                raise self._interrupted() from None
            finally:
                self.verbose_progress = False
                self.live_plan = None
                self.live_run = None
        self.presenter.live_end(result.phase.value)
        self._finish(result, satisfied)

    async def restore(self, target: str | None, run: str | None) -> None:
        """``%flow restore``: the variables as they were after a state (or a snapshot).

        Without a target, a damaged checkpoint is skipped for the newest intact one, and
        the user is told; a checkpoint asked for by name is restored or refused."""
        candidates = restore_candidates(self.home, self.engine, self.flow_id, target, run)
        for snapshot_id, run_id, label in candidates:
            satisfied: set[str] = set()
            replay: list[StateSpec] = []
            if run_id is not None:
                history = self.engine.history(run_id)
                manifest_id = history.started.manifest_id
                manifest = usage(partial(read_manifest, self.home.artifacts, manifest_id))
                satisfied, replay = restored_effects(
                    self.home, run_id, history, manifest, upto=label
                )
            try:
                self.snapshots.restore(snapshot_id, into=self.shell.user_ns)
                break
            except NbflowError as exc:
                if exc.code not in DAMAGE_CODES or target is not None:
                    raise as_usage(exc) from None
                self.presenter.message(
                    f"nbflow: the checkpoint after {label!r} (run {run_id and run_id[:8]}) is "
                    f"damaged, so it was not used ({exc.message}); trying an older one"
                )
        else:
            raise UsageError("%flow restore: every checkpoint of this notebook is damaged")
        report = self.snapshots.last_restore
        restored = len(report.restored) if report else 0
        self.presenter.message(
            f"nbflow: restored {restored} variables as they were after {label or snapshot_id}"
        )
        if report and report.missing:
            self.presenter.message(
                "nbflow: not in the snapshot: " + "; ".join(str(n) for n in report.missing)
            )
        for spec in replay:
            self.presenter.progress(spec.id, 0, "re-running (--always-run)")
            await run_state_code(self.shell, spec.id, spec.source, spec.timeout_ms)
        self.satisfied |= satisfied
        self.restored |= satisfied

    @contextmanager
    def _running(self) -> Iterator[None]:
        """Mark a run in progress; a second one (a button clicked meanwhile) is refused."""
        if self.busy:
            raise UsageError("nbflow: a run is already in progress in this kernel; wait for it")
        self.busy = True
        try:
            yield
        finally:
            self.busy = False

    # -- actions for buttons (RunActions) -------------------------------------------------

    async def resume_run(self, run_id: str) -> None:
        """Resume ``run_id`` (the banner's and the history's Resume button)."""
        await self.resume(run_id)

    async def restore_run(self, run_id: str) -> None:
        """Restore ``run_id``'s last checkpoint (the Restore buttons)."""
        await self.restore(None, run_id)

    def run_timeline(self, run_id: str) -> list[AttemptBar]:
        """The attempts of ``run_id`` (the history's Timeline button)."""
        return run_bars(self.home.events.read_range(run_id), self.views.snapshot_size_of)

    def _finish(self, result: RunResult, satisfied: set[str]) -> None:
        history = self.engine.history(result.run_id)
        done = set(history.completed)
        if result.phase is RunPhase.COMPLETED:
            self.satisfied |= satisfied | done
            self.restored -= done
            return
        self.satisfied |= done
        if result.phase is RunPhase.FAILED:
            error = result.error.message if result.error else "unknown error"
            raise StateFailedError(
                "state_failed",
                f"state {result.failed_state!r} failed: {error}. Run {result.run_id[:8]} "
                "has failed; fix the cell and run it again",
                name=result.failed_state,
            )
        self.presenter.message(f"nbflow: run {result.run_id[:8]} stopped ({result.phase.value})")

    def _interrupted(self) -> StateInterruptedError:
        run_id = self.live_run or ""
        record = self.home.events.run(run_id) if run_id else None
        state = record.last_state if record else None
        return StateInterruptedError(
            "state_interrupted",
            f"state {state!r} was interrupted; run {run_id[:8]} can be resumed with "
            "`%flow resume`, or ended with `%flow cancel`",
            name=state,
        )

    def _body_of(self, manifest: Manifest, spec: StateSpec) -> Body[dict[str, Any]]:
        async def body(namespace: dict[str, Any]) -> dict[str, Any]:
            replay, self.replay_pending = self.replay_pending, []
            for other in replay:
                self.presenter.progress(other.id, 0, "re-running (--always-run)")
                await run_state_code(self.shell, other.id, other.source, other.timeout_ms)
            await run_state_code(self.shell, spec.id, spec.source, spec.timeout_ms)
            return self.shell.user_ns

        return body  # type: ignore[return-value]  # the async driver awaits it

    # -- looking ----------------------------------------------------------------------------

    def resolve_run(self, prefix: str | None, *, interrupted: bool = False) -> str:
        """The run named by ``prefix``; without one, this notebook's newest (interrupted)."""
        return resolve_run(self.home, self.flow_id, prefix, interrupted=interrupted)

    def current_facets(self, plan: Plan) -> dict[str, dict[str, str]]:
        """Each state's key facets as they would be if it ran now (for staleness)."""
        return {spec.id: self.cache_policy.current_facets(spec) for spec in plan.states}

    def staleness(self, plan: Plan) -> dict[str, str]:
        """``state id -> why it is stale`` for the plan's stale states."""
        return plan_staleness(self.home.events, plan, self.current_facets(plan))

    def invalidate(self, state: str, downstream: bool) -> None:
        """``%flow invalidate``: the results of ``state`` computed so far are not reused."""
        states = self.declared.downstream_of(state) if downstream else {state}
        known = {e.state_id for e in self.home.cache.entries(self.flow_id)}
        if state not in known and state not in self.declared.specs:
            raise UsageError(f"%flow invalidate: no state named {state!r} in {self.flow_id}")
        count = self.home.cache.invalidate(self.flow_id, states)
        names = ", ".join(s for s in self.declared.order() if s in states) or state
        self.presenter.message(
            f"nbflow: {count} cached results of {names} will not be reused; they run on "
            "their next run"
        )

    def trust(self, yes: bool) -> None:
        """``%flow trust``: verify a history made elsewhere, say what it holds, adopt it."""
        report = trust.inspect(self.home)
        for line in report.lines():
            self.presenter.message(f"nbflow: {line}")
        if report.damaged:
            raise UsageError(
                "%flow trust: the history has damaged artifacts and cannot be trusted as a "
                "whole; nothing was signed"
            )
        if not report.unsigned:
            return
        if not yes:
            self.presenter.message(
                "nbflow: trusting it lets nbflow unpickle its snapshots and run its code, as "
                "if you had made it. If you trust whoever made it, run `%flow trust --yes`"
            )
            return
        signed = trust.adopt(self.home, report)
        self.presenter.message(
            f"nbflow: signed {signed} documents with your key; the history is yours now"
        )
        self.views.banner()

    def cancel(self, run: str | None) -> None:
        """``%flow cancel``."""
        run_id = self.resolve_run(run, interrupted=run is None)
        result = usage(lambda: self.engine.cancel(run_id))
        self.presenter.message(f"nbflow: run {run_id[:8]} is {result.phase.value}")

    def run_rows(self, offset: int) -> list[RunRow]:
        """A page of this notebook's run history from ``offset`` (the history's Older and
        Newer buttons)."""
        return run_page(self.home.events, self.state_counts, self.flow_id, offset)
