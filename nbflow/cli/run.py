"""``nbflow run`` and ``nbflow resume``: a notebook executed headless as one run.

Like papermill: a fresh kernel in the notebook's folder, parameters injected after the
cell tagged ``parameters``, each cell's output written under it to ``--output``. The plan
is the notebook's ``%%state`` cells, and the whole execution is one run (see
:mod:`nbflow.kernel.notebook_run`). Run again after an interruption, it resumes that run:
the kernel gets the variables of the last checkpoint, the cells up to the last completed
state are skipped (their outputs are kept from the interrupted execution), and execution
continues with the state that was cut off.
"""

from __future__ import annotations

import ast
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from IPython.core.error import UsageError
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from nbflow.cli import cell_outputs
from nbflow.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CommandLineError
from nbflow.cli.notebook import StateCell, notebook_plan, state_cells
from nbflow.cli.summary import show_summary
from nbflow.engine.contract import manifest_id_of, read_manifest
from nbflow.engine.history import read_history
from nbflow.errors import NbflowError
from nbflow.kernel import arguments
from nbflow.kernel.session import BRANCH_OUTPUTS_MIME
from nbflow.model.config import FanOutJoin, RunConfig
from nbflow.model.events import StateCached, StateCompleted, StateEntered, StateSkipped
from nbflow.model.manifest import Manifest
from nbflow.model.parameters import decode_parameters, encode_parameters
from nbflow.model.plan import Plan
from nbflow.parallel.executors import DASK_DEFAULT_PARALLEL, DASK_ENV
from nbflow.store import HOME_DIRNAME, Home
from nbflow.store.leases import RunInProgressError


@dataclass(frozen=True)
class RunChoices:
    """How ``nbflow run`` runs the notebook, beyond its parameters."""

    fresh: bool = False
    use_cache: bool = True
    skip_tags: tuple[str, ...] = ()
    replay: str | None = None
    """A run id (or unique prefix) whose recorded facts the run is replayed from."""
    child: dict[str, Any] | None = None
    """Set when a parent run starts this notebook: ``run_id``, ``parameters`` (encoded)
    and ``parent`` (its ``ChildOf`` note)."""
    parallel: int = 1
    dask: str | None = None

    @classmethod
    def from_arguments(
        cls,
        *,
        fresh: bool,
        no_cache: bool,
        skip_tags: list[str],
        replay: str | None,
        child: str | None = None,
        parallel: str = "1",
        dask: str | None = None,
    ) -> RunChoices:
        """The choices of the command line, checked."""
        try:
            tags = arguments.skip_tags(skip_tags)
            branches = arguments.parallelism(parallel)
        except UsageError as exc:
            raise CommandLineError(f"nbflow run: {exc}") from None
        if dask is not None and branches == 1:
            branches = DASK_DEFAULT_PARALLEL
        launched = json.loads(child) if child else None
        return cls(fresh, not no_cache, tags, replay, launched, branches, dask)

    def run_config(self) -> RunConfig:
        """The run config of a run made with these choices."""
        config = RunConfig(skip_tags=self.skip_tags)
        if self.parallel > 1:
            mode = FanOutJoin(max_parallel=self.parallel)
            config = config.model_copy(update={"execution_mode": mode})
        return config


def _read(path: Path, as_version: int) -> Any:
    return nbformat.read(path, as_version=as_version)  # type: ignore[no-untyped-call]


def _write(notebook: Any, path: Path) -> None:
    """Write the executed notebook, signed as trusted by this user (see :func:`_sign`)."""
    _sign(notebook)
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]


