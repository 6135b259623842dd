"""One test per rule of DESIGN §3 (engine semantics), named after the rule.

Tests that trigger an error code of §3 are marked with ``@produces(code)``; the last test
checks that every code §3 lists is produced by at least one of them.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import (
    RETRY_TWICE,
    Sleeps,
    chain_plan,
    final_context,
    make_engine,
    recorder,
    source_resolver,
    start_request,
)

from nbflow.engine import Failpoints, RunPhase, StartRequest, fact, manifest_id_of
from nbflow.engine.writer import RunWriter
from nbflow.errors import NbflowError
from nbflow.model import (
    Edge,
    ExponentialBackoff,
    FanOutJoin,
    FixedBackoff,
    Manifest,
    Note,
    Plan,
    RetryPolicy,
    RunConfig,
    RunStatus,
    StateSpec,
)
from nbflow.store import Home
from nbflow.store.database import row_checksum

F = TypeVar("F", bound=Callable[..., Any])
PRODUCED: dict[str, str] = {}


def produces(code: str) -> Callable[[F], F]:
    """Register that the decorated test triggers (and asserts) error ``code``."""

    def mark(test: F) -> F:
        PRODUCED.setdefault(code, test.__name__)
        return test

    return mark


def kinds(home: Home, run_id: str) -> list[str]:
    return [e.event.kind for e in home.events.read_range(run_id)]


def events_of(home: Home, run_id: str, kind: str) -> list[Any]:
    return [e.event for e in home.events.read_range(run_id) if e.event.kind == kind]


def fails_then_succeeds(
    log: list[str], name: str, failures: int, exc: type[Exception] = OSError
) -> Callable[[Any], Any]:
    count = {"n": 0}

    def body(ctx: dict[str, Any]) -> dict[str, Any]:
        count["n"] += 1
        log.append(f"{name}#{count['n']}")
        if count["n"] <= failures:
            raise exc(f"{name} failure {count['n']}")
        return {**ctx, name: count["n"]}

    return body


def always_fails(exc: BaseException) -> Callable[[Any], Any]:
    def body(ctx: Any) -> Any:
        raise exc

    return body


# -- Start ----------------------------------------------------------------------------------


@produces("unsupported_execution_mode")
def test_start_validates_execution_mode(home: Home) -> None:
    config = RunConfig(execution_mode=FanOutJoin(max_parallel=2))
    request = start_request(home, chain_plan("a"), run_config=config)
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {"a": recorder([], "a")}).start(request)
    assert caught.value.code == "unsupported_execution_mode"
    assert home.events.runs() == []


@produces("manifest_id_mismatch")
def test_start_checks_manifest_id_is_canonical_hash(home: Home) -> None:
    request = start_request(home, chain_plan("a"))
    other = start_request(home, chain_plan("b"))
    forged = StartRequest[Any](
        request.manifest, other.manifest_id, request.plan, request.run_config, {}
    )
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {"a": recorder([], "a")}).start(forged)
    assert caught.value.code == "manifest_id_mismatch"
    assert home.events.runs() == []


@produces("manifest_not_canonical")
def test_start_refuses_floats_in_manifest(home: Home) -> None:
    plan = chain_plan("a")
    manifest = Manifest(flow_id="flow", plan=plan, parameters={"alpha": 0.5})
    request = StartRequest[Any].for_manifest(manifest, "blake3:" + "0" * 64, {})
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {"a": recorder([], "a")}).start(request)
    assert caught.value.code == "manifest_not_canonical"
    assert "alpha" in str(caught.value)
    assert home.events.runs() == []


@produces("secrets_detected")
def test_start_refuses_secrets_in_manifest(home: Home) -> None:
    token = "ghp_" + "a1B2" * 10
    plan = Plan(
        flow_id="flow",
        states=(StateSpec(id="a", source=f'client = connect(token="{token}")'),),
    )
    manifest = Manifest(flow_id="flow", plan=plan)
    request = StartRequest[Any].for_manifest(manifest, "blake3:" + "0" * 64, {})
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {"a": recorder([], "a")}).start(request)
    assert caught.value.code == "secrets_detected"
    assert token not in str(caught.value)  # the error names the kind, never the secret
    assert home.events.runs() == []


@produces("manifest_op_id_mismatch")
def test_start_checks_manifest_and_plan_agree_on_flow_id(home: Home) -> None:
    request = start_request(home, chain_plan("a", flow_id="one"))
    other_plan = chain_plan("a", flow_id="two")
    mixed = StartRequest[Any](
        request.manifest, request.manifest_id, other_plan, request.run_config, {}
    )
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {"a": recorder([], "a")}).start(mixed)
    assert caught.value.code == "manifest_op_id_mismatch"


@produces("run_config_mismatch")
def test_start_checks_manifest_and_request_agree_on_run_config(home: Home) -> None:
    request = start_request(home, chain_plan("a"))
    other = RunConfig(retry_policy=RETRY_TWICE)
    mixed = StartRequest[Any](request.manifest, request.manifest_id, request.plan, other, {})
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {"a": recorder([], "a")}).start(mixed)
    assert caught.value.code == "run_config_mismatch"


@produces("manifest_not_found")
def test_start_requires_stored_manifest(home: Home) -> None:
    manifest = Manifest(flow_id="flow", plan=chain_plan("a"))
    request = StartRequest[Any].for_manifest(manifest, manifest_id_of(manifest), {})
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {"a": recorder([], "a")}).start(request)
    assert caught.value.code == "manifest_not_found"
    assert home.events.runs() == []


def test_start_snapshots_initial_variables_then_appends_run_started(home: Home) -> None:
    engine = make_engine(home, {"a": recorder([], "a", a=1)})
    request = start_request(home, chain_plan("a"), {"seed": 7})
    result = engine.start(request)
    first = home.events.read_range(result.run_id, 1, 1)[0].event
    assert first.kind == "run_started"
    assert first.manifest_id == request.manifest_id
    assert engine.codec.restore(first.initial_snapshot_id) == {"seed": 7}
    assert kinds(home, result.run_id) == [
        "run_started",
        "state_entered",
        "state_completed",
        "run_completed",
    ]


def test_start_runs_states_in_topological_order(home: Home) -> None:
    log: list[str] = []
    plan = Plan(
        flow_id="flow",
        states=tuple(StateSpec(id=s) for s in ("report", "train", "load", "clean")),
        edges=(
            Edge(upstream="load", downstream="clean"),
            Edge(upstream="clean", downstream="train"),
            Edge(upstream="train", downstream="report"),
        ),
    )
    bodies = {s.id: recorder(log, s.id) for s in plan.states}
    result = make_engine(home, bodies).start(start_request(home, plan))
    assert result.phase is RunPhase.COMPLETED
    assert log == ["load", "clean", "train", "report"]


# -- Plan validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "code", "named"),
    [
        (Plan(flow_id="flow", states=()), "empty_plan", "flow"),
        (
            Plan(flow_id="flow", states=(StateSpec(id="a"), StateSpec(id="a"))),
            "duplicate_state_id",
            "a",
        ),
        (
            Plan(
                flow_id="flow",
                states=(StateSpec(id="a"),),
                edges=(Edge(upstream="ghost", downstream="a"),),
            ),
            "unknown_state_in_edge",
            "ghost",
        ),
    ],
)
def test_plan_validation_refuses_bad_plans_before_anything_runs(
    home: Home, plan: Plan, code: str, named: str
) -> None:
    log: list[str] = []
    engine = make_engine(home, {"a": recorder(log, "a")})
    with pytest.raises(NbflowError) as caught:
        engine.start(start_request(home, plan))
    assert caught.value.code == code
    assert named in str(caught.value)
    assert log == []
    assert home.events.runs() == []


def test_plan_validation_cycle_error_names_the_states_on_it(home: Home) -> None:
    plan = Plan(
        flow_id="flow",
        states=tuple(StateSpec(id=s) for s in ("root", "a", "b", "c", "leaf")),
        edges=(
            Edge(upstream="root", downstream="a"),
            Edge(upstream="a", downstream="b"),
            Edge(upstream="b", downstream="c"),
            Edge(upstream="c", downstream="a"),
            Edge(upstream="c", downstream="leaf"),
        ),
    )
    log: list[str] = []
    engine = make_engine(home, {s.id: recorder(log, s.id) for s in plan.states})
    with pytest.raises(NbflowError) as caught:
        engine.start(start_request(home, plan))
    assert caught.value.code == "circular_dependency"
    assert set(caught.value.details["cycle"]) == {"a", "b", "c"}
    assert "a -> b -> c -> a" in str(caught.value)
    assert log == []
    assert home.events.runs() == []


# -- Attempts -------------------------------------------------------------------------------


def test_attempt_appends_entered_with_base_snapshot_then_completed(home: Home) -> None:
    engine = make_engine(home, {"a": recorder([], "a", a=1), "b": recorder([], "b", b=2)})
    result = engine.start(start_request(home, chain_plan("a", "b")))
    started = events_of(home, result.run_id, "run_started")[0]
    entered = events_of(home, result.run_id, "state_entered")
    completed = events_of(home, result.run_id, "state_completed")
    assert entered[0].base_snapshot_id == started.initial_snapshot_id
    assert entered[1].base_snapshot_id == completed[0].context_snapshot_id
    assert engine.codec.restore(completed[1].context_snapshot_id) == {"a": 1, "b": 2}
    assert result.final_snapshot_id == completed[1].context_snapshot_id


def test_attempt_failure_appends_state_failed_with_error(home: Home) -> None:
    engine = make_engine(home, {"a": always_fails(ValueError("bad row 17"))})
    result = engine.start(start_request(home, chain_plan("a")))
    failed = events_of(home, result.run_id, "state_failed")
    assert len(failed) == 1
    error = failed[0].error
    assert (error.code, error.category.value, error.retryable) == (
        "state_raised",
        "user_code",
        True,
    )
    assert error.message == "ValueError: bad row 17"
    assert "bad row 17" in error.details["traceback"]
    assert result.phase is RunPhase.FAILED
    assert result.failed_state == "a"


def test_retryable_failure_is_retried_from_same_base_after_fixed_backoff(home: Home) -> None:
    log: list[str] = []
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=3, backoff=FixedBackoff(delay_ms=250))
    plan = chain_plan("a", "b", retry=policy)
    engine = make_engine(
        home, {"a": recorder(log, "a", a=1), "b": fails_then_succeeds(log, "b", 2)}, sleep=sleeps
    )
    result = engine.start(start_request(home, plan))
    assert result.phase is RunPhase.COMPLETED
    assert log == ["a", "b#1", "b#2", "b#3"]
    assert sleeps == [0.25, 0.25]
    entered = [e for e in events_of(home, result.run_id, "state_entered") if e.state_id == "b"]
    assert [e.attempt for e in entered] == [0, 1, 2]
    assert len({e.base_snapshot_id for e in entered}) == 1
    assert final_context(engine, result) == {"a": 1, "b": 3}


def test_exponential_backoff_doubles_and_is_capped_at_max(home: Home) -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=6, backoff=ExponentialBackoff(base_ms=100, max_ms=1000))
    engine = make_engine(home, {"a": fails_then_succeeds([], "a", 5)}, sleep=sleeps)
    result = engine.start(start_request(home, chain_plan("a", retry=policy)))
    assert result.phase is RunPhase.COMPLETED
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 1.0]


def test_exponential_backoff_shift_is_capped_at_31_and_saturates() -> None:
    policy = RetryPolicy(max_attempts=2, backoff=ExponentialBackoff(base_ms=3, max_ms=2**62))
    assert policy.delay_ms(31) == 3 * 2**31
    assert policy.delay_ms(40) == 3 * 2**31
    assert policy.delay_ms(10_000) == 3 * 2**31
    tight = RetryPolicy(max_attempts=2, backoff=ExponentialBackoff(base_ms=2**40, max_ms=5000))
    assert tight.delay_ms(31) == 5000


def test_backoff_wait_is_real_time_by_default(tmp_path: Path) -> None:
    import time

    from nbflow import Flow

    with Flow("timed", tmp_path / ".nbflow") as flow:
        flow.declare("a", fails_then_succeeds([], "a", 1), retries=1, backoff="fixed:200ms")
        started = time.monotonic()
        result = flow.run()
        assert time.monotonic() - started >= 0.2
    assert result.phase is RunPhase.COMPLETED


def test_retry_on_narrows_which_exceptions_are_retryable(home: Home) -> None:
    log: list[str] = []
    plan = chain_plan("a", retry=RETRY_TWICE, retry_on=("ConnectionError",))
    engine = make_engine(home, {"a": fails_then_succeeds(log, "a", 1, ConnectionResetError)})
    assert engine.start(start_request(home, plan)).phase is RunPhase.COMPLETED  # subclass
    log.clear()
    engine = make_engine(home, {"a": fails_then_succeeds(log, "a", 1, KeyError)})
    result = engine.start(start_request(home, plan))
    assert result.phase is RunPhase.FAILED
    assert log == ["a#1"]
    assert result.error is not None
    assert result.error.retryable is False


def test_run_ends_failed_when_retries_are_exhausted(home: Home) -> None:
    log: list[str] = []
    engine = make_engine(home, {"a": fails_then_succeeds(log, "a", 5), "b": recorder(log, "b")})
    result = engine.start(start_request(home, chain_plan("a", "b", retry=RETRY_TWICE)))
    assert result.phase is RunPhase.FAILED
    assert log == ["a#1", "a#2", "a#3"]
    ended = events_of(home, result.run_id, "run_completed")[0]
    assert ended.status is RunStatus.FAILED
    assert home.events.run(result.run_id).status == "failed"  # type: ignore[union-attr]


def test_run_config_retry_policy_applies_to_states_without_their_own(home: Home) -> None:
    log: list[str] = []
    config = RunConfig(retry_policy=RETRY_TWICE)
    engine = make_engine(home, {"a": fails_then_succeeds(log, "a", 2)})
    result = engine.start(start_request(home, chain_plan("a"), run_config=config))
    assert result.phase is RunPhase.COMPLETED
    assert log == ["a#1", "a#2", "a#3"]


# -- Resume ---------------------------------------------------------------------------------


@produces("run_not_found")
def test_resume_of_run_without_events_is_run_not_found(home: Home) -> None:
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {}).resume("0123abcd")
    assert caught.value.code == "run_not_found"


def test_resume_of_finished_run_returns_recorded_result_and_appends_nothing(home: Home) -> None:
    engine = make_engine(home, {"a": always_fails(ValueError("x"))})
    first = engine.start(start_request(home, chain_plan("a")))
    head = home.events.head_seq(first.run_id)
    again = engine.resume(first.run_id)
    assert again == first
    assert again.error is not None
    assert again.error.message == "ValueError: x"
    assert home.events.head_seq(first.run_id) == head


def stop_after(failpoints: Failpoints) -> Callable[[Any], Any]:
    """A body that arms the failpoint, so the engine stops right after it returns."""

    def body(ctx: Any) -> Any:
        failpoints.stop_after_body_once = True
        return ctx

    return body


def stopped_after_a(home: Home, log: list[str], b_source: str | None = None) -> str:
    """Start a run of a -> b -> c that stops after a's body (failpoint on b)."""
    failpoints = Failpoints()
    bodies = {
        "a": recorder(log, "a", a=1),
        "b": stop_after(failpoints),
        "c": recorder(log, "c", c=3),
    }
    engine = make_engine(home, bodies, failpoints=failpoints)
    result = engine.start(start_request(home, chain_plan("a", "b", "c")))
    assert result.phase is RunPhase.RUNNING
    return result.run_id


