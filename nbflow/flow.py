"""``nbflow.Flow``: the engine for scripts and tests, without Jupyter.

A flow is a named plan in a home folder. Declare states with :meth:`Flow.state` (a
decorator) or :meth:`Flow.declare`, then :meth:`Flow.run` it; after a crash, run it again or
call :meth:`Flow.resume`. Contexts are JSON documents unless another codec is given.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from nbflow.engine import (
    Body,
    ContextCodec,
    Engine,
    Failpoints,
    JsonContextCodec,
    RunPhase,
    RunResult,
    StartRequest,
    store_manifest,
    topological_order,
)
from nbflow.engine.caching import DocumentCache
from nbflow.errors import NbflowError, StorageError
from nbflow.model.config import FanOutJoin, RetryPolicy, RunConfig
from nbflow.model.events import ChildOf
from nbflow.model.manifest import Manifest
from nbflow.model.parameters import decode_parameters, encode_parameters
from nbflow.model.plan import STATE_NAME, Edge, Plan, StateSpec
from nbflow.options import parse_backoff, parse_duration_ms
from nbflow.parallel.flow_branches import FlowBranches
from nbflow.snapshot.values import SnapshotValues
from nbflow.store import HOME_DIRNAME, Home, RunRecord
from nbflow.store.artifacts import ArtifactStore

CodecFactory = Callable[[ArtifactStore], ContextCodec[Any]]


def default_home() -> Path:
    """``$NBFLOW_HOME`` if set, else ``.nbflow`` in the working directory."""
    configured = os.environ.get("NBFLOW_HOME")
    return Path(configured) if configured else Path.cwd() / HOME_DIRNAME


class Flow:
    """A named plan of states, run durably in a home folder."""

    def __init__(
        self,
        name: str,
        home: str | Path | None = None,
        *,
        codec: CodecFactory = JsonContextCodec,
        run_config: RunConfig | None = None,
        failpoints: Failpoints | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.home = Home(Path(home) if home is not None else default_home())
        notice = self.home.network_notice()
        if notice is not None:
            logging.getLogger("nbflow").warning(notice)
        self.run_config = run_config or RunConfig()
        self._states: dict[str, StateSpec] = {}
        self._upstream: dict[str, tuple[str, ...]] = {}
        self._bodies: dict[str, Body[Any]] = {}
        self._codec = codec
        self._failpoints = failpoints
        self._sleep = sleep
        self.engine: Engine[Any] = self._engine_over(self.home)

    def _engine_over(self, home: Home) -> Engine[Any]:
        context_codec = self._codec(home.artifacts)
        engine: Engine[Any] = Engine(
            home.artifacts,
            home.events,
            context_codec,
            self._bodies,
            failpoints=self._failpoints,
            sleep=self._sleep,
            leases=home.leases,
            cache=home.cache,
            cache_policy=DocumentCache(self._bodies.get, context_codec.restore),
            fact_values=SnapshotValues(home.artifacts),
        )
        engine.home_path = str(home.root)
        engine.branches = FlowBranches(str(home.root), self._bodies.__getitem__)
        return engine

    # -- declaring --------------------------------------------------------------------

    def declare(
        self,
        name: str,
        body: Body[Any],
        *,
        after: Iterable[str] = (),
        retries: int = 0,
        backoff: str | None = None,
        retry_on: Sequence[str] | None = None,
        timeout: str | None = None,
        always_run: bool = False,
        source: str | None = None,
        cache: bool = True,
        tags: Iterable[str] = (),
        in_kernel: bool = False,
    ) -> StateSpec:
        """Declare (or redefine) state ``name`` running ``body``; returns its spec.

        ``retries`` extra attempts with ``backoff`` (``fixed:2s`` or ``exp:1s..60s``),
        retrying only exceptions named in ``retry_on`` when given. With ``cache`` (the
        default), a run whose state has the same code (its helpers followed), the same
        context and the same parameters as an earlier completed one reuses that result.
        ``tags`` label it: a run with one of them in ``skip_tags`` skips it.
        """
        if retries < 0:
            raise NbflowError("bad_retries", "retries must be 0 or more", name=name)
        _check_tags(tags, "tags")
        policy = None
        if retries or backoff:
            policy = RetryPolicy(
                max_attempts=retries + 1,
                **({"backoff": parse_backoff(backoff)} if backoff else {}),
            )
        spec = StateSpec(
            id=name,
            source=source if source is not None else _source_of(body),
            retry=policy,
            retry_on=tuple(retry_on) if retry_on is not None else None,
            timeout_ms=parse_duration_ms(timeout, option="timeout") if timeout else None,
            always_run=always_run,
            cache=cache,
            tags=tuple(dict.fromkeys(tags)),
            in_kernel=in_kernel,
        )
        self._states[name] = spec
        self._upstream[name] = tuple(dict.fromkeys(after))
        self._bodies[name] = body
        return spec

    def state(self, name: str | None = None, **options: Any) -> Callable[[Body[Any]], Body[Any]]:
        """Decorator form of :meth:`declare`; the state is named after the function."""

        def register(body: Body[Any]) -> Body[Any]:
            self.declare(name or body.__name__, body, **options)
            return body

        return register

    @property
    def plan(self) -> Plan:
        """The declared states and edges."""
        edges = tuple(
            Edge(upstream=up, downstream=state_id)
            for state_id, ups in self._upstream.items()
            for up in ups
        )
        return Plan(flow_id=self.name, states=tuple(self._states.values()), edges=edges)

    def manifest(
        self,
        parameters: dict[str, Any] | None = None,
        skip_tags: Iterable[str] = (),
        parallel: int = 1,
    ) -> Manifest:
        """The manifest a run with ``parameters`` (skipping ``skip_tags``, running up to
        ``parallel`` independent states at once) starts from."""
        run_config = self.run_config
        if parallel > 1:
            mode = FanOutJoin(max_parallel=parallel)
            run_config = run_config.model_copy(update={"execution_mode": mode})
        tags = tuple(sorted(set(_check_tags(skip_tags, "skip_tags"))))
        if tags:
            run_config = run_config.model_copy(update={"skip_tags": tags})
        return Manifest(
            flow_id=self.name,
            plan=self.plan,
            parameters=encode_parameters(parameters or {}),
            run_config=run_config,
        )

    # -- running ----------------------------------------------------------------------

    def run(
        self,
        context: Any = None,
        *,
        parameters: dict[str, Any] | None = None,
        fresh: bool = False,
        cache: bool = True,
        skip_tags: Iterable[str] = (),
        parallel: int = 1,
        dask: Any = None,
    ) -> RunResult:
        """Run the plan. An unfinished run of the identical manifest is resumed instead,
        unless ``fresh``. ``context`` is what the first state receives (default ``{}``).
        ``cache=False`` executes every state even where an earlier result could be reused.
        States carrying one of ``skip_tags`` are entered and completed without running.
        ``parallel`` above 1 runs states with no path between them at once, in worker
        processes: a local pool, or a Dask cluster with ``dask`` (an address, ``"local"``
        for a ``LocalCluster``, or a ``distributed.Client``); each state's function then
        takes and returns a JSON object, and the objects of branches are joined."""
        if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
            raise NbflowError(
                "bad_parallel", f"parallel must be a whole number of 1 or more, not {parallel!r}"
            )
        if dask is not None and parallel == 1:
            parallel = 8
        self._branches().dask = dask
        manifest = self.manifest(parameters, skip_tags, parallel)
        topological_order(manifest.plan)  # refuse bad plans before writing anything
        manifest_id = store_manifest(self.home.artifacts, manifest)
        if not fresh:
            for record in self.home.events.runs(flow_id=self.name, status="running"):
                if record.manifest_id == manifest_id:
                    return self.engine.resume(record.run_id)
        request = StartRequest.for_manifest(
            manifest, manifest_id, {} if context is None else context, use_cache=cache
        )
        return self.engine.start(request)

    def _branches(self) -> FlowBranches:
        branches = self.engine.branches
        assert isinstance(branches, FlowBranches)
        return branches

    def replay(self, run_id: str) -> RunResult:
        """Run ``run_id``'s manifest again as a new run, from the context it started with,
        its facts served from its record only (DESIGN §3 "Replay"): a fact it does not hold
        fails with ``fact_missing``, and nothing live is called. ``result.replay`` says
        whether the final context equals ``run_id``'s, or which keys differ. The states
        must still be declared (their code is this flow's)."""
        original = self.resolve_run(run_id)
        manifest, manifest_id, initial = self.engine.replay_manifest(original)
        context = self.engine.codec.restore(initial)
        request = StartRequest.for_manifest(manifest, manifest_id, context, use_cache=False)
        return self.engine.start(request)

    def run_as_child(
        self, run_id: str, parameters: dict[str, Any], parent: ChildOf, resume: bool
    ) -> int:
        """Run (``resume``: continue) this flow as child run ``run_id`` of ``parent``, on a
        connection of its own (a forked worker's); 0 when it completed, else 1. A new run
        starts from its ``parameters`` (decoded) as its context."""
        with Home(self.home.root) as home:
            engine = self._engine_over(home)
            if resume:
                result = engine.resume(run_id)
            else:
                values = decode_parameters(parameters)
                manifest = self.manifest(values)
                manifest_id = store_manifest(home.artifacts, manifest)
                request = StartRequest.for_manifest(
                    manifest, manifest_id, values, (parent,), run_id=run_id
                )
                result = engine.start(request)
        return 0 if result.phase is RunPhase.COMPLETED else 1

    def resume(self, run_id: str | None = None) -> RunResult:
        """Resume ``run_id`` (a unique prefix is enough), or the newest unfinished run."""
        return self.engine.resume(self.resolve_run(run_id, unfinished=run_id is None))

    def cancel(self, run_id: str | None = None) -> RunResult:
        """Mark an unfinished run cancelled."""
        return self.engine.cancel(self.resolve_run(run_id, unfinished=run_id is None))

    def runs(self) -> list[RunRecord]:
        """This flow's runs, newest first."""
        return self.home.events.runs(flow_id=self.name)

    def restore(self, state: str, run_id: str | None = None) -> Any:
        """The context as it was after ``state`` completed in ``run_id`` (default: newest
        run in which it completed)."""
        candidates = [self.resolve_run(run_id)] if run_id else [r.run_id for r in self.runs()]
        for candidate in candidates:
            snapshot_id = self.engine.history(candidate).completed.get(state)
            if snapshot_id is not None:
                return self.engine.codec.restore(snapshot_id)
        raise NbflowError(
            "state_not_completed",
            f"state {state!r} has not completed in "
            + (f"run {candidates[0]}" if run_id else f"any run of {self.name!r}"),
            name=state,
            hint="run the flow first, or name a run in which the state completed",
        )

    def resolve_run(self, prefix: str | None, *, unfinished: bool = False) -> str:
        """The run id that ``prefix`` names; with no prefix, the newest (unfinished) run."""
        if prefix is None:
            status = "running" if unfinished else None
            for record in self.home.events.runs(flow_id=self.name, limit=1, status=status):
                return record.run_id
            raise StorageError(
                "run_not_found",
                f"flow {self.name!r} has no {'unfinished ' if unfinished else ''}run",
                name=self.name,
                hint="start one with run()",
            )
        return self.home.events.run_named(prefix)

    def close(self) -> None:
        """Close the home's database connection."""
        self.home.close()

    def __enter__(self) -> Flow:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _check_tags(tags: Iterable[str], option: str) -> list[str]:
    checked = list(tags)
    for tag in checked:
        if not isinstance(tag, str) or not STATE_NAME.fullmatch(tag):
            raise NbflowError(
                "bad_tag",
                f"{option}: {tag!r} is not a valid tag",
                name=str(tag),
                hint="tags are spelled like state names: letters, digits, '_', '.', '-'",
            )
    return checked


def _source_of(body: Body[Any]) -> str:
    try:
        return inspect.getsource(body)
    except (OSError, TypeError):
        return getattr(body, "__qualname__", repr(body))
