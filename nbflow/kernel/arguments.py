"""Parsing ``%%state`` and ``%flow`` arguments into checked values, or ``UsageError``.

Every parser is IPython's :class:`MagicArgumentParser`, whose errors are ``UsageError``:
shown as one line, without a traceback, and raised before anything is changed.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from typing import NoReturn

from IPython.core.error import UsageError

from nbflow.errors import NbflowError
from nbflow.model.config import RetryPolicy
from nbflow.model.plan import STATE_NAME, StateSpec
from nbflow.options import parse_backoff, parse_duration_ms

MAX_RETRIES = 1000


class HelpShown(Exception):  # noqa: N818 - a signal, not a failure
    """``--help`` was asked for and printed; nothing else is to be done."""


@dataclass(frozen=True)
class StateOptions:
    """The options of one ``%%state`` line, checked."""

    name: str
    after: tuple[str, ...]
    retry: RetryPolicy | None
    retry_on: tuple[str, ...] | None
    timeout_ms: int | None
    always_run: bool
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    cache: bool = True
    tags: tuple[str, ...] = ()
    in_kernel: bool = False

    def spec(self, source: str) -> StateSpec:
        """The state these options declare, running ``source``."""
        return StateSpec(
            id=self.name,
            source=source,
            retry=self.retry,
            retry_on=self.retry_on,
            timeout_ms=self.timeout_ms,
            always_run=self.always_run,
            inputs=self.inputs,
            outputs=self.outputs,
            cache=self.cache,
            tags=self.tags,
            in_kernel=self.in_kernel,
        )


class MagicArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are ``UsageError`` naming the magic, and whose ``--help``
    prints and then stops without leaving the kernel."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, end="")
        if status:
            raise UsageError(f"{self.prog}: invalid arguments")
        raise HelpShown


def _parser(prog: str, description: str) -> MagicArgumentParser:
    return MagicArgumentParser(prog=prog, description=description, add_help=True)


STATE_PARSER = _parser(
    "%%state", "Declare the cell as a state of the plan; in run mode, also run it now."
)
STATE_PARSER.add_argument("name", help="state name: letters, digits, _ . - (unique)")
STATE_PARSER.add_argument(
    "--after", action="append", default=[], metavar="A,B", help="upstream states"
)
STATE_PARSER.add_argument("--retries", default="0", metavar="N", help="retries after a failure")
STATE_PARSER.add_argument("--backoff", default=None, metavar="SPEC", help="fixed:2s or exp:1s..60s")
STATE_PARSER.add_argument(
    "--retry-on", action="append", default=None, metavar="Exc,...", help="retryable exceptions"
)
STATE_PARSER.add_argument("--timeout", default=None, metavar="D", help="per attempt: 30s, 30m")
STATE_PARSER.add_argument(
    "--always-run", action="store_true", help="re-execute instead of restoring"
)
STATE_PARSER.add_argument(
    "--inputs", action="append", default=[], metavar="PATH,GLOB", help="files it reads (keyed)"
)
STATE_PARSER.add_argument(
    "--outputs", action="append", default=[], metavar="PATH,GLOB", help="files it writes"
)
STATE_PARSER.add_argument(
    "--no-cache", action="store_true", help="always execute; never reuse an earlier result"
)
STATE_PARSER.add_argument(
    "--tags", action="append", default=[], metavar="T1,T2", help="labels (for --skip-tags)"
)
STATE_PARSER.add_argument(
    "--in-kernel", action="store_true", help="in a parallel run, run here, not in a worker"
)


def split_args(line: str) -> list[str]:
    """``line`` split like a shell would, as a ``UsageError`` when quotes do not close."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot read the arguments {line!r}: {exc}") from None


LIST_OPTIONS = frozenset({"after", "retry_on", "names", "inputs", "outputs", "tags", "skip_tags"})
"""Options whose value is a list of strings; every other value is a string or a flag."""