@produces("manifest_corrupt")
def test_resume_checks_manifest_bytes_against_id(home: Home) -> None:
    run_id = stopped_after_a(home, [])
    manifest_id = events_of(home, run_id, "run_started")[0].manifest_id
    conn = sqlite3.connect(home.layout.database)
    blob = conn.execute("SELECT data FROM blobs WHERE id = ?", (manifest_id,)).fetchone()[0]
    tampered = blob.replace(b'"flow"', b'"fl0w"', 1)
    conn.execute("UPDATE blobs SET data = ? WHERE id = ?", (tampered, manifest_id))
    conn.commit()
    conn.close()
    head = home.events.head_seq(run_id)
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {}).resume(run_id)
    assert caught.value.code == "manifest_corrupt"
    assert manifest_id in str(caught.value)
    assert home.events.head_seq(run_id) == head


def test_resume_rebuilds_plan_from_manifest_without_redeclaring(home: Home) -> None:
    out = home.root.parent / "out.txt"
    sources = {
        name: f"def body(ctx):\n    open({str(out)!r}, 'a').write({name!r} + '\\n')\n"
        f"    return {{**ctx, {name!r}: True}}\n"
        for name in ("a", "b", "c")
    }
    plan = Plan(
        flow_id="flow",
        states=tuple(StateSpec(id=n, source=src) for n, src in sources.items()),
        edges=(Edge(upstream="a", downstream="b"), Edge(upstream="b", downstream="c")),
    )
    failpoints = Failpoints(stop_after_body_once=True)
    first = make_engine(home, source_resolver, failpoints=failpoints)
    run_id = first.start(start_request(home, plan)).run_id
    # A new engine that knows nothing of the plan: only how to turn source into code.
    result = make_engine(home, source_resolver).resume(run_id)
    assert result.phase is RunPhase.COMPLETED
    assert out.read_text().split() == ["a", "a", "b", "c"]
    assert final_context(first, result) == {"a": True, "b": True, "c": True}


