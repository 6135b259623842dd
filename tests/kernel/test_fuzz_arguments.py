"""Fuzzing ``%%state`` and ``%flow`` arguments in a real kernel (acceptance, DESIGN §1).

Bad arguments must raise IPython's ``UsageError`` (one line on stderr, no traceback) and
leave the plan and the store exactly as they were. Every example is executed in ONE kernel
shared by the module, which already has a plan of three states and a store with their runs.

A ``%%state`` cell must be a cell of its own and top-level ``%flow run|resume|restore``
lines become awaits, so each example is two execute requests: the fuzzed magic, then a
fingerprint of the plan and store (computed in the kernel, compared here).

Also plain tests: cyclic ``--after`` and dangling ``--after`` are refused, naming the states,
with nothing run and no run recorded.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernel_harness import CellResult, Kernel

pytestmark = pytest.mark.slow

KernelFactory = Callable[..., Kernel]

STATE_EXAMPLES = 1400
FLOW_EXAMPLES = 700

FIXTURE_STATES = ("alpha", "beta", "gamma")

FINGERPRINT = """\
def __nbflow_fuzz_fingerprint():
    import hashlib, json
    s = __nbflow__.session
    def digest(value):
        text = json.dumps(value, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
    runs = s.home.events.runs()
    artifacts = sorted(s.home.artifacts.ids())
    return json.dumps({
        "states": [len(s.declared.specs), digest({k: v.model_dump(mode="json")
                                          for k, v in s.declared.specs.items()})],
        "order": digest(list(s.declared.specs)),
        "upstream": digest({k: list(v) for k, v in s.declared.upstream.items()}),
        "mode": s.mode,
        "satisfied": sorted(s.satisfied) if len(s.satisfied) < 20 else digest(
            sorted(s.satisfied)),
        "restored": digest(sorted(s.restored)),
        "runs": [len(runs), digest([[r.run_id, r.status, r.head_seq] for r in runs])],
        "artifacts": [len(artifacts), digest(artifacts)],
    })
print(__nbflow_fuzz_fingerprint())
del __nbflow_fuzz_fingerprint
"""

TRACEBACK = "Traceback (most recent call last)"


class Fuzzed:
    """The shared kernel with what the fuzzing needs to know about its store."""

    def __init__(self, kernel: Kernel, folder: Path) -> None:
        self.kernel = kernel
        self.folder = folder
        self.run_ids: list[str] = []
        self.snapshot_ids: list[str] = []
        self.other_artifact_ids: list[str] = []

    def fingerprint(self) -> dict[str, Any]:
        result = self.kernel.run(FINGERPRINT)
        assert result.status == "ok", result.text
        value: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return value

    def lines(self, code: str) -> list[str]:
        return self.kernel.ok(code).stdout.split()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    folder = tmp_path_factory.mktemp("fuzz")
    kernel = Kernel(folder)
    try:
        kernel.ok("%load_ext nbflow")
        kernel.ok("%%state alpha\nvalue = 1")
        kernel.ok("%%state beta --after alpha --retries 2 --backoff fixed:1ms\nvalue = 2")
        kernel.ok("%%state gamma --after alpha,beta --timeout 30m --always-run\nvalue = 3")
        kernel.ok("%flow run")
        state = Fuzzed(kernel, folder)
        state.run_ids = state.lines(
            "print(*[r.run_id for r in __nbflow__.session.home.events.runs()])"
        )
        state.snapshot_ids = state.lines(
            "print(*sorted({e.event.context_snapshot_id"
            " for r in __nbflow__.session.home.events.runs()"
            " for e in __nbflow__.session.home.events.read_range(r.run_id)"
            " if getattr(e.event, 'context_snapshot_id', None)}))"
        )
        every = state.lines("print(*__nbflow__.session.home.artifacts.ids())")
        state.other_artifact_ids = [a for a in every if a not in state.snapshot_ids]
        assert len(state.run_ids) == 4
        assert state.snapshot_ids
        assert state.other_artifact_ids
        yield state
    finally:
        kernel.close()


# -- judging one execution ----------------------------------------------------------------


def outcome(line: str, result: CellResult) -> str:
    """``"ok"`` or ``"usage"``; anything else fails the example."""
    shown = f"input {line!r}\nstatus {result.status}, error {result.error}\n{result.text}"
    assert TRACEBACK not in result.text, shown
    assert result.error is None, shown
    if result.status == "ok":
        return "ok"
    assert result.status == "error", shown
    usage = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(usage) == 1, shown
    assert usage[0].startswith("UsageError: "), shown
    return "usage"


# -- strategies -----------------------------------------------------------------------------

LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""What ``str.splitlines`` splits on: a magic line cannot contain any of them."""

CHARS = st.characters(exclude_categories=["Cs"], exclude_characters=LINE_BREAKS)
ODD_CHARS = st.sampled_from(list("'\"\\ \t$%{}[]()#;:,.-=*?!&|<>~`@^\x00\x7fé名\u200b\ufeff"))
ANY_TEXT = st.text(st.one_of(CHARS, ODD_CHARS), max_size=30)
LONG_TEXT = st.one_of(
    st.text(CHARS, min_size=500, max_size=3000),
    st.integers(200, 5000).map(lambda n: "a" * n),
    st.integers(50, 500).map(lambda n: "--after " + ",".join(["x"] * n)),
)

VALID_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,12}", fullmatch=True)
NAME = st.one_of(
    st.sampled_from([*FIXTURE_STATES, "delta", "_x", "a.b-c", "Z9"]),
    VALID_NAME,
    st.sampled_from(["1abc", "-x", ".x", "a b", "", "--", "-", "é", "名前", "a/b", "a:b", "\\"]),
    ANY_TEXT,
)

