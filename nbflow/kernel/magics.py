"""The ``%%state`` cell magic and the ``%flow`` line magic."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from nbflow import maintenance
from nbflow.kernel.arguments import (
    HelpShown,
    flow_command,
    parallelism,
    skip_tags,
    state_options,
)
from nbflow.kernel.session import KernelSession

ASYNC_COMMANDS = frozenset({"run", "resume", "replay", "restore"})


class Handle:
    """What transformed cells await: ``__nbflow__.state_cell`` and ``.flow_line``."""

    def __init__(self, session: KernelSession) -> None:
        self.session = session

    async def state_cell(self, line: str, body: str) -> None:
        """Run a ``%%state`` cell."""
        try:
            options = state_options(line)
        except HelpShown:
            return
        await self.session.state_cell(options, body)

    async def flow_line(self, line: str) -> None:
        """Run ``%flow run|resume|replay|restore``."""
        try:
            command, args = flow_command(line)
        except HelpShown:
            return
        session = self.session
        if command == "run":
            await session.run(
                list(args.names),
                bool(args.fresh),
                not args.no_cache,
                skip_tags=skip_tags(args.skip_tags),
                parallel=parallelism(args.parallel),
                dask=args.dask,
            )
        elif command == "resume":
            await session.resume(args.run)
        elif command == "replay":
            await session.replay(args.run)
        elif command == "restore":
            await session.restore(args.target, args.run)
        else:
            run_sync_command(session, command, args)


def run_sync_command(session: KernelSession, command: str, args: Any) -> None:
    """The ``%flow`` subcommands that do not run state code."""
    if command == "show":
        session.views.show()
    elif command == "runs":
        session.views.runs(bool(args.all))
    elif command == "timeline":
        session.views.timeline(args.run)
    elif command == "status":
        session.views.status()
    elif command == "cancel":
        session.cancel(args.run)
    elif command == "mode":
        session.mode = args.mode
        session.presenter.message(f"nbflow: %%state cells now {args.mode} (mode {args.mode})")
    elif command == "verify":
        report = maintenance.verify(session.home)
        if report.damaged:
            session.presenter.message(
                f"nbflow: {len(report.damaged)} of {report.checked} artifacts are damaged: "
                + ", ".join(report.damaged)
            )
        else:
            session.presenter.message(f"nbflow: all {report.checked} artifacts are intact")
    elif command == "invalidate":
        session.invalidate(args.state, bool(args.downstream))
    elif command == "trust":
        session.trust(bool(args.yes))
    elif command == "gc":
        keep = None
        if args.keep is not None:
            try:
                keep = maintenance.parse_size(args.keep)
            except ValueError as exc:
                raise UsageError(f"%flow gc --keep: {exc}") from None
        gc = maintenance.collect_garbage(session.home, dry_run=bool(args.dry_run), keep_bytes=keep)
        session.presenter.message("nbflow: " + maintenance.describe(gc, bool(args.dry_run)))


@magics_class
class NbflowMagics(Magics):
    """nbflow's magics. State code itself runs through :class:`Handle`."""

    def __init__(self, shell: Any, session: KernelSession) -> None:
        super().__init__(shell)
        self.session = session

    @cell_magic
    def state(self, line: str, cell: str) -> None:
        """Declare a state of the plan and, in run mode, run it now, checkpointed.

        %%state NAME [--after A,B] [--retries N] [--backoff fixed:2s | exp:1s..60s]
                     [--retry-on ExcName,...] [--timeout 30m] [--always-run]
        """
        try:
            state_options(line)
        except HelpShown:
            return
        # Cells starting with %%state are rewritten before they reach this magic; it is
        # only reached from code such as run_cell_magic, which cannot await state code.
        raise UsageError("%%state must be the first line of a notebook cell")

    @line_magic
    def flow(self, line: str) -> None:
        """Look at and drive this notebook's plan and runs.

        %flow [show|run|resume|replay|restore|runs|timeline|status|cancel|mode|invalidate|verify|
               trust|gc]
        `%flow COMMAND --help` explains each command.
        """
        try:
            command, args = flow_command(line)
        except HelpShown:
            return
        if command in ASYNC_COMMANDS:
            # State code needs its cell to be a coroutine, which only the rewrite of a
            # top-level line provides (see transform.py).
            raise UsageError(
                f"%flow {command} must stand on its own line at the top level of a cell"
            )
        run_sync_command(self.session, command, args)