def test_resume_retries_orphaned_attempt_as_next_attempt_from_its_base(home: Home) -> None:
    log: list[str] = []
    run_id = stopped_after_a(home, log)
    completed_a = events_of(home, run_id, "state_completed")[0].context_snapshot_id
    engine = make_engine(
        home, {"a": recorder(log, "a"), "b": recorder(log, "b", b=2), "c": recorder(log, "c", c=3)}
    )
    result = engine.resume(run_id)
    assert result.phase is RunPhase.COMPLETED
    assert log == ["a", "b", "c"]
    b_entries = [e for e in events_of(home, run_id, "state_entered") if e.state_id == "b"]
    assert [(e.attempt, e.base_snapshot_id) for e in b_entries] == [
        (0, completed_a),
        (1, completed_a),
    ]
    assert final_context(engine, result) == {"a": 1, "b": 2, "c": 3}


def crash_during_backoff(home: Home, policy: RetryPolicy, exc: Exception) -> str:
    """A run whose state b failed once and whose process died before the retry."""

    class Died(BaseException):
        pass

    def sleep(_: float) -> None:
        raise Died

    plan = chain_plan("a", "b", retry=policy)
    engine = make_engine(home, {"a": recorder([], "a", a=1), "b": always_fails(exc)}, sleep=sleep)
    request = start_request(home, plan)
    with pytest.raises(Died):
        engine.start(request)
    return home.events.runs()[0].run_id