def _sign(notebook: Any) -> None:
    """Sign the notebook with this user's Jupyter notebook secret, as JupyterLab signs a
    notebook whose outputs it computed: its outputs came from code this user chose to
    run. Untrusted, JupyterLab would sanitise the pictures' inline SVG down to their text.
    A notebook that cannot be signed (no writable Jupyter data folder) is written as it
    is, with a notice."""
    from nbformat.sign import NotebookNotary

    try:
        notary = NotebookNotary()  # type: ignore[no-untyped-call]
        Path(notary.data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        notary.sign(notebook)  # type: ignore[no-untyped-call]
    except Exception as exc:  # signing is a convenience: the outputs are written anyway
        print(
            f"nbflow: the output notebook is not signed as trusted ({type(exc).__name__}: "
            f"{exc}); Jupyter will show its pictures as text until you trust it",
            file=sys.stderr,
        )


def parse_parameters(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs. VALUE keeps the type of its Python literal (``0.01`` is a
    float, ``[1, 2.5]`` a list); text that is no literal is a string."""
    parameters: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.isidentifier():
            raise CommandLineError(f"nbflow run: -p wants NAME=VALUE or NAME VALUE, not {pair!r}")
        try:
            value: Any = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = text
        parameters[name] = value
    try:
        encode_parameters(parameters)
    except NbflowError as exc:
        raise CommandLineError(f"nbflow run: {exc.message} ({exc.hint})") from None
    return parameters


def python_literal(value: Any) -> str:
    """Python source that evaluates to ``value`` (``float('nan')`` where repr is no literal)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({repr(value)!r})"
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(python_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {python_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def inject_parameters(notebook: Any, parameters: dict[str, Any]) -> None:
    """Insert a cell setting ``parameters`` after the cell tagged ``parameters``."""
    if not parameters:
        return
    source = "# Parameters\n" + "".join(
        f"{k} = {python_literal(v)}\n" for k, v in parameters.items()
    )
    cell = nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
        source, metadata={"tags": ["injected-parameters"]}
    )
    cells = notebook.cells
    tagged = [
        i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    cells.insert(tagged[0] + 1 if tagged else 0, cell)


def interrupted_run_exists(path: Path) -> bool:
    """Whether the notebook at ``path`` has an unfinished run."""
    home = path.resolve().parent / HOME_DIRNAME
    if not (home / "nbflow.db").exists():
        return False
    with Home(home) as opened:
        return any(r.status == "running" for r in opened.events.runs(flow_id=path.name))


@dataclass(frozen=True)
class ReplaySource:
    """The run that ``--replay`` names, and what it was started with."""

    run_id: str
    parameters: dict[str, Any]
    run_config: RunConfig
    plan: Plan


def replay_source(home: Home, flow_id: str, prefix: str) -> ReplaySource:
    """The run of ``flow_id`` that ``prefix`` names, with its manifest read back."""
    matches = [r.run_id for r in home.events.runs(flow_id=flow_id) if r.run_id.startswith(prefix)]
    if len(matches) != 1:
        found = "no run" if not matches else f"{len(matches)} runs"
        raise CommandLineError(
            f"nbflow run --replay: {found} of {flow_id} start with {prefix!r}; "
            f"list them with `nbflow runs {flow_id}`"
        )
    history = read_history(matches[0], home.events.read_range(matches[0]))
    manifest = read_manifest(home.artifacts, history.started.manifest_id)
    return ReplaySource(matches[0], manifest.parameters, manifest.run_config, manifest.plan)


def check_same_plan(replayed: ReplaySource, plan: Plan, prefix: str) -> None:
    """Refuse a replay whose notebook no longer declares the states the run ran."""
    if plan == replayed.plan:
        return
    before = {s.id: s for s in replayed.plan.states}
    now = {s.id: s for s in plan.states}
    changed = sorted(
        set(before) ^ set(now) | {n for n in set(before) & set(now) if before[n] != now[n]}
    )
    what = ", ".join(map(repr, changed)) or "its edges"
    raise CommandLineError(
        f"nbflow run --replay {prefix}: the notebook changed since that run ({what}); a "
        "replay runs the code the run ran: restore that version of the notebook first"
    )


def refuse_unless_resumable_here(home: Home, run_id: str) -> None:
    """Refuse, before any kernel starts, a run that another process drives right now
    (``run_in_progress``) or whose history this user did not make (``untrusted_history``)."""
    owner = home.leases.live_owner(run_id)
    if owner is not None:
        raise RunInProgressError(
            "run_in_progress",
            f"run {run_id[:8]} is being driven right now by {owner.describe()}",
            name=run_id,
            hint="wait for it to finish, or stop that kernel or process and run this again",
        )
    history = read_history(run_id, home.events.read_range(run_id))
    home.artifacts.require_signed(history.started.manifest_id, "manifest")
    home.artifacts.require_signed(history.last_checkpoint, "snapshot")


def run_notebook(
    path: Path,
    output: Path | None,
    parameter_pairs: list[str],
    choices: RunChoices,
    as_json: bool,
) -> int:
    """Execute ``path`` as one run, resuming an interrupted run of the same manifest."""
    if not path.is_file():
        raise CommandLineError(f"nbflow run: no notebook at {path}")
    notebook = _read(path, as_version=4)
    folder = path.resolve().parent
    flow_id = path.name
    with Home(folder / HOME_DIRNAME) as home:
        replayed = None
        if choices.replay is not None:
            if parameter_pairs:
                raise CommandLineError(
                    "nbflow run: --replay runs with the parameters of the run it replays; "
                    "leave out -p"
                )
            replayed = replay_source(home, flow_id, choices.replay)
        if replayed is not None:
            parameters = decode_parameters(replayed.parameters)
        elif choices.child is not None:
            parameters = decode_parameters(choices.child["parameters"])
        else:
            parameters = parse_parameters(parameter_pairs)
        inject_parameters(notebook, parameters)
        cells = state_cells(notebook)
        plan = notebook_plan(flow_id, cells)
        run_config = choices.run_config()
        if replayed is not None:
            check_same_plan(replayed, plan, choices.replay or "")
            run_config = replayed.run_config.model_copy(update={"replay_of": replayed.run_id})
        output = output or path.with_name(path.stem + ".output.ipynb")
        try:
            encoded = encode_parameters(parameters)
            manifest = Manifest(
                flow_id=flow_id, plan=plan, parameters=encoded, run_config=run_config
            )
            manifest_id = manifest_id_of(manifest)
        except NbflowError as exc:
            raise CommandLineError(f"nbflow run: {exc}") from None
        resume_run, skip_until, previous = None, -1, None
        if choices.child is not None:
            record = home.events.run(choices.child["run_id"])
            if record is not None and record.status != "running":
                Progress(len(notebook.cells), as_json, home, flow_id, cells).summary(
                    EXIT_OK if record.status == "completed" else EXIT_FAILED, output
                )
                return EXIT_OK if record.status == "completed" else EXIT_FAILED
            if record is not None:
                resume_run = record.run_id
        elif not choices.fresh:
            for record in home.events.runs(flow_id=flow_id):
                if record.status == "running" and record.manifest_id == manifest_id:
                    resume_run = record.run_id
                    break
        if resume_run is not None:
            refuse_unless_resumable_here(home, resume_run)
            if output.exists():
                previous = _read(output, as_version=4)
        fan_out = isinstance(run_config.execution_mode, FanOutJoin)
        if choices.dask is not None and choices.dask != "local":
            check_dask(choices.dask)
        progress = Progress(len(notebook.cells), as_json, home, flow_id, cells)
        notice = home.network_notice()
        if notice is not None:
            progress.say(notice)
        setup = (
            "%load_ext nbflow\n"
            f"__nbflow__.session.begin_notebook_run({plan.model_dump_json()!r}, "
            f"{json.dumps(encoded)!r}, {resume_run!r}, {choices.use_cache!r}, "
            f"{run_config.model_dump_json()!r}, "
            f"{json.dumps(choices.child) if choices.child and not resume_run else ''!r})"
        )
        client = NotebookClient(
            notebook,
            kernel_name="python3",
            timeout=None,
            resources={"metadata": {"path": str(folder)}},
        )
        status = EXIT_OK
        # The kernel learns the notebook's name as it would from a Jupyter server.
        env = {**os.environ, "JPY_SESSION_NAME": str(path.resolve())}
        if choices.dask is not None:
            env[DASK_ENV] = choices.dask
        with client.setup_kernel(cwd=str(folder), env=env):
            kernel_client: Any = client.kc
            reply = run_sync(kernel_client.execute_interactive)(
                setup, timeout=120, output_hook=lambda _msg: None
            )
            if reply["content"]["status"] != "ok":
                content = reply["content"]
                raise CommandLineError(
                    "nbflow run: the kernel could not start the run: "
                    f"{content.get('ename')}: {content.get('evalue')}"
                )
            if resume_run is not None:
                # Read after the kernel primed the run: a damaged checkpoint may have sent
                # it back to an older one, and then more cells run again.
                history = read_history(resume_run, home.events.read_range(resume_run))
                done = [c.index for c in cells if c.spec.id in history.completed]
                skip_until = max(done, default=-1)
                if fan_out:  # branches end out of order: go on from the first not done
                    pending = [c.index for c in cells if c.spec.id not in history.completed]
                    skip_until = min(pending, default=len(notebook.cells)) - 1
                progress.say(f"resuming run {resume_run[:8]}: cells 1-{skip_until + 1} were done")
            done_cells = set(done) if resume_run is not None and fan_out else set()
            for index, cell in enumerate(notebook.cells):
                if index <= skip_until or index in done_cells:
                    if previous is not None and index < len(previous.cells):
                        cell.outputs = previous.cells[index].get("outputs", [])
                    progress.cell(index, cell, "skipped (done before)", 0.0)
                    continue
                started = time.monotonic()
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as exc:
                    progress.cell(index, cell, "failed", time.monotonic() - started)
                    status = EXIT_INTERRUPTED if "interrupted" in str(exc) else EXIT_FAILED
                    break
                except KeyboardInterrupt:
                    progress.cell(index, cell, "interrupted", time.monotonic() - started)
                    status = EXIT_INTERRUPTED
                    break
                finally:
                    _write(notebook, output)
                if fan_out:  # a state cell only released its state: it ends at the end
                    what = "released" if progress.is_state(index) else "done"
                    progress.cell(index, cell, what, time.monotonic() - started)
                    continue
                _carry_outputs(home, progress, index, cell)
                progress.cell(
                    index, cell, progress.state_outcome(index), time.monotonic() - started
                )
            if fan_out and status == EXIT_OK:
                status = _end_fan_out(kernel_client, notebook, cells, progress, home)
        _write(notebook, output)
        progress.summary(status, output)
        return status


def check_dask(address: str) -> None:
    """Refuse at once, in one line, a Dask scheduler that cannot be reached."""
    from nbflow.parallel.dask_pool import DaskPool

    try:
        DaskPool(address, 1).close()
    except NbflowError as exc:
        raise CommandLineError(f"nbflow run: {exc.message}. {exc.hint or ''}".strip()) from None


def _end_fan_out(
    kernel_client: Any, notebook: Any, cells: list[StateCell], progress: Progress, home: Home
) -> int:
    """After the last cell of a fan-out run: let its states finish, and put what each
    branch showed under its own cell."""
    shown: dict[str, list[Any]] = {}

    def collect(message: dict[str, Any]) -> None:
        data = message.get("content", {}).get("data", {})
        if BRANCH_OUTPUTS_MIME in data:
            shown.update(data[BRANCH_OUTPUTS_MIME])

    reply = run_sync(kernel_client.execute_interactive)(
        "__nbflow__.session.end_notebook_run()", timeout=None, output_hook=collect
    )
    for cell in cells:
        outputs = shown.get(cell.spec.id, [])
        target = notebook.cells[cell.index]
        target.outputs = list(target.outputs) + [
            nbformat.from_dict(o)  # type: ignore[no-untyped-call]
            for o in outputs
        ]
        _carry_outputs(home, progress, cell.index, target)
        progress.cell(cell.index, target, progress.state_outcome(cell.index), 0.0)
    content = reply["content"]
    if content["status"] == "ok":
        return EXIT_OK
    progress.say(f"{content.get('ename')}: {content.get('evalue')}")
    return EXIT_INTERRUPTED if "interrupted" in str(content.get("evalue")) else EXIT_FAILED


def _carry_outputs(home: Home, progress: Progress, index: int, cell: Any) -> None:
    """A state cell that executed: keep what it showed with its cache entry. One served
    from the cache: show what the attempt it was served from showed, then its notice."""
    found = progress.state_attempt(index)
    if found is None:
        return
    run_id, state_id, served = found
    if served is None:
        cell_outputs.keep(home, run_id, state_id, list(cell.outputs))
        return
    earlier = cell_outputs.recall(home, served.from_run, served.from_state)
    restored = [nbformat.from_dict(o) for o in earlier]  # type: ignore[no-untyped-call]
    cell.outputs = restored + list(cell.outputs)


class Progress:
    """Lines on stderr while the notebook runs; a summary at the end."""

    def __init__(
        self, total: int, as_json: bool, home: Home, flow_id: str, cells: list[StateCell]
    ) -> None:
        self.total = total
        self.as_json = as_json
        self.started = time.monotonic()
        self._home = home
        self._flow_id = flow_id
        self._state_at = {c.index: c.spec.id for c in cells}

    def state_attempt(self, index: int) -> tuple[str, str, StateCached | None] | None:
        """For a state cell that completed in the newest run: the run, the state, and
        the ``StateCached`` event when it was served from the cache."""
        name = self._state_at.get(index)
        record = next(iter(self._home.events.runs(flow_id=self._flow_id, limit=1)), None)
        if name is None or record is None:
            return None
        served: StateCached | None = None
        completed = False
        for envelope in self._home.events.read_range(record.run_id):
            event = envelope.event
            if isinstance(event, StateEntered) and event.state_id == name:
                served, completed = None, False
            elif isinstance(event, StateCached) and event.state_id == name:
                served = event
            elif isinstance(event, StateCompleted) and event.state_id == name:
                completed = True
        return (record.run_id, name, served) if completed else None

    def is_state(self, index: int) -> bool:
        """Whether cell ``index`` is a ``%%state`` cell."""
        return index in self._state_at

    def state_outcome(self, index: int) -> str:
        """``done``, or for a state cell its last attempt in this notebook's newest run."""
        name = self._state_at.get(index)
        record = next(iter(self._home.events.runs(flow_id=self._flow_id, limit=1)), None)
        if name is None or record is None:
            return "done"
        stream = self._home.events.read_range(record.run_id)
        if any(isinstance(e.event, StateCached) and e.event.state_id == name for e in stream):
            return "cached"
        if any(isinstance(e.event, StateSkipped) and e.event.state_id == name for e in stream):
            return "skipped (tagged)"
        attempts = [
            e.event.attempt
            for e in stream
            if isinstance(e.event, StateEntered) and e.event.state_id == name
        ]
        return f"done, attempt {attempts[-1]}" if attempts else "done"

    def say(self, text: str) -> None:
        print(f"nbflow: {text}", file=sys.stderr)

    def cell(self, index: int, cell: Any, what: str, seconds: float) -> None:
        first = (cell.source.splitlines() or [""])[0][:60]
        kind = "state" if first.startswith("%%state") else cell.cell_type
        elapsed = time.monotonic() - self.started
        print(
            f"[{index + 1:>3}/{self.total}] {kind:<8} {what:<22} {seconds:7.2f} s  "
            f"(total {elapsed:6.1f} s)  {first}",
            file=sys.stderr,
        )

    def summary(self, status: int, output: Path) -> None:
        show_summary(self._home, self._flow_id, status, output, self.as_json)
