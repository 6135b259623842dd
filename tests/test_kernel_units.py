"""In-process checks of the cell transformer and the magic argument parsers."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbflow.kernel.arguments import HelpShown, flow_command, state_options
from nbflow.kernel.transform import HANDLE, transform_cell
from nbflow.model import ExponentialBackoff, FixedBackoff


def test_state_cell_becomes_an_await_of_the_session() -> None:
    lines = ["%%state train --after a,b\n", "x = 1\n", "await y\n"]
    assert transform_cell(lines) == [
        f"await {HANDLE}.state_cell('train --after a,b', 'x = 1\\nawait y\\n')\n"
    ]


def test_only_top_level_flow_run_resume_restore_lines_are_rewritten() -> None:
    lines = ["x = 1\n", "%flow run a --fresh\n", "    %flow resume\n", "%flow show\n"]
    out = transform_cell(lines)
    assert out[1] == f"await {HANDLE}.flow_line('run a --fresh')\n"
    assert out[0] == lines[0]
    assert out[2] == lines[2]
    assert out[3] == lines[3]
    assert transform_cell(["%%stateful x\n"]) == ["%%stateful x\n"]
    assert transform_cell([]) == []


def test_state_options_parse_every_option() -> None:
    options = state_options(
        "train --after a,b --after c --retries 2 --backoff exp:1s..60s "
        "--retry-on ConnectionError,requests.Timeout --timeout 30m --always-run"
    )
    assert options.name == "train"
    assert options.after == ("a", "b", "c")
    assert options.retry is not None
    assert options.retry.max_attempts == 3
    assert options.retry.backoff == ExponentialBackoff(base_ms=1000, max_ms=60_000)
    assert options.retry_on == ("ConnectionError", "requests.Timeout")
    assert options.timeout_ms == 30 * 60_000
    assert options.always_run
    fixed = state_options("load --backoff fixed:250ms")
    assert fixed.retry is not None
    assert fixed.retry.backoff == FixedBackoff(delay_ms=250)
    assert state_options("plain").retry is None


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("", "required: name"),
        ("9lives", "not a valid state name"),
        ("a --after a", "cannot run after itself"),
        ("a --after b,,c", "empty name"),
        ("a --retries -1", "not a whole number"),
        ("a --retries 1e3", "not a whole number"),
        ("a --retries 5000", "at most"),
        ("a --backoff sometimes", "not a backoff"),
        ("a --backoff exp:5s..1s", "below the base"),
        ("a --timeout 0s", "longer than 0"),
        ("a --timeout soon", "not a duration"),
        ("a --retry-on 3rd", "not an exception class name"),
        ("a --unknown", "unrecognized arguments"),
        ("a 'unclosed", "cannot read the arguments"),
        # found by fuzzing in a kernel: tracebacks instead of usage errors
        ("a --after=--", "--after needs a value"),
        ("a --retries=--", "--retries needs a value"),
        ("a --retries " + "1" * 4301, "at most"),
        ("a --timeout " + "1" * 4301 + "ms", "too long"),
        ("a --backoff exp:1s.." + "1" * 4301 + "s", "too long"),
    ],
)
def test_bad_state_options_are_one_line_usage_errors(line: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        state_options(line)
    assert says in str(caught.value)
    assert "\n" not in str(caught.value).strip()


def test_help_is_shown_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(HelpShown):
        state_options("--help")
    assert "--always-run" in capsys.readouterr().out
    with pytest.raises(HelpShown):
        flow_command("run --help")
    assert "--fresh" in capsys.readouterr().out


def test_flow_commands() -> None:
    assert flow_command("")[0] == "show"
    command, args = flow_command("restore train --run ab12")
    assert (command, args.target, args.run) == ("restore", "train", "ab12")
    with pytest.raises(UsageError, match="unknown command"):
        flow_command("explode")
    with pytest.raises(UsageError, match="invalid choice"):
        flow_command("mode sometimes")