def test_resume_retries_failed_state_when_retryable_with_attempts_left(home: Home) -> None:
    policy = RetryPolicy(max_attempts=3, backoff=FixedBackoff(delay_ms=10))
    run_id = crash_during_backoff(home, policy, OSError("flaky"))
    failed_base = events_of(home, run_id, "state_entered")[-1].base_snapshot_id
    log: list[str] = []
    result = make_engine(home, {"a": recorder(log, "a"), "b": recorder(log, "b", b=2)}).resume(
        run_id
    )
    assert result.phase is RunPhase.COMPLETED
    assert log == ["b"]
    last_entry = events_of(home, run_id, "state_entered")[-1]
    assert (last_entry.state_id, last_entry.attempt, last_entry.base_snapshot_id) == (
        "b",
        1,
        failed_base,
    )


def died_before_run_completed(home: Home, plan: Plan, bodies: dict[str, Any]) -> str:
    """Start a run whose process dies just before it would append RunCompleted."""

    class Died(BaseException):
        pass

    real_append = home.events.append

    def append_then_die(run_id: str, expected: int, events: Any, within: Any = None) -> Any:
        if events[-1].kind == "run_completed":
            real_append(run_id, expected, events[:-1])
            raise Died
        return real_append(run_id, expected, events, within=within)

    home.events.append = append_then_die  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(Died):
            make_engine(home, bodies).start(start_request(home, plan))
    finally:
        home.events.append = real_append  # type: ignore[method-assign]
    return home.events.runs()[0].run_id