HUGE_DIGITS = st.builds(
    lambda digit, n: digit * n, st.sampled_from(["0", "1", "9"]), st.integers(4200, 4400)
)
"""Around Python's 4300-digit limit of ``int(str)``."""
NUMBER = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    HUGE_DIGITS,
    st.integers(0, 1001).map(str),
    st.sampled_from(
        [
            "",
            "1.5",
            "1e3",
            "0x10",
            "\u0661",
            "\u0663",
            "+1",
            "-0",
            " 1",
            "inf",
            "NaN",
            "1_000",
            "\uff10",
            "²",
        ]
    ),
    ANY_TEXT,
)
UNIT = st.sampled_from(
    ["ms", "s", "m", "h", "", "d", "us", "µs", "S", "MS", "sec", "min", "\uff53", "m s", "hh"]
)
DURATION = st.one_of(
    st.builds(lambda n, u: f"{n}{u}", st.integers(-5, 10**20), UNIT),
    st.builds(lambda n, u: f"{n}{u}", HUGE_DIGITS, UNIT),
    st.builds(
        lambda n, u: f"{n}{u}", st.sampled_from(["1.5", "\u0661", "0", "00", " 2", "1e3"]), UNIT
    ),
    ANY_TEXT,
)
BACKOFF = st.one_of(
    st.builds(lambda d: f"fixed:{d}", DURATION),
    st.builds(lambda a, b: f"exp:{a}..{b}", DURATION, DURATION),
    st.sampled_from(
        [
            "fixed:2s",
            "exp:1s..60s",
            "exponential:1s..2s",
            "fixed",
            "fixed:",
            "exp:1s",
            "exp:2s..1s",
            "exp:..",
            "exp:1s...2s",
            "linear:1s",
            "fixed:1 s",
            "FIXED:1s",
            "exp:1s..60s..",
            ":2s",
            "fixed::2s",
        ]
    ),
    ANY_TEXT,
)
EXCEPTION = st.one_of(
    st.sampled_from(
        ["ValueError", "KeyError", "a.b.C", "a..b", "1Err", "", " ", "Ünïcode", "x-y", ".E", "E."]
    ),
    ANY_TEXT,
)
SEPARATOR = st.sampled_from([",", ", ", ",,", " ,", ";", ",\t"])


