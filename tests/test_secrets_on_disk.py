"""No secret reaches the disk (DESIGN §4): planted secrets on every path, then a byte
search of every file under ``.nbflow/``; and legitimate code and values, never refused."""

from __future__ import annotations

import importlib.util
import random
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from secret_corpus import LEGITIMATE_CODE, LEGITIMATE_VALUES, formatted_token, opaque_token

from nbflow import Flow, fact
from nbflow.engine import Engine, JsonContextCodec, StartRequest, store_manifest
from nbflow.engine.contract import manifest_bytes
from nbflow.errors import NbflowError
from nbflow.hashing.redact import MARKER, KnownSecrets
from nbflow.model import Manifest, Note, Plan, StateSpec
from nbflow.snapshot import NamespaceCodec
from nbflow.store import Home

PER_PATH = 12


class Holder:
    """An object whose attribute holds a secret, where no container walk looks."""

    def __init__(self, value: str) -> None:
        self.value = value


def files_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


def found_on_disk(root: Path, secrets: list[str]) -> list[str]:
    blobs = [p.read_bytes() for p in files_under(root)]
    return [s for s in secrets if any(s.encode() in blob for blob in blobs)]


class Planting:
    """Plants secrets through one path each and records what became of them."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self.home_path = tmp_path / ".nbflow"
        self.rng = random.Random(9)
        self.planted: list[str] = []
        self.count = 0

    def secret(self, formatted: bool) -> str:
        self.count += 1
        value = formatted_token(self.rng, self.count) if formatted else opaque_token(self.rng)
        self.planted.append(value)
        return value

    def known_by_environment(self, value: str) -> None:
        self.monkeypatch.setenv(f"SERVICE_{self.count}_API_TOKEN", value)

    def flow(self) -> Flow:
        return Flow(f"flow{self.count}", home=self.home_path)


def failed_error(flow: Flow) -> Any:
    (record,) = flow.runs()
    stream = flow.home.events.read_range(record.run_id)
    failures = [e.event for e in stream if e.event.kind == "state_failed"]
    assert failures, "the state failed"
    return failures[-1].error


def test_planted_secrets_are_never_found_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = Planting(tmp_path, monkeypatch)
    outcomes: dict[str, int] = {}

    def done(path: str) -> None:
        outcomes[path] = outcomes.get(path, 0) + 1

    for index in range(PER_PATH):
        formatted = index % 2 == 0

        # 1. A failure's message quotes the token.
        token = plant.secret(formatted)
        if not formatted:
            plant.known_by_environment(token)
        with plant.flow() as flow:

            def refused(ctx: Any, token: str = token) -> Any:
                raise PermissionError(f"401 Unauthorized for token {token}")

            flow.declare("call", refused)
            assert flow.run().phase.value == "failed"
            error = failed_error(flow)
            assert MARKER in error.message
            assert "401 Unauthorized for token" in error.message  # the rest is kept
        done("error message")

        # 2. A traceback shows a line of code holding a literal secret.
        token = plant.secret(formatted)
        module_path = tmp_path / f"helper_{plant.count}.py"
        module_path.write_text(
            "def connect(password):\n    raise RuntimeError('refused')\n\n\n"
            f'def call():\n    return connect(password="{token}")\n'
        )
        spec = importlib.util.spec_from_file_location(module_path.stem, module_path)
        assert spec is not None
        assert spec.loader is not None
        helper = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(helper)
        with plant.flow() as flow:
            flow.declare("call", lambda ctx: helper.call())  # noqa: B023 - run at once
            assert flow.run().phase.value == "failed"
            error = failed_error(flow)
            assert "refused" in error.details["traceback"]
            assert MARKER in error.details["traceback"]
        sys.modules.pop(module_path.stem, None)
        done("traceback")

        # 3. A fact's value holds the token.
        token = plant.secret(formatted)
        if not formatted:
            plant.known_by_environment(token)
        with plant.flow() as flow:
            value: Any = {"data": token} if index % 4 < 2 else {"api_key": token}

            def records(ctx: Any, value: Any = value) -> Any:
                fact("response", lambda: value)
                return ctx

            flow.declare("call", records)
            assert flow.run().phase.value == "failed"
            assert failed_error(flow).code == "fact_secret"
        done("fact")

        # 4. A note attached to the run.
        token = plant.secret(formatted)
        if not formatted:
            plant.known_by_environment(token)
        with Home(plant.home_path) as home:
            engine = Engine(
                home.artifacts, home.events, JsonContextCodec(home.artifacts), {"a": lambda c: c}
            )
            plan = Plan(flow_id=f"notes{index}", states=(StateSpec(id="a"),))
            manifest = Manifest(flow_id=plan.flow_id, plan=plan)
            request: StartRequest[Any] = StartRequest.for_manifest(
                manifest,
                store_manifest(home.artifacts, manifest),
                {},
                (Note(text=f"ran with key {token} today"),),
            )
            result = engine.start(request)
            stream = home.events.read_range(result.run_id)
            notes = [e.event for e in stream if e.event.kind == "note"]
            assert notes[0].text == f"ran with key {MARKER} today"
        done("note")

        # 5. A parameter.
        token = plant.secret(formatted)
        with plant.flow() as flow:
            flow.declare("a", lambda ctx: ctx)
            parameters: dict[str, Any] = {"endpoint": f"https://x.example/?k={token}"}
            if not formatted:
                parameters = {"service": {"api_token": token}}
            with pytest.raises(NbflowError) as caught:
                flow.run(parameters=parameters)
            assert caught.value.code == "secrets_detected"
            assert token not in str(caught.value)
        done("parameter")

        # 6. Snapshot variables: by name, inside containers and objects, and by value.
        token = plant.secret(formatted)
        with Home(plant.home_path) as home:
            codec = NamespaceCodec(home.artifacts, secrets=KnownSecrets({}))
            namespace = {
                "db_password": token,
                "dsn": f"postgresql://analyst:{token}@db.internal/sales",
                "cfg": {"api_key": token, "region": "eu"},
                "holder": Holder(token),
                "kept": [1, 2, 3],
            }
            snapshot_id = codec.capture(namespace)
            restored = codec.restore(snapshot_id)
            assert restored == {"kept": [1, 2, 3]}
        done("snapshot")

        # 7. The initial context of the Python API.
        token = plant.secret(formatted)
        if not formatted:
            plant.known_by_environment(token)
        with plant.flow() as flow:
            flow.declare("a", lambda ctx: ctx)
            context = {"session": {"auth_token": token}} if index % 4 < 2 else {"t": token}
            with pytest.raises(NbflowError) as caught:
                flow.run(context)
            assert caught.value.code == "secrets_detected"
            assert flow.runs() == []
        done("initial context")

        # 8. A state's code.
        token = plant.secret(formatted)
        with plant.flow() as flow:
            flow.declare("a", lambda ctx: ctx, source=f'client = connect(password="{token}")')
            with pytest.raises(NbflowError) as caught:
                flow.run()
            assert caught.value.code == "secrets_detected"
        done("state code")

        # 9. A context a state returns.
        token = plant.secret(formatted)
        if not formatted:
            plant.known_by_environment(token)
        with plant.flow() as flow:
            flow.declare("a", lambda ctx: {"cookie": token})  # noqa: B023 - run at once
            assert flow.run().phase.value == "failed"
            assert failed_error(flow).code == "secrets_detected"
        done("returned context")

    assert len(plant.planted) >= 100
    assert all(count == PER_PATH for count in outcomes.values()), outcomes
    with Home(plant.home_path):
        # The database is open: the recent writes are in the WAL.
        assert (plant.home_path / "nbflow.db-wal").exists()
        assert found_on_disk(plant.home_path, plant.planted) == []
        connection = sqlite3.connect(plant.home_path / "nbflow.db")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
        assert found_on_disk(plant.home_path, plant.planted) == []
    assert found_on_disk(plant.home_path, plant.planted) == []  # closed: checkpointed


@pytest.mark.parametrize("source", LEGITIMATE_CODE)
def test_legitimate_state_code_is_never_refused(source: str) -> None:
    plan = Plan(flow_id="flow", states=(StateSpec(id="a", source=source),))
    manifest_bytes(Manifest(flow_id="flow", plan=plan))  # raises secrets_detected if refused


def test_legitimate_values_are_recorded_unchanged(tmp_path: Path) -> None:
    assert len(LEGITIMATE_CODE) + len(LEGITIMATE_VALUES) >= 100
    recorded: list[Any] = []

    def body(ctx: Any) -> Any:
        for index, value in enumerate(LEGITIMATE_VALUES):
            recorded.append(fact(f"v{index}", lambda: value))  # noqa: B023 - called at once
        return {"values": LEGITIMATE_VALUES}

    with Flow("values", home=tmp_path / ".nbflow") as flow:
        flow.declare("a", body)
        result = flow.run({"start": LEGITIMATE_VALUES})
        assert result.phase.value == "completed", result.error
        assert recorded == LEGITIMATE_VALUES
        assert flow.restore("a") == {"values": LEGITIMATE_VALUES}