def test_resume_ends_run_failed_when_failed_state_has_no_attempts_left(home: Home) -> None:
    plan = chain_plan("a", "b", retry=RetryPolicy(max_attempts=2))
    run_id = died_before_run_completed(
        home, plan, {"a": recorder([], "a"), "b": always_fails(OSError("flaky"))}
    )
    assert kinds(home, run_id)[-1] == "state_failed"
    log: list[str] = []
    result = make_engine(home, {"a": recorder(log, "a"), "b": recorder(log, "b")}).resume(run_id)
    assert result.phase is RunPhase.FAILED
    assert result.failed_state == "b"
    assert log == []
    assert kinds(home, run_id)[-1] == "run_completed"
    # and resuming again does not loop: same answer, nothing appended
    head = home.events.head_seq(run_id)
    assert make_engine(home, {}).resume(run_id).phase is RunPhase.FAILED
    assert home.events.head_seq(run_id) == head


def test_resume_ends_run_failed_when_failure_was_not_retryable(home: Home) -> None:
    plan = chain_plan("a", "b", retry=RETRY_TWICE, retry_on=("TimeoutError",))
    run_id = died_before_run_completed(
        home, plan, {"a": recorder([], "a"), "b": always_fails(KeyError("k"))}
    )
    assert kinds(home, run_id)[-1] == "state_failed"
    log: list[str] = []
    result = make_engine(home, {"a": recorder(log, "a"), "b": recorder(log, "b")}).resume(run_id)
    assert result.phase is RunPhase.FAILED
    assert result.error is not None
    assert result.error.retryable is False
    assert log == []


