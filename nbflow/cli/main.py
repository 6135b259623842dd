"""``nbflow``: look at and maintain a notebook's history from a terminal.

Exit codes: 0 done (a run completed), 1 a failure (a failed run, damaged artifacts),
2 usage error, 3 the run was interrupted (run the command again to resume it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from nbflow.cli.errors import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_USAGE, CommandLineError
from nbflow.errors import NbflowError
from nbflow.store import HOME_DIRNAME, Home
from nbflow.ui.model import RUNS_PAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CommandLineError(f"{self.prog}: {message}")


def _parser() -> _Parser:
    parser = _Parser(prog="nbflow", description="Durable, resumable notebook workflows.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, help_text in (
        ("run", "execute a notebook as one checkpointed run; resumes an interrupted one"),
        ("resume", "resume the notebook's interrupted run (same as run when there is one)"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("notebook", type=Path, help="NOTEBOOK.ipynb")
        sub.add_argument(
            "-p",
            "--parameter",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="set a parameter, as NAME=VALUE or NAME VALUE; VALUE keeps the type of its "
            "literal (0.01 is a float); injected after the cell tagged 'parameters'",
        )
        sub.add_argument(
            "--output", type=Path, help="executed notebook (default: NAME.output.ipynb)"
        )
        if name == "run":
            sub.add_argument("--fresh", action="store_true", help="start anew; do not resume")
            sub.add_argument(
                "--no-cache",
                action="store_true",
                help="execute every state; reuse no earlier result",
            )
            sub.add_argument(
                "--skip-tags",
                action="append",
                default=[],
                metavar="T1,T2",
                help="skip the states carrying one of these tags (%%%%state --tags)",
            )
            sub.add_argument(
                "--replay",
                metavar="RUN",
                help="run RUN's manifest again with its recorded facts only (no live IO)",
            )
            sub.add_argument(
                "--parallel",
                default="1",
                metavar="N",
                help="run up to N independent states at once, in worker processes",
            )
            sub.add_argument(
                "--dask",
                metavar="ADDRESS",
                help="run the branches on this Dask scheduler ('local': a LocalCluster)",
            )
            # Set by a parent run that starts this notebook as its child (nbflow.child).
            sub.add_argument("--child", help=argparse.SUPPRESS)
        sub.add_argument("--json", action="store_true", help="summary for machines")
    runs = commands.add_parser("runs", help="list the runs of a notebook, newest first")
    runs.add_argument("notebook", nargs="?", help="NOTEBOOK.ipynb (default: every notebook)")
    runs.add_argument("--home", help="the .nbflow folder (default: beside the notebook)")
    runs.add_argument("--json", action="store_true", help="output for machines (every run)")
    listed = runs.add_mutually_exclusive_group()
    listed.add_argument(
        "--limit",
        type=_positive,
        metavar="N",
        help=f"list the newest N runs (default: {RUNS_PAGE}; with --json, every run)",
    )
    listed.add_argument("--all", action="store_true", help="list every run")
    show = commands.add_parser(
        "show",
        help="a run's summary, its DAG and timeline as SVG; with a notebook, what is stale",
    )
    show.add_argument(
        "targets",
        nargs="*",
        metavar="NOTEBOOK.ipynb | RUN",
        help="a notebook (its plan now, stale states marked; its newest run), a run id "
        "or a unique prefix of one, or both",
    )
    show.add_argument("--svg", type=Path, metavar="FILE", help="write the pictures to FILE")
    show.add_argument("--home", help="the .nbflow folder (default: ./.nbflow)")
    show.add_argument("--json", action="store_true", help="output for machines")
    verify = commands.add_parser("verify", help="re-hash every artifact, report damage")
    verify.add_argument("dir", nargs="?", default=".", help="a notebook folder or .nbflow")
    trust = commands.add_parser(
        "trust", help="adopt a history made elsewhere: check it, show it, sign it"
    )
    trust.add_argument("dir", help="a notebook folder or its .nbflow")
    trust.add_argument("--yes", action="store_true", help="sign without asking")
    gc = commands.add_parser("gc", help="delete artifacts no run refers to")
    gc.add_argument("dir", nargs="?", default=".", help="a notebook folder or .nbflow")
    gc.add_argument("--dry-run", action="store_true", help="only report what would go")
    gc.add_argument(
        "--keep",
        metavar="SIZE",
        help="keep the cache within SIZE (10GB, 500MB), least recently used evicted first",
    )
    return parser


def _positive(text: str) -> int:
    """An argument that is a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def _home_of(path: str | None, notebook: str | None = None) -> Path:
    if path:
        return Path(path)
    if os.environ.get("NBFLOW_HOME"):
        return Path(os.environ["NBFLOW_HOME"])
    folder = Path(notebook).parent if notebook else Path(".")
    return folder / HOME_DIRNAME


