"""Tests of the persisted models, option parsing and manifest ids (DESIGN §1, §2, §3, §5)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from nbflow.engine import manifest_id_of, store_manifest
from nbflow.engine.contract import manifest_bytes
from nbflow.errors import ManifestError, NbflowError
from nbflow.hashing import canonical_json, content_id, is_content_id
from nbflow.model import (
    FORMAT_VERSION,
    AttemptInterrupted,
    Edge,
    ErrorCategory,
    ErrorInfo,
    EventEnvelope,
    ExponentialBackoff,
    FactRecorded,
    FanOutJoin,
    FixedBackoff,
    Manifest,
    Note,
    Plan,
    RetryPolicy,
    RetryScheduled,
    RunCompleted,
    RunConfig,
    RunStarted,
    RunStatus,
    Sequential,
    StateCompleted,
    StateEntered,
    StateFailed,
    StateSpec,
)
from nbflow.model.parameters import decode_parameters, encode_parameters
from nbflow.options import OptionError, parse_backoff, parse_duration_ms
from nbflow.store import Home

SNAP = "blake3:" + "1" * 64
SNAP2 = "blake3:" + "2" * 64
STATE_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
"""The state name rule as DESIGN §1 pins it (not imported, so the test checks the code)."""

ERROR = ErrorInfo(
    code="user_code",
    category=ErrorCategory.USER_CODE,
    retryable=True,
    message="ValueError: bad row 17",
    details={"exception": "ValueError", "traceback": ["line 1", "line 2"], "row": 17},
)
EVENTS: list[BaseModel] = [
    RunStarted(op_id="sales.ipynb", manifest_id=SNAP, initial_snapshot_id=SNAP2),
    StateEntered(state_id="load", attempt=0, base_snapshot_id=SNAP),
    StateCompleted(state_id="load", context_snapshot_id=SNAP2),
    StateFailed(state_id="train", attempt=2, error=ERROR),
    RunCompleted(status=RunStatus.COMPLETED, final_snapshot_id=SNAP),
    RunCompleted(status=RunStatus.CANCELLED),
    FactRecorded(key="seed", value={"n": 42, "tags": ["a", "é"], "ok": True, "none": None}),
    AttemptInterrupted(state_id="train", attempt=1),
    RetryScheduled(state_id="train", next_attempt=1, delay_ms=2000),
    Note(text="checked the plot ✓"),
]


def make_plan(**changes: Any) -> Plan:
    """A three-state plan; ``changes`` replace the options of state ``train``."""
    train = {
        "id": "train",
        "source": "model = fit(df)\n",
        "retry": RetryPolicy(
            max_attempts=3, backoff=ExponentialBackoff(base_ms=1000, max_ms=60_000)
        ),
        "retry_on": ("OSError", "TimeoutError"),
        "timeout_ms": 1_800_000,
        **changes,
    }
    return Plan(
        flow_id="sales.ipynb",
        states=(
            StateSpec(id="load", source="df = load()\n"),
            StateSpec(**train),
            StateSpec(id="report.v2", source="show(model)\n", always_run=True),
        ),
        edges=(
            Edge(upstream="load", downstream="train"),
            Edge(upstream="train", downstream="report.v2"),
        ),
    )


def make_manifest(**changes: Any) -> Manifest:
    """A manifest built from scratch; ``changes`` replace its fields."""
    fields: dict[str, Any] = {
        "flow_id": "sales.ipynb",
        "plan": make_plan(),
        "parameters": {"region": "EMEA", "limit": 100, "flags": {"dry": False, "tags": ["x"]}},
        "run_config": RunConfig(retry_policy=RetryPolicy(max_attempts=2)),
        **changes,
    }
    return Manifest(**fields)


MODELS: list[BaseModel] = [
    Sequential(),
    FanOutJoin(max_parallel=4),
    FixedBackoff(delay_ms=2000),
    ExponentialBackoff(base_ms=1000, max_ms=60_000),
    RetryPolicy(),
    RetryPolicy(max_attempts=5, backoff=ExponentialBackoff(base_ms=250, max_ms=8000)),
    RunConfig(),
    RunConfig(execution_mode=FanOutJoin(max_parallel=2), retry_policy=RetryPolicy(max_attempts=3)),
    ErrorInfo(code="timeout", category=ErrorCategory.TIMEOUT, retryable=True, message="slow"),
    ERROR,
    StateSpec(id="a"),
    make_plan().states[1],
    Edge(upstream="a", downstream="b"),
    make_plan(),
    make_manifest(),
    Manifest(flow_id="f", plan=Plan(flow_id="f", states=(StateSpec(id="only"),))),
    *EVENTS,
    *(
        EventEnvelope(run_id="run-1", seq=i + 1, at_us=1_700_000_000_000_000 + i, event=e)
        for i, e in enumerate(EVENTS)
    ),
]


def model_id(model: BaseModel) -> str:
    return type(model).__name__


# -- persisted models ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=model_id)
def test_models_round_trip_through_json_unchanged(model: BaseModel) -> None:
    text = model.model_dump_json()
    again = type(model).model_validate_json(text)
    assert again == model
    assert type(again) is type(model)
    assert again.model_dump_json() == text


@pytest.mark.parametrize("event", EVENTS, ids=model_id)
def test_events_keep_their_kind_inside_the_envelope(event: BaseModel) -> None:
    envelope = EventEnvelope(run_id="r", seq=7, at_us=123, event=event)
    document = json.loads(envelope.model_dump_json())
    assert document["event"]["kind"] == event.kind  # type: ignore[attr-defined]
    assert document["format_version"] == FORMAT_VERSION
    restored = EventEnvelope.model_validate_json(json.dumps(document))
    assert type(restored.event) is type(event)
    assert restored == envelope


def test_envelope_picks_the_event_class_from_kind() -> None:
    text = json.dumps(
        {
            "format_version": 1,
            "run_id": "r",
            "seq": 1,
            "at_us": 5,
            "event": {
                "kind": "state_entered",
                "state_id": "a",
                "attempt": 0,
                "base_snapshot_id": SNAP,
            },
        }
    )
    envelope = EventEnvelope.model_validate_json(text)
    assert envelope.event == StateEntered(state_id="a", attempt=0, base_snapshot_id=SNAP)


@pytest.mark.parametrize(
    "event",
    [
        {"kind": "state_exploded", "state_id": "a"},
        {"state_id": "a", "attempt": 0, "base_snapshot_id": SNAP},
        {"kind": "state_entered", "state_id": "a", "attempt": -1, "base_snapshot_id": SNAP},
        {"kind": "run_completed", "status": "paused"},
    ],
)
def test_envelope_refuses_unknown_or_malformed_events(event: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EventEnvelope.model_validate({"run_id": "r", "seq": 1, "at_us": 0, "event": event})


def test_envelope_sequence_numbers_start_at_one() -> None:
    with pytest.raises(ValidationError):
        EventEnvelope(run_id="r", seq=0, at_us=0, event=Note(text="x"))


def test_format_version_is_carried_by_manifest_and_envelope() -> None:
    assert FORMAT_VERSION == 1
    manifest = make_manifest()
    envelope = EventEnvelope(run_id="r", seq=1, at_us=0, event=Note(text="x"))
    assert manifest.format_version == FORMAT_VERSION
    assert envelope.format_version == FORMAT_VERSION
    assert json.loads(manifest.model_dump_json())["format_version"] == FORMAT_VERSION
    assert json.loads(envelope.model_dump_json())["format_version"] == FORMAT_VERSION
    assert json.loads(manifest_bytes(manifest))["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("model", MODELS, ids=model_id)
def test_unknown_fields_are_refused(model: BaseModel) -> None:
    document = json.loads(model.model_dump_json())
    document["colour"] = "blue"
    with pytest.raises(ValidationError) as caught:
        type(model).model_validate_json(json.dumps(document))
    assert [e["type"] for e in caught.value.errors()] == ["extra_forbidden"]
    assert "colour" in str(caught.value)


def test_unknown_fields_are_refused_in_nested_models() -> None:
    document = json.loads(make_manifest().model_dump_json())
    document["plan"]["states"][1]["retry"]["backoff"]["jitter"] = True
    with pytest.raises(ValidationError) as caught:
        Manifest.model_validate_json(json.dumps(document))
    assert "jitter" in str(caught.value)
    envelope = {
        "run_id": "r",
        "seq": 1,
        "at_us": 0,
        "event": {"kind": "note", "text": "x", "by": 1},
    }
    with pytest.raises(ValidationError):
        EventEnvelope.model_validate(envelope)


@pytest.mark.parametrize("model", MODELS, ids=model_id)
def test_models_are_frozen(model: BaseModel) -> None:
    name = next(iter(type(model).model_fields))
    before = model.model_dump_json()
    with pytest.raises(ValidationError) as caught:
        setattr(model, name, getattr(model, name))
    assert caught.value.errors()[0]["type"] == "frozen_instance"
    assert model.model_dump_json() == before


# -- retry policy -------------------------------------------------------------------------------


def test_default_retry_policy_is_one_attempt_without_delay() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 1
    assert policy.backoff == FixedBackoff(delay_ms=0)
    assert policy.delay_ms(0) == 0


@pytest.mark.parametrize("attempt", [0, 1, 2, 10, 31, 32, 1000])
def test_fixed_backoff_waits_the_same_every_time(attempt: int) -> None:
    policy = RetryPolicy(max_attempts=3, backoff=FixedBackoff(delay_ms=2000))
    assert policy.delay_ms(attempt) == 2000


@pytest.mark.parametrize(
    ("attempt", "delay"),
    [(0, 1000), (1, 2000), (2, 4000), (3, 8000), (5, 32_000), (6, 60_000), (40, 60_000)],
)
def test_exponential_backoff_doubles_up_to_the_maximum(attempt: int, delay: int) -> None:
    policy = RetryPolicy(backoff=ExponentialBackoff(base_ms=1000, max_ms=60_000))
    assert policy.delay_ms(attempt) == delay


@pytest.mark.parametrize(
    ("attempt", "delay"), [(30, 2**30), (31, 2**31), (32, 2**31), (63, 2**31), (10_000, 2**31)]
)
def test_exponential_backoff_shift_is_capped_at_31(attempt: int, delay: int) -> None:
    policy = RetryPolicy(backoff=ExponentialBackoff(base_ms=1, max_ms=2**62))
    assert policy.delay_ms(attempt) == delay


@settings(max_examples=200, deadline=None)
@given(
    base=st.integers(0, 10**7),
    top=st.integers(0, 10**9),
    attempt=st.integers(0, 200),
)
def test_exponential_backoff_is_bounded_and_never_shrinks(
    base: int, top: int, attempt: int
) -> None:
    policy = RetryPolicy(backoff=ExponentialBackoff(base_ms=base, max_ms=top))
    delay = policy.delay_ms(attempt)
    assert 0 <= delay <= top
    assert delay <= policy.delay_ms(attempt + 1)
    assert policy.delay_ms(0) == min(base, top)
    assert delay == min(base * 2 ** min(attempt, 31), top)


@pytest.mark.parametrize("attempts", [0, -1])
def test_max_attempts_must_be_at_least_one(attempts: int) -> None:
    with pytest.raises(ValidationError) as caught:
        RetryPolicy(max_attempts=attempts)
    assert "max_attempts" in str(caught.value)


@pytest.mark.parametrize(
    "backoff",
    [{"kind": "fixed", "delay_ms": -1}, {"kind": "exponential", "base_ms": -1, "max_ms": 5}],
)
def test_negative_delays_are_refused(backoff: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy.model_validate({"backoff": backoff})


def test_backoff_kind_selects_the_class() -> None:
    policy = RetryPolicy.model_validate_json(
        '{"max_attempts":3,"backoff":{"kind":"exponential","base_ms":1,"max_ms":5}}'
    )
    assert policy.backoff == ExponentialBackoff(base_ms=1, max_ms=5)


# -- state names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "_", "load", "load_data", "step-2", "v1.2", "A.b-c_d", "_private", "X9"]
)
def test_valid_state_names_are_accepted(name: str) -> None:
    assert StateSpec(id=name).id == name


def refusal_message(name: str) -> str:
    with pytest.raises(ValidationError) as caught:
        StateSpec(id=name)
    errors = caught.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == ("id",)
    message: str = errors[0]["msg"]
    return message


@pytest.mark.parametrize(
    "name",
    ["", "2fast", "has space", "données", "é", "state\n", "a/b", "-x", ".x", "a:b", "naïve", " a"],
)
def test_invalid_state_names_are_refused_naming_the_name(name: str) -> None:
    message = refusal_message(name)
    assert repr(name) in message
    assert "letter" in message


@settings(max_examples=200, deadline=None)
@given(name=st.from_regex(STATE_NAME, fullmatch=True))
def test_any_name_matching_the_rule_is_accepted(name: str) -> None:
    assert StateSpec(id=name).id == name


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=12).filter(lambda s: re.fullmatch(STATE_NAME, s) is None))
def test_any_other_name_is_refused(name: str) -> None:
    assert repr(name) in refusal_message(name)


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"), [("250ms", 250), ("2s", 2000), ("5m", 300_000), ("1h", 3_600_000), ("0s", 0)]
)
def test_durations_are_parsed_to_milliseconds(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["2", "2 s", "-1s", "1.5s", "1d", "", "s", "2S", "1h30m", "ms"])
def test_bad_durations_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(OptionError) as caught:
        parse_duration_ms(text, option="--timeout")
    error = caught.value
    assert isinstance(error, NbflowError)
    assert error.code == "bad_duration"
    assert error.name == "--timeout"
    assert error.hint
    assert repr(text) in str(error)


def test_too_long_durations_are_refused_with_a_hint() -> None:
    with pytest.raises(OptionError) as caught:
        parse_duration_ms("99999999999999h")
    assert caught.value.code == "bad_duration"
    assert caught.value.hint


@pytest.mark.parametrize(
    ("text", "backoff"),
    [
        ("fixed:2s", FixedBackoff(delay_ms=2000)),
        ("fixed:250ms", FixedBackoff(delay_ms=250)),
        ("exp:1s..60s", ExponentialBackoff(base_ms=1000, max_ms=60_000)),
        ("exp:5s..5s", ExponentialBackoff(base_ms=5000, max_ms=5000)),
        ("exponential:100ms..1m", ExponentialBackoff(base_ms=100, max_ms=60_000)),
    ],
)
def test_backoffs_are_parsed(text: str, backoff: Any) -> None:
    assert parse_backoff(text) == backoff


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("exp:60s..1s", "bad_backoff"),
        ("exp:1s", "bad_backoff"),
        ("linear:1s", "bad_backoff"),
        ("fixed", "bad_backoff"),
        ("2s", "bad_backoff"),
        ("", "bad_backoff"),
        ("fixed:", "bad_duration"),
        ("fixed:2", "bad_duration"),
        ("exp:1s..", "bad_duration"),
        ("exp:..60s", "bad_duration"),
    ],
)
def test_bad_backoffs_are_refused_with_a_hint(text: str, code: str) -> None:
    with pytest.raises(OptionError) as caught:
        parse_backoff(text)
    assert caught.value.code == code
    assert caught.value.name == "--backoff"
    assert caught.value.hint


# -- manifest ids -------------------------------------------------------------------------------


def test_manifest_id_is_stable() -> None:
    first, second = make_manifest(), make_manifest()
    assert first is not second
    assert manifest_id_of(first) == manifest_id_of(second)
    assert is_content_id(manifest_id_of(first))
    assert manifest_id_of(first) == content_id(manifest_bytes(first))
    assert manifest_bytes(first) == manifest_bytes(second)


def test_manifest_id_ignores_parameter_order() -> None:
    forward = make_manifest(parameters={"a": 1, "b": {"x": "1", "y": "2"}})
    backward = make_manifest(parameters={"b": {"y": "2", "x": "1"}, "a": 1})
    assert manifest_id_of(forward) == manifest_id_of(backward)


def test_manifest_survives_a_round_trip_through_its_canonical_bytes() -> None:
    manifest = make_manifest()
    again = Manifest.model_validate_json(manifest_bytes(manifest))
    assert again == manifest
    assert manifest_id_of(again) == manifest_id_of(manifest)


VARIANTS: dict[str, Manifest] = {
    "load source": make_manifest(
        plan=make_plan().model_copy(
            update={
                "states": (
                    StateSpec(id="load", source="df = load() \n"),
                    *make_plan().states[1:],
                )
            }
        )
    ),
    "train source": make_manifest(plan=make_plan(source="model = fit(df, seed=1)\n")),
    "parameter value": make_manifest(
        parameters={"region": "APAC", "limit": 100, "flags": {"dry": False, "tags": ["x"]}}
    ),
    "parameter type": make_manifest(
        parameters={"region": "EMEA", "limit": "100", "flags": {"dry": False, "tags": ["x"]}}
    ),
    "nested parameter": make_manifest(
        parameters={"region": "EMEA", "limit": 100, "flags": {"dry": True, "tags": ["x"]}}
    ),
    "extra parameter": make_manifest(
        parameters={"region": "EMEA", "limit": 100, "flags": {"dry": False, "tags": ["x"]}, "n": 1}
    ),
    "state max_attempts": make_manifest(
        plan=make_plan(
            retry=RetryPolicy(
                max_attempts=4, backoff=ExponentialBackoff(base_ms=1000, max_ms=60_000)
            )
        )
    ),
    "state backoff max": make_manifest(
        plan=make_plan(
            retry=RetryPolicy(
                max_attempts=3, backoff=ExponentialBackoff(base_ms=1000, max_ms=30_000)
            )
        )
    ),
    "state backoff kind": make_manifest(
        plan=make_plan(retry=RetryPolicy(max_attempts=3, backoff=FixedBackoff(delay_ms=1000)))
    ),
    "state without policy": make_manifest(plan=make_plan(retry=None)),
    "retry_on": make_manifest(plan=make_plan(retry_on=("OSError",))),
    "timeout": make_manifest(plan=make_plan(timeout_ms=60_000)),
    "always_run": make_manifest(plan=make_plan(always_run=True)),
    "run retry policy": make_manifest(run_config=RunConfig(retry_policy=RetryPolicy())),
    "run backoff": make_manifest(
        run_config=RunConfig(
            retry_policy=RetryPolicy(max_attempts=2, backoff=FixedBackoff(delay_ms=1))
        )
    ),
    "execution mode": make_manifest(
        run_config=RunConfig(
            execution_mode=FanOutJoin(max_parallel=2), retry_policy=RetryPolicy(max_attempts=2)
        )
    ),
    "edges": make_manifest(plan=make_plan().model_copy(update={"edges": make_plan().edges[:1]})),
    "flow id": make_manifest(flow_id="other.ipynb"),
}


@pytest.mark.parametrize("change", list(VARIANTS))
def test_manifest_id_changes_with_any_part(change: str) -> None:
    assert manifest_id_of(VARIANTS[change]) != manifest_id_of(make_manifest())


def test_manifest_variants_all_have_distinct_ids() -> None:
    ids = {manifest_id_of(m) for m in VARIANTS.values()} | {manifest_id_of(make_manifest())}
    assert len(ids) == len(VARIANTS) + 1


@pytest.mark.parametrize(
    "manifest",
    [make_manifest(), make_manifest(plan=make_plan(source="x = 1  # padding\n" * 2000))],
    ids=["small", "larger-than-inline"],
)
def test_store_manifest_writes_bytes_whose_id_is_the_manifest_id(
    tmp_path: Path, manifest: Manifest
) -> None:
    with Home(tmp_path / ".nbflow") as home:
        stored_id = store_manifest(home.artifacts, manifest)
        assert stored_id == manifest_id_of(manifest)
        assert store_manifest(home.artifacts, manifest) == stored_id
    with Home(tmp_path / ".nbflow") as reopened:
        data = reopened.artifacts.raw(stored_id)
        assert data is not None
        assert content_id(data) == stored_id
        assert data == manifest_bytes(manifest)
        assert Manifest.model_validate_json(data) == manifest


def test_manifest_with_a_float_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    manifest = make_manifest(parameters={"alpha": 0.5})
    with Home(tmp_path / ".nbflow") as home:
        with pytest.raises(ManifestError) as caught:
            store_manifest(home.artifacts, manifest)
        assert caught.value.code == "manifest_not_canonical"
        assert caught.value.name == "$.parameters.alpha"
        assert caught.value.hint
        assert list(home.artifacts.ids()) == []


def test_manifest_with_a_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    manifest = make_manifest(plan=make_plan(source='password = "hunter22-horse"\nfit()\n'))
    with Home(tmp_path / ".nbflow") as home:
        with pytest.raises(ManifestError) as caught:
            store_manifest(home.artifacts, manifest)
        assert caught.value.code == "secrets_detected"
        assert caught.value.name == "$.plan.states[1].source"
        assert "hunter22-horse" not in str(caught.value)
        assert "hunter22-horse" not in json.dumps(caught.value.details)
        assert list(home.artifacts.ids()) == []


# -- Parameters: floats kept exactly as tagged text ------------------------------------------

_PARAMETER_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), _PARAMETER_VALUES, max_size=5))
def test_parameters_round_trip_exactly_through_canonical_json(values: dict[str, Any]) -> None:
    encoded = encode_parameters(values)
    data = canonical_json(encoded)  # refuses any float: none is left
    decoded = decode_parameters(json.loads(data))
    assert same(decoded, values)


def same(a: Any, b: Any) -> bool:
    """Equal, with nan equal to nan and 0.0 not -0.0, and types kept."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def test_a_user_dict_shaped_like_a_tag_is_not_mistaken_for_one() -> None:
    values = {"p": {"$float": "0.5"}, "q": {"$dict": 1, "x": 2}}
    assert decode_parameters(json.loads(canonical_json(encode_parameters(values)))) == values


def test_flow_parameters_may_be_floats(tmp_path: Path) -> None:
    from nbflow import Flow

    with Flow("f", home=tmp_path / ".nbflow") as flow:
        flow.declare("a", lambda ctx: ctx)
        result = flow.run(parameters={"lr": 0.01})
        assert result.phase.value == "completed"
        manifest = flow.manifest({"lr": 0.01})
        assert decode_parameters(manifest.parameters) == {"lr": 0.01}


def test_what_cannot_be_a_parameter_is_refused_by_name() -> None:
    with pytest.raises(ManifestError) as caught:
        encode_parameters({"when": {"at": object()}})
    assert caught.value.code == "parameter_not_supported"
    assert caught.value.name == "when.at"
