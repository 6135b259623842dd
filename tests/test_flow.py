"""``nbflow.Flow``: the Python API over the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nbflow import Flow, NbflowError, RunPhase
from nbflow.engine import Failpoints


def test_decorated_states_run_in_dependency_order(tmp_path: Path) -> None:
    log: list[str] = []
    with Flow("demo", tmp_path / ".nbflow") as flow:

        @flow.state(after=["load"])
        def clean(ctx: dict[str, Any]) -> dict[str, Any]:
            log.append("clean")
            return {**ctx, "rows": ctx["rows"] - 1}

        @flow.state()
        def load(ctx: dict[str, Any]) -> dict[str, Any]:
            log.append("load")
            return {**ctx, "rows": 10}

        result = flow.run()
        assert result.phase is RunPhase.COMPLETED
        assert log == ["load", "clean"]
        assert flow.restore("load") == {"rows": 10}
        assert flow.restore("clean") == {"rows": 9}
        assert "def clean" in flow.plan.state("clean").source


def test_run_again_after_interruption_resumes_the_identical_manifest(tmp_path: Path) -> None:
    log: list[str] = []
    armed = {"interrupt": True}

    def b(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append("b")
        if armed.pop("interrupt", False):
            raise KeyboardInterrupt
        return {**ctx, "b": 1}

    with Flow("demo", tmp_path / ".nbflow") as flow:

        def a(ctx: dict[str, Any]) -> dict[str, Any]:
            log.append("a")
            return {**ctx, "a": 1}

        flow.declare("a", a)
        flow.declare("b", b, after=["a"])
        with pytest.raises(KeyboardInterrupt):
            flow.run()
        interrupted = flow.runs()[0]
        assert interrupted.status == "running"
        result = flow.run()
        assert result.run_id == interrupted.run_id
        assert result.phase is RunPhase.COMPLETED
        assert log == ["a", "b", "b"]
        fresh = flow.run(fresh=True)
        assert fresh.run_id != interrupted.run_id
        assert log == ["a", "b", "b", "a", "b"]


def test_changed_code_starts_a_new_run_instead_of_resuming(tmp_path: Path) -> None:
    with Flow("demo", tmp_path / ".nbflow", failpoints=Failpoints(True)) as flow:
        flow.declare("a", lambda ctx: ctx, source="v1")
        first = flow.run()
        assert first.phase is RunPhase.RUNNING
        flow.declare("a", lambda ctx: ctx, source="v2")
        second = flow.run()
        assert second.run_id != first.run_id
        assert second.phase is RunPhase.COMPLETED


def test_resume_and_cancel_by_prefix(tmp_path: Path) -> None:
    with Flow("demo", tmp_path / ".nbflow", failpoints=Failpoints(True)) as flow:
        flow.declare("a", lambda ctx: {**ctx, "a": 1})
        run_id = flow.run().run_id
        cancelled = flow.cancel(run_id[:6])
        assert cancelled.phase is RunPhase.CANCELLED
        assert flow.resume(run_id[:6]).phase is RunPhase.CANCELLED  # terminal
        with pytest.raises(NbflowError) as caught:
            flow.resume()
        assert caught.value.code == "run_not_found"
        with pytest.raises(NbflowError) as unknown:
            flow.resume("zzzz")
        assert unknown.value.code == "run_not_found"


def test_bad_plan_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with Flow("demo", tmp_path / ".nbflow") as flow:
        flow.declare("a", lambda ctx: ctx, after=["b"])
        flow.declare("b", lambda ctx: ctx, after=["a"])
        with pytest.raises(NbflowError) as caught:
            flow.run()
        assert caught.value.code == "circular_dependency"
        assert flow.runs() == []
        assert list(flow.home.artifacts.ids()) == []


def test_bad_options_are_clear_errors(tmp_path: Path) -> None:
    with Flow("demo", tmp_path / ".nbflow") as flow:
        for kwargs, code in (
            ({"backoff": "sometimes"}, "bad_backoff"),
            ({"timeout": "soon"}, "bad_duration"),
            ({"retries": -1}, "bad_retries"),
        ):
            with pytest.raises(NbflowError) as caught:
                flow.declare("a", lambda ctx: ctx, **kwargs)
            assert caught.value.code == code
            assert caught.value.hint or code == "bad_retries"


def test_restore_of_a_state_that_never_completed_says_so(tmp_path: Path) -> None:
    with Flow("demo", tmp_path / ".nbflow") as flow:
        flow.declare("a", lambda ctx: ctx)
        flow.run()
        with pytest.raises(NbflowError) as caught:
            flow.restore("nope")
        assert caught.value.code == "state_not_completed"


def test_nbflow_home_environment_variable_chooses_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBFLOW_HOME", str(tmp_path / "elsewhere"))
    with Flow("demo") as flow:
        assert flow.home.root == tmp_path / "elsewhere"


def test_readme_python_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(block, str(readme), "exec"), namespace)
    assert (tmp_path / ".nbflow" / "nbflow.db").exists()