def joined(items: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda parts, sep: sep.join(parts), st.lists(items, min_size=0, max_size=4), SEPARATOR
    )


def option(flag: str, value: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """``--flag value``, ``--flag=value``, the flag without its value, or a quoted value."""
    return st.one_of(
        st.builds(lambda v: [flag, v], value),
        st.builds(lambda v: [f"{flag}={v}"], value),
        st.just([flag]),
        st.builds(lambda v: [flag, shlex.quote(v)], value),
        st.sampled_from(["--", "-", "-1", "-x", "", "'--'"]).map(lambda v: [f"{flag}={v}"]),
    )


JUNK = st.one_of(
    st.sampled_from(
        [
            "--unknown",
            "-x",
            "--",
            "-",
            "'unclosed",
            '"unclosed',
            "trailing\\",
            "\\",
            "''",
            '""',
            "--always-run=1",
            "--always",
            "--al",
            "--ret",
            "--a",
            "-h",
            "--help",
            "--hel",
            "--after=",
            "--after=,",
            "--retries=",
        ]
    ),
    ANY_TEXT,
)


def assemble(tokens: list[str], gaps: list[str]) -> str:
    """The tokens separated by the gaps in turn (a single space without any); a trailing
    gap is kept when there are two or more gaps."""
    if not gaps:
        return " ".join(tokens)
    out = "".join(token + gaps[index % len(gaps)] for index, token in enumerate(tokens))
    return out if len(gaps) > 1 else out.rstrip(" \t")


GAPS = st.lists(st.sampled_from([" ", "  ", "\t", " \t "]), min_size=0, max_size=3)

STATE_OPTION = st.one_of(
    option("--after", joined(NAME)),
    option("--retries", NUMBER),
    option("--backoff", BACKOFF),
    option("--retry-on", joined(EXCEPTION)),
    option("--timeout", DURATION),
    st.just(["--always-run"]),
    JUNK.map(lambda j: [j]),
)


@st.composite
def state_lines(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.one_of(ANY_TEXT, LONG_TEXT))
    tokens: list[str] = []
    if draw(st.integers(0, 5)) > 0:
        tokens.append(draw(NAME))
    for group in draw(st.lists(STATE_OPTION, max_size=5)):
        tokens.extend(group)
    tokens = draw(st.permutations(tokens)) if draw(st.booleans()) else tokens
    if kind == 1:
        tokens.append(draw(LONG_TEXT))
    return assemble(tokens, draw(GAPS))


RUN_REF = st.one_of(
    st.sampled_from(["{RUN}", "{RUN8}", "{RUN3}", "{RUN1}", "%", "_", "\\", "'", "0", "deadbeef"]),
    st.from_regex(r"[0-9a-f]{1,40}", fullmatch=True),
    ANY_TEXT,
)
RESTORE_TARGET = st.one_of(
    NAME,
    st.sampled_from(["{SNAP}", "{ART}", "blake3:", "blake3:zz", "BLAKE3:{HEX}", "sha256:{HEX}"]),
    st.builds(lambda h: "blake3:" + h, st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
    st.builds(lambda t: "blake3:" + t, ANY_TEXT),
)


def maybe(strategy: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return st.one_of(st.just([]), strategy)


def one(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return strategy.map(lambda value: [value])


FLOW_ARGS: dict[str, st.SearchStrategy[list[str]]] = {
    "show": st.just([]),
    "run": st.builds(
        lambda names, fresh: [*names, *fresh],
        st.lists(NAME, max_size=3),
        maybe(one(st.sampled_from(["--fresh", "--fres", "--fresh=1"]))),
    ),
    "resume": maybe(one(RUN_REF)),
    "restore": st.builds(
        lambda target, run: [*target, *run],
        maybe(one(RESTORE_TARGET)),
        maybe(option("--run", RUN_REF)),
    ),
    "runs": st.just([]),
    "timeline": maybe(one(RUN_REF)),
    "status": st.just([]),
    "cancel": maybe(one(RUN_REF)),
    "mode": maybe(one(st.one_of(st.sampled_from(["run", "declare", "RUN", "both", ""]), ANY_TEXT))),
    "verify": st.just([]),
    "gc": maybe(one(st.sampled_from(["--dry-run", "--dry", "--dry-run=yes", "--wet"]))),
}
COMMAND = st.one_of(
    st.sampled_from(sorted(FLOW_ARGS)),
    st.sampled_from(sorted(FLOW_ARGS)),
    st.sampled_from(["", "-h", "--help", "RUN", "Run", "sho", "help", "runs-", "run-x", "--"]),
    ANY_TEXT,
)


@st.composite
def flow_lines(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.one_of(ANY_TEXT, LONG_TEXT))
    command = draw(COMMAND)
    arguments = FLOW_ARGS.get(command)
    tokens = list(draw(arguments)) if arguments is not None else []
    if arguments is None or draw(st.integers(0, 3)) == 0:  # junk among the arguments
        for junk in draw(st.lists(JUNK, min_size=1, max_size=2)):
            tokens.insert(draw(st.integers(0, len(tokens))), junk)
    if kind == 1:
        tokens.append(draw(LONG_TEXT))
    return assemble([command, *tokens], draw(GAPS))


HEX = "0123456789abcdef" * 4


def concrete(line: str, fuzzed: Fuzzed, pick: int) -> str:
    """Fill the placeholders of a ``%flow`` line with ids from the kernel's store."""
    run = fuzzed.run_ids[pick % len(fuzzed.run_ids)]
    replacements = {
        "{RUN}": run,
        "{RUN8}": run[:8],
        "{RUN3}": run[:3],
        "{RUN1}": run[:1],
        "{SNAP}": fuzzed.snapshot_ids[pick % len(fuzzed.snapshot_ids)],
        "{ART}": fuzzed.other_artifact_ids[pick % len(fuzzed.other_artifact_ids)],
        "{HEX}": HEX,
    }
    for placeholder, value in replacements.items():
        line = line.replace(placeholder, value)
    return line


MAY_CHANGE = frozenset({"run", "resume", "restore", "mode", "gc"})
"""``%flow`` commands that change the plan, the mode or the store when they succeed."""


def may_change(line: str) -> bool:
    try:
        words = shlex.split(line)
    except ValueError:
        return False
    if not words or words[0] not in MAY_CHANGE:
        return False
    return not (words[0] == "gc" and words[1:] == ["--dry-run"])


# -- the fuzzing ------------------------------------------------------------------------------

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def declare_mode(fuzzed: Fuzzed) -> Iterator[Fuzzed]:
    """Declare mode for the ``%%state`` fuzzing; afterwards the plan and mode as before."""
    kernel = fuzzed.kernel
    kernel.ok(
        "__nbflow_fuzz_saved__ = (dict(__nbflow__.session.declared.specs), "
        "dict(__nbflow__.session.declared.upstream))"
    )
    kernel.ok("%flow mode declare")
    try:
        yield fuzzed
    finally:
        kernel.ok(
            "__nbflow__.session.declared.specs, __nbflow__.session.declared.upstream = (\n"
            "    __nbflow_fuzz_saved__)\n"
            "del __nbflow_fuzz_saved__"
        )
        kernel.ok("%flow mode run")


@settings(FUZZ, max_examples=STATE_EXAMPLES)
@given(line=state_lines())
def test_state_arguments_give_usage_errors_and_change_nothing(
    declare_mode: Fuzzed, line: str
) -> None:
    fuzzed = declare_mode
    before = fuzzed.fingerprint()
    assert before["mode"] == "declare"
    result = fuzzed.kernel.run(f"%%state {line}\nvalue = 1")
    kind = outcome(line, result)
    event(f"outcome: {kind}")
    after = fuzzed.fingerprint()
    if kind != "ok":
        assert after == before, f"input {line!r} changed the plan or store\n{result.text}"
    else:  # declared at most one state, and ran nothing
        assert after["runs"] == before["runs"], line
        assert after["artifacts"] == before["artifacts"], line
        assert after["states"][0] - before["states"][0] in (0, 1), line


@settings(FUZZ, max_examples=FLOW_EXAMPLES)
@given(line=flow_lines(), pick=st.integers(0, 1000))
def test_flow_arguments_give_usage_errors_and_change_nothing(
    fuzzed: Fuzzed, line: str, pick: int
) -> None:
    line = concrete(line, fuzzed, pick)
    before = fuzzed.fingerprint()
    result = fuzzed.kernel.run(f"%flow {line}")
    kind = outcome(line, result)
    event(f"outcome: {kind}")
    event(f"command: {line.split()[0] if line.split() and may_change(line) else 'other'}")
    after = fuzzed.fingerprint()
    if kind != "ok" or not may_change(line):
        assert after == before, f"input {line!r} changed the plan or store\n{result.text}"
    if after["mode"] != "run":
        fuzzed.kernel.ok("%flow mode run")


FOUND_BY_FUZZING = [
    # StorageError traceback (artifact_id_invalid)
    pytest.param("%flow restore blake3:zz", id="restore-malformed-snapshot-id"),
    pytest.param("%flow restore blake3:", id="restore-empty-snapshot-id"),
    # ValueError tracebacks: int() refuses more than 4300 digits
    *(
        pytest.param(f"%%state huge {option}\nvalue = 1", id=f"state{option.split()[0]}-digits")
        for option in (
            "--retries " + "1" * 4301,
            "--timeout " + "1" * 4301 + "ms",
            "--backoff fixed:" + "1" * 4301 + "s",
            "--backoff exp:1s.." + "1" * 4301 + "s",
        )
    ),
    # argparse turns `--option=--` into []: AttributeError tracebacks, except --timeout=--,
    # taken as no timeout (the state was declared), and --run=--, taken as no --run
    *(
        pytest.param(f"%%state huge {option}=--\nvalue = 1", id=f"state{option}=--")
        for option in ("--after", "--retries", "--backoff", "--retry-on", "--timeout")
    ),
    pytest.param("%flow restore alpha --run=--", id="restore--run=--"),
]


@pytest.mark.parametrize("cell", FOUND_BY_FUZZING)
def test_found_by_fuzzing_is_a_usage_error(fuzzed: Fuzzed, cell: str) -> None:
    """Inputs for which the fuzzing (or probing next to what it found) once showed a
    traceback or was accepted instead of giving a UsageError."""
    before = fuzzed.fingerprint()
    result = fuzzed.kernel.run(cell)
    assert fuzzed.fingerprint() == before  # nothing declared, run or stored
    assert outcome(cell, result) == "usage"


# -- plain tests: cycles and dangling --after ---------------------------------------------------

APPEND = "open({log!r}, 'a').write('{name}\\n')"


def state_cell(name: str, log: Path, after: str = "") -> str:
    options = f" --after {after}" if after else ""
    return f"%%state {name}{options}\n" + APPEND.format(log=str(log), name=name)


def runs_in_store(kernel: Kernel) -> int:
    return int(kernel.ok("print(len(__nbflow__.session.home.events.runs()))").stdout)


def plan_of(kernel: Kernel) -> dict[str, list[str]]:
    shown = kernel.ok(
        "import json as __j; print(__j.dumps({k: list(v) for k, v in "
        "__nbflow__.session.declared.upstream.items()\n"
        "    if k in __nbflow__.session.declared.specs})); del __j"
    ).stdout
    value: dict[str, list[str]] = json.loads(shown)
    return value


def assert_usage_naming(result: CellResult, *names: str) -> str:
    assert outcome("", result) == "usage", result.text
    message = result.stderr
    for name in names:
        assert re.search(rf"\b{re.escape(name)}\b", message), (name, message)
    return message


@pytest.mark.parametrize("mode", ["run", "declare"])
def test_cyclic_after_is_refused_naming_both_states(
    kernels: KernelFactory, tmp_path: Path, mode: str
) -> None:
    log = tmp_path / "ran.log"
    log.write_text("")
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok(f"%flow mode {mode}")
    kernel.ok(state_cell("first", log))
    kernel.ok(state_cell("second", log, after="first"))
    ran = log.read_text()
    runs = runs_in_store(kernel)
    plan = plan_of(kernel)
    assert plan == {"first": [], "second": ["first"]}

    refused = kernel.run(state_cell("first", log, after="second"))
    message = assert_usage_naming(refused, "first", "second")
    assert "cycle" in message
    assert log.read_text() == ran  # nothing ran
    assert runs_in_store(kernel) == runs  # no run recorded
    assert plan_of(kernel) == plan  # the plan is as before

    kernel.ok("%flow run --no-cache")  # the plan is still whole and acyclic
    assert log.read_text() == ran + "first\nsecond\n"
    assert runs_in_store(kernel) == runs + 1


def test_flow_run_refuses_a_plan_with_a_cycle(kernels: KernelFactory, tmp_path: Path) -> None:
    """``%%state`` refuses cycles, but a plan can gain one from ``%flow resume`` filling in
    states of an older manifest; ``%flow run`` must refuse it. The cycle is put in place
    through the session here."""
    log = tmp_path / "ran.log"
    log.write_text("")
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    kernel.ok(state_cell("first", log))
    kernel.ok(state_cell("second", log, after="first"))
    kernel.ok("__nbflow__.session.declared.upstream['first'] = ('second',)")
    runs = runs_in_store(kernel)
    for line in ("%flow run", "%flow run second", "%flow run --fresh"):
        refused = kernel.run(line)
        message = assert_usage_naming(refused, "first", "second")
        assert "cycle" in message
    assert log.read_text() == ""
    assert runs_in_store(kernel) == runs


@pytest.mark.parametrize("mode", ["run", "declare"])
def test_after_an_undeclared_state_is_refused(
    kernels: KernelFactory, tmp_path: Path, mode: str
) -> None:
    log = tmp_path / "ran.log"
    log.write_text("")
    kernel = kernels()
    kernel.ok("%load_ext nbflow")
    kernel.ok(f"%flow mode {mode}")
    refused = kernel.run(state_cell("down", log, after="nowhere"))
    assert_usage_naming(refused, "down", "nowhere")
    assert log.read_text() == ""
    assert runs_in_store(kernel) == 0
    assert plan_of(kernel) == {}


def test_flow_run_refuses_a_dangling_after_with_nothing_run(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    """A state declared after one that is only *restored* in this kernel (after a restart)
    depends on a state the plan does not have: ``%flow run`` refuses, naming both."""
    log = tmp_path / "ran.log"
    log.write_text("")
    first = kernels()
    first.ok("%load_ext nbflow")
    first.ok(state_cell("up", log))
    first.close()
    assert log.read_text() == "up\n"

    kernel = kernels()  # the notebook after a kernel restart
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow restore up")
    kernel.ok("%flow mode declare")
    kernel.ok(state_cell("down", log, after="up"))
    kernel.ok(state_cell("side", log))
    runs = runs_in_store(kernel)
    for line in ("%flow run", "%flow run down", "%flow run --fresh"):
        refused = kernel.run(line)
        message = assert_usage_naming(refused, "down", "up")
        assert "undeclared" in message
    assert log.read_text() == "up\n"  # nothing ran, not even the independent state
    assert runs_in_store(kernel) == runs
    kernel.ok("%flow run side")  # a selection without the dangling state still runs
    assert log.read_text() == "up\nside\n"