def _existing_home(path: Path) -> Home:
    candidate = path
    if candidate.name != HOME_DIRNAME and (candidate / HOME_DIRNAME).is_dir():
        candidate = candidate / HOME_DIRNAME
    if not (candidate / "nbflow.db").exists():
        raise CommandLineError(f"nbflow: no history in {candidate} (no nbflow.db there)")
    return Home(candidate)


SEARCH_DEPTH = 3
"""How deep below the working directory ``nbflow show RUN`` looks for notebook folders."""


def _home_with_run(default: Path, run: str) -> Path:
    """``default`` if it has a history; else the one history below the working directory
    (a notebook folder's ``.nbflow``, as ``nbflow runs`` lists them) that holds ``run``."""
    if (default / "nbflow.db").exists():
        return default
    found: list[Path] = []
    for depth in range(1, SEARCH_DEPTH + 1):
        for database in sorted(
            Path(".").glob("/".join(["*"] * depth) + f"/{HOME_DIRNAME}/nbflow.db")
        ):
            with Home(database.parent) as home:
                if home.events.find_runs(run):
                    found.append(database.parent)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise CommandLineError(
            f"nbflow show: run {run} is in more than one history ({', '.join(map(str, found))}); "
            "name the notebook: nbflow show NOTEBOOK.ipynb RUN"
        )
    return default


def papermill_pairs(argv: list[str]) -> list[str]:
    """``-p NAME VALUE`` (papermill's form) rewritten as ``-p NAME=VALUE``."""
    rewritten: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        following = argv[index + 1 : index + 3]
        if (
            word in ("-p", "--parameter")
            and len(following) == 2
            and following[0].isidentifier()
            and "=" not in following[0]
        ):
            rewritten += [word, f"{following[0]}={following[1]}"]
            index += 3
            continue
        rewritten.append(word)
        index += 1
    return rewritten


def _show_targets(targets: list[str]) -> tuple[Path | None, str | None]:
    notebooks = [t for t in targets if t.endswith(".ipynb")]
    runs = [t for t in targets if not t.endswith(".ipynb")]
    if len(notebooks) > 1 or len(runs) > 1:
        raise CommandLineError("nbflow show: give at most one NOTEBOOK.ipynb and one RUN")
    notebook = Path(notebooks[0]) if notebooks else None
    if notebook is not None and not notebook.is_file():
        raise CommandLineError(f"nbflow show: {notebook} is not a file")
    return notebook, runs[0] if runs else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        words = list(sys.argv[1:] if argv is None else argv)
        args = _parser().parse_args(papermill_pairs(words))
        return _dispatch(args)
    except CommandLineError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except NbflowError as exc:
        print(f"nbflow: {exc}", file=sys.stderr)
        refused = {"run_not_found", "run_ambiguous", "untrusted_history", "run_in_progress"}
        return EXIT_USAGE if exc.code in refused else EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (``nbflow runs NB | head``): stop quietly, as other
        # commands do, and keep Python from complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _dispatch(args: argparse.Namespace) -> int:
    from nbflow.cli import commands

    if args.command in ("run", "resume"):
        from nbflow.cli.run import RunChoices, interrupted_run_exists, run_notebook

        if args.command == "resume" and not interrupted_run_exists(args.notebook):
            raise CommandLineError(f"nbflow resume: {args.notebook} has no interrupted run")
        choices = RunChoices.from_arguments(
            fresh=getattr(args, "fresh", False),
            no_cache=getattr(args, "no_cache", False),
            skip_tags=getattr(args, "skip_tags", []),
            replay=getattr(args, "replay", None),
            child=getattr(args, "child", None),
            parallel=getattr(args, "parallel", "1"),
            dask=getattr(args, "dask", None),
        )
        return run_notebook(args.notebook, args.output, args.parameter, choices, args.json)
    if args.command == "runs":
        home = _existing_home(_home_of(args.home, args.notebook))
        with home:
            limit: int | None = args.limit
            if args.all or (limit is None and args.json):
                limit = None
            elif limit is None:
                limit = RUNS_PAGE
            flow_id = Path(args.notebook).name if args.notebook else None
            return commands.runs(home, flow_id, args.json, limit)
    if args.command == "show":
        notebook, run = _show_targets(args.targets)
        where = _home_of(args.home, str(notebook) if notebook else None)
        if run is not None and notebook is None and not args.home:
            where = _home_with_run(where, run)
        with _existing_home(where) as home:
            from nbflow.cli.show import show

            return show(home, run, args.svg, args.json, notebook)
    if args.command == "verify":
        with _existing_home(Path(args.dir)) as home:
            return commands.verify(home)
    if args.command == "trust":
        with _existing_home(Path(args.dir)) as home:
            return commands.trust(home, args.yes)
    with _existing_home(Path(args.dir)) as home:
        return commands.gc(home, args.dry_run, args.keep)