def parse(parser: MagicArgumentParser, line: str) -> argparse.Namespace:
    """Parse ``line``; ``HelpShown`` after printing ``--help``; ``UsageError`` if bad."""
    args = parser.parse_args(split_args(line))
    for key, value in vars(args).items():
        # argparse turns an explicit `--option=--` into an empty list instead of "--".
        items = value if key in LIST_OPTIONS and isinstance(value, list) else [value]
        if any(isinstance(item, list) for item in items):
            option = "--" + key.replace("_", "-")
            raise UsageError(f"{parser.prog}: {option} needs a value")
    return args


def _names(values: list[str] | None, option: str) -> tuple[str, ...]:
    names: list[str] = []
    for value in values or []:
        for part in value.split(","):
            part = part.strip()
            if not part:
                raise UsageError(f"{option}: empty name in {value!r}")
            if not STATE_NAME.fullmatch(part):
                raise UsageError(f"{option}: {part!r} is not a valid name")
            names.append(part)
    return tuple(dict.fromkeys(names))


def _exception_names(values: list[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    names = tuple(
        dict.fromkeys(p.strip() for value in values for p in value.split(",") if p.strip())
    )
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise UsageError(f"--retry-on: {name!r} is not an exception class name")
    if not names:
        raise UsageError("--retry-on: name at least one exception class")
    return names


def state_options(line: str) -> StateOptions:
    """The checked options of a ``%%state`` line."""
    args = parse(STATE_PARSER, line)
    name: str = args.name
    if not STATE_NAME.fullmatch(name):
        raise UsageError(
            f"%%state: {name!r} is not a valid state name "
            "(letters, digits, '_', '.', '-'; not starting with a digit, '.' or '-')"
        )
    after = _names(args.after, "--after")
    if name in after:
        raise UsageError(f"%%state {name}: a state cannot run after itself")
    retries_text: str = args.retries
    if not retries_text.isascii() or not retries_text.isdigit():
        raise UsageError(f"--retries: {retries_text[:40]!r} is not a whole number")
    if len(retries_text) > 6:
        raise UsageError(f"--retries: at most {MAX_RETRIES}")
    retries = int(retries_text)
    if retries > MAX_RETRIES:
        raise UsageError(f"--retries: at most {MAX_RETRIES}")
    try:
        backoff = parse_backoff(args.backoff) if args.backoff is not None else None
        timeout_ms = parse_duration_ms(args.timeout, option="--timeout") if args.timeout else None
    except NbflowError as exc:
        raise UsageError(f"{exc.message}. {exc.hint or ''}".strip()) from None
    if timeout_ms == 0:
        raise UsageError("--timeout: must be longer than 0")
    retry = None
    if retries or backoff is not None:
        retry = RetryPolicy(max_attempts=retries + 1, **({"backoff": backoff} if backoff else {}))
    return StateOptions(
        name=name,
        after=after,
        retry=retry,
        retry_on=_exception_names(args.retry_on),
        timeout_ms=timeout_ms,
        always_run=bool(args.always_run),
        inputs=_paths(args.inputs, "--inputs"),
        outputs=_paths(args.outputs, "--outputs"),
        cache=not args.no_cache,
        tags=_names(args.tags, "--tags"),
        in_kernel=bool(args.in_kernel),
    )


MAX_PARALLEL = 256


def parallelism(text: str, option: str = "--parallel") -> int:
    """The N of ``--parallel N``: a whole number from 1 to 256."""
    if not text.isascii() or not text.isdigit() or len(text) > 4:
        raise UsageError(f"{option}: {text[:40]!r} is not a whole number")
    value = int(text)
    if not 1 <= value <= MAX_PARALLEL:
        raise UsageError(f"{option}: from 1 to {MAX_PARALLEL}")
    return value


def skip_tags(values: list[str]) -> tuple[str, ...]:
    """The tags of ``--skip-tags`` options, checked like state names and sorted."""
    return tuple(sorted(_names(values, "--skip-tags")))


def _paths(values: list[str], option: str) -> tuple[str, ...]:
    """Comma-separated paths and globs, relative to the notebook's folder."""
    paths: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                raise UsageError(f"{option}: empty path in {value!r}")
            if "\x00" in part:
                raise UsageError(f"{option}: {part!r} is not a path")
            paths.append(part)
    return tuple(dict.fromkeys(paths))


FLOW_SUBCOMMANDS: dict[str, MagicArgumentParser] = {}


def _sub(name: str, description: str) -> MagicArgumentParser:
    parser = _parser(f"%flow {name}", description)
    FLOW_SUBCOMMANDS[name] = parser
    return parser


_sub("show", "Draw the plan, each state coloured by its latest status.")
_run = _sub("run", "Run the plan (or NAMEs and their upstream) as one run.")
_run.add_argument("names", nargs="*", metavar="NAME")
_run.add_argument("--fresh", action="store_true", help="start anew instead of resuming")
_run.add_argument(
    "--no-cache", action="store_true", help="execute every state; reuse no earlier result"
)
_run.add_argument(
    "--skip-tags",
    action="append",
    default=[],
    metavar="T1,T2",
    help="skip the states carrying one of these tags",
)
_run.add_argument(
    "--parallel", default="1", metavar="N", help="run up to N independent states at once"
)
_run.add_argument(
    "--dask",
    default=None,
    metavar="ADDRESS",
    help="run branches on this Dask scheduler (or 'local': a LocalCluster); implies --parallel",
)
_resume = _sub("resume", "Resume the newest interrupted run, or RUN.")
_resume.add_argument("run", nargs="?", default=None, metavar="RUN")
_replay = _sub(
    "replay",
    "Run RUN's plan again as a new run (default: the newest), from the variables it started "
    "with; facts come from RUN's record only, and nothing live is called.",
)
_replay.add_argument("run", nargs="?", default=None, metavar="RUN")
_restore = _sub("restore", "Put the variables back as they were after STATE.")
_restore.add_argument("target", nargs="?", default=None, metavar="STATE|SNAPSHOT")
_restore.add_argument("--run", default=None, metavar="RUN", help="a run id or prefix")
_runs = _sub("runs", "List the runs of this notebook, newest first, a page at a time.")
_runs.add_argument("--all", action="store_true", help="list every run, not only the newest")
_timeline = _sub("timeline", "Show a run's attempts over time (default: newest run).")
_timeline.add_argument("run", nargs="?", default=None, metavar="RUN")
_sub("status", "Summarise the plan and the newest run.")
_cancel = _sub("cancel", "Mark an interrupted run cancelled (it cannot be resumed after).")
_cancel.add_argument("run", nargs="?", default=None, metavar="RUN")
_mode = _sub("mode", "Choose what a %%state cell does: run it now, or only declare it.")
_mode.add_argument("mode", choices=["run", "declare"])
_invalidate = _sub(
    "invalidate", "Never reuse the results of STATE computed so far (and of its downstream)."
)
_invalidate.add_argument("state", metavar="STATE")
_invalidate.add_argument(
    "--downstream", action="store_true", help="the states that depend on it, too"
)
_sub("verify", "Re-hash every artifact and report damage.")
_trust = _sub(
    "trust",
    "Adopt a history made elsewhere: check every artifact, show what it holds, and with "
    "--yes sign it with your key (its snapshots are then restored like your own).",
)
_trust.add_argument("--yes", action="store_true", help="sign it; without it, only show")
_gc = _sub(
    "gc",
    "Delete artifacts that no run or cache entry references; with --keep, keep the cache "
    "within SIZE, least recently used entries evicted first.",
)
_gc.add_argument("--dry-run", action="store_true", help="only report what would go")
_gc.add_argument(
    "--keep",
    metavar="SIZE",
    help="at most SIZE (10GB, 500MB) for the cache beyond the newest and interrupted runs",
)

FLOW_USAGE = "%flow [" + "|".join(FLOW_SUBCOMMANDS) + "] [--help]"


def flow_command(line: str) -> tuple[str, argparse.Namespace]:
    """The subcommand of a ``%flow`` line and its parsed arguments."""
    words = split_args(line)
    if not words:
        return "show", parse(FLOW_SUBCOMMANDS["show"], "")
    command, rest = words[0], words[1:]
    if command in ("-h", "--help"):
        raise UsageError(f"usage: {FLOW_USAGE}; `%flow COMMAND --help` explains each")
    parser = FLOW_SUBCOMMANDS.get(command)
    if parser is None:
        raise UsageError(f"%flow: unknown command {command!r}; usage: {FLOW_USAGE}")
    return command, parse(parser, shlex.join(rest))