def test_resume_starts_never_failed_state_from_last_checkpoint(home: Home) -> None:
    log: list[str] = []
    engine = make_engine(home, {"a": recorder(log, "a", a=1), "b": recorder(log, "b", b=2)})
    request = start_request(home, chain_plan("a", "b"))
    real_append = home.events.append

    class Died(BaseException):
        pass

    def die_before_b(run_id: str, expected: int, events: Any, within: Any = None) -> Any:
        if any(getattr(e, "state_id", None) == "b" for e in events):
            # commit what came before b (a's completion), then die
            real_append(run_id, expected, [e for e in events if e.kind == "state_completed"])
            raise Died
        return real_append(run_id, expected, events, within=within)

    home.events.append = die_before_b  # type: ignore[method-assign,assignment]
    with pytest.raises(Died):
        engine.start(request)
    home.events.append = real_append  # type: ignore[method-assign]
    run_id = home.events.runs()[0].run_id
    checkpoint = events_of(home, run_id, "state_completed")[-1].context_snapshot_id
    result = engine.resume(run_id)
    assert result.phase is RunPhase.COMPLETED
    assert log == ["a", "b"]
    b_entry = events_of(home, run_id, "state_entered")[-1]
    assert (b_entry.state_id, b_entry.attempt, b_entry.base_snapshot_id) == ("b", 0, checkpoint)


def test_resume_with_every_state_completed_appends_run_completed(home: Home) -> None:
    run_id = died_before_run_completed(home, chain_plan("a"), {"a": recorder([], "a", a=1)})
    assert kinds(home, run_id)[-1] == "state_completed"
    engine = make_engine(home, {})
    result = engine.resume(run_id)
    assert result.phase is RunPhase.COMPLETED
    assert kinds(home, run_id)[-1] == "run_completed"
    assert final_context(engine, result) == {"a": 1}


def tamper(home: Home, run_id: str, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite an event as a faulty writer would: contradictory, with a valid checksum."""
    conn = sqlite3.connect(home.layout.database)
    at_us, text = conn.execute(
        "SELECT at_us, body FROM events WHERE run_id=? AND seq=?", (run_id, seq)
    ).fetchone()
    body = json.loads(text)
    change(body)
    kind, text = body["event"]["kind"], json.dumps(body)
    conn.execute(
        "UPDATE events SET body=?, kind=?, crc=? WHERE run_id=? AND seq=?",
        (text, kind, row_checksum(run_id, seq, at_us, kind, text), run_id, seq),
    )
    conn.commit()
    conn.close()


@produces("invalid_attempt_envelopes")
def test_resume_refuses_terminal_event_without_state_entered(home: Home) -> None:
    run_id = stopped_after_a(home, [])
    # seq 2 is a's StateEntered: turn it into a note, leaving a's completion unexplained.
    tamper(home, run_id, 2, lambda body: body.update(event={"kind": "note", "text": "x"}))
    head = home.events.head_seq(run_id)
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {}).resume(run_id)
    assert caught.value.code == "invalid_attempt_envelopes"
    assert "without StateEntered" in str(caught.value)
    assert home.events.head_seq(run_id) == head


@produces("run_id_mismatch")
def test_resume_refuses_a_stream_of_another_run(home: Home) -> None:
    run_id = stopped_after_a(home, [])
    tamper(home, run_id, 3, lambda body: body.update(run_id="f" * 32))
    head = home.events.head_seq(run_id)
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {}).resume(run_id)
    assert caught.value.code == "run_id_mismatch"
    assert home.events.head_seq(run_id) == head


def test_failpoint_stops_after_body_before_checkpoint_and_resume_retries(home: Home) -> None:
    log: list[str] = []
    failpoints = Failpoints()

    def b(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append("b")
        if len(log) == 2:
            failpoints.stop_after_body_once = True
        return {**ctx, "b": 2}

    engine = make_engine(home, {"a": recorder(log, "a"), "b": b}, failpoints=failpoints)
    first = engine.start(start_request(home, chain_plan("a", "b")))
    assert first.phase is RunPhase.RUNNING
    assert kinds(home, first.run_id)[-1] == "state_entered"  # b's body ran, no checkpoint
    result = engine.resume(first.run_id)
    assert result.phase is RunPhase.COMPLETED
    assert log == ["a", "b", "b"]


@produces("unsupported_execution_mode")
def test_resume_refuses_fan_out_join_manifest(home: Home) -> None:
    # A manifest written by a newer writer that asks for fan-out: refused, not guessed.
    run_id = stopped_after_a(home, [])
    manifest = Manifest(
        flow_id="flow",
        plan=chain_plan("a", "b", "c"),
        run_config=RunConfig(execution_mode=FanOutJoin(max_parallel=4)),
    )
    from nbflow.engine import store_manifest

    new_id = store_manifest(home.artifacts, manifest)
    tamper(home, run_id, 1, lambda body: body["event"].update(manifest_id=new_id))
    with pytest.raises(NbflowError) as caught:
        make_engine(home, {}).resume(run_id)
    assert caught.value.code == "unsupported_execution_mode"


# -- Interrupts, conflicts, facts, logging -------------------------------------------------


def test_interrupt_leaves_attempt_open_and_resume_retries_it(home: Home) -> None:
    log: list[str] = []
    engine = make_engine(
        home, {"a": recorder(log, "a", a=1), "b": always_fails(KeyboardInterrupt())}
    )
    with pytest.raises(KeyboardInterrupt):
        engine.start(start_request(home, chain_plan("a", "b")))
    run_id = home.events.runs()[0].run_id
    assert kinds(home, run_id)[-2:] == ["state_entered", "attempt_interrupted"]
    assert home.events.run(run_id).status == "running"  # type: ignore[union-attr]
    result = make_engine(home, {"a": recorder(log, "a"), "b": recorder(log, "b")}).resume(run_id)
    assert result.phase is RunPhase.COMPLETED
    assert log == ["a", "b"]


def test_second_writer_on_a_run_gets_a_conflict_error(home: Home, tmp_path: Path) -> None:
    run_id = stopped_after_a(home, [])
    with Home(tmp_path / ".nbflow") as other:
        log: list[str] = []
        bodies = {"a": recorder(log, "a"), "b": recorder(log, "b"), "c": recorder(log, "c")}
        second = make_engine(other, bodies)
        first = make_engine(home, bodies)
        head = home.events.head_seq(run_id)
        # Both kernels decided to resume from the same history; the second to append loses.
        first.resume(run_id)
        late = RunWriter(other.events, run_id, head)
        with pytest.raises(NbflowError) as caught:
            late.append(Note(text="late"))
        assert caught.value.code == "sequence_conflict"
        assert second.resume(run_id).phase is RunPhase.COMPLETED  # reads the winner's result


def test_fact_is_called_once_per_run_and_key_across_retries_and_resume(home: Home) -> None:
    calls: list[int] = []
    attempts = {"n": 0}

    def b(ctx: dict[str, Any]) -> dict[str, Any]:
        attempts["n"] += 1

        def call_api() -> int:
            calls.append(1)
            return len(calls) * 42

        value = fact("answer", call_api)
        if attempts["n"] == 1:
            raise OSError("flaky after the call")
        if attempts["n"] == 2:
            raise KeyboardInterrupt
        return {**ctx, "answer": value}

    engine = make_engine(home, {"a": recorder([], "a"), "b": b})
    with pytest.raises(KeyboardInterrupt):
        engine.start(start_request(home, chain_plan("a", "b", retry=RETRY_TWICE)))
    run_id = home.events.runs()[0].run_id
    result = engine.resume(run_id)
    assert calls == [1]
    assert final_context(engine, result)["answer"] == 42


def test_fact_outside_a_run_just_calls() -> None:
    assert fact("k", lambda: 5) == 5


def test_log_records_carry_run_state_and_attempt(
    home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nbflow.engine")
    engine = make_engine(home, {"a": fails_then_succeeds([], "a", 1)})
    result = engine.start(start_request(home, chain_plan("a", retry=RETRY_TWICE)))
    records = [r for r in caplog.records if r.name == "nbflow.engine"]
    assert records
    assert all(getattr(r, "run_id", None) == result.run_id for r in records)
    retry = [r for r in records if "retrying" in r.getMessage()]
    assert [(r.state_id, r.attempt) for r in retry] == [("a", 0)]  # type: ignore[attr-defined]


# -- Coverage of DESIGN §3's error codes ----------------------------------------------------

DESIGN = Path(__file__).resolve().parents[2] / "shared" / "DESIGN.md"


def design_codes() -> set[str]:
    """The error codes §3 names: a backticked name right after "(", "with " or "→ "
    (option names such as the run's `skip_tags` are not codes)."""
    text = DESIGN.read_text()
    section = text.split("## 3. Engine semantics", 1)[1].split("\n## ", 1)[0]
    section = re.sub(r"\s+", " ", section)
    return set(re.findall(r"(?:\(|with |→ |, )`([a-z]+(?:_[a-z]+)+)`", section))


NOT_BUILT_YET = {"fact_missing": "issue 11 (replay)", "branch_conflict": "issue 12 (fan-out)"}
"""Codes of §3 whose capabilities are not built yet; an entry must go once a test
produces its code."""


@pytest.mark.skipif(not DESIGN.exists(), reason="DESIGN.md is not beside the checkout")
def test_every_error_code_of_design_section_3_is_produced_by_a_test() -> None:
    codes = design_codes()
    assert len(codes) >= 13, codes  # the section lists thirteen codes today
    assert not NOT_BUILT_YET.keys() & PRODUCED.keys(), "built: remove it from NOT_BUILT_YET"
    missing = sorted(codes - PRODUCED.keys() - NOT_BUILT_YET.keys())
    assert not missing, f"no test produces {missing}"


# Rule tests kept beside what they exercise register their codes when imported.
import test_leases  # noqa: E402, F401
