"""The ``nbflow`` command line, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from nbflow import Flow
from nbflow.demo import main as run_demo
from nbflow.store import Home


def nbflow(*args: str, cwd: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("NBFLOW_HOME", None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "nbflow.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    run_demo([str(tmp_path)])  # a real run: four states, one interrupted and resumed
    return tmp_path


def run_id_of(folder: Path) -> str:
    listed = json.loads(nbflow("runs", "--json", cwd=folder).stdout)
    return str(listed[0]["run_id"])


def test_runs_lists_the_history_as_text_and_json(folder: Path) -> None:
    text = nbflow("runs", cwd=folder)
    assert text.returncode == 0
    assert "completed" in text.stdout
    assert "4/4" in text.stdout
    listed = json.loads(nbflow("runs", "--json", cwd=folder).stdout)
    assert [(r["status"], r["states_done"], r["flow_id"]) for r in listed] == [
        ("completed", 4, "demo")
    ]


def test_runs_lists_a_page_and_says_how_many_more(tmp_path: Path) -> None:
    with Flow("many.ipynb", home=tmp_path / ".nbflow") as flow:
        flow.declare("step", lambda context: context, source="pass")
        for _ in range(25):
            flow.run(fresh=True, cache=False)
    page = nbflow("runs", cwd=tmp_path)
    assert page.returncode == 0, page.stderr
    assert page.stdout.count("completed") == 20
    assert "… and 5 older runs" in page.stdout
    two = nbflow("runs", "many.ipynb", "--limit", "2", cwd=tmp_path)
    assert two.stdout.count("completed") == 2
    assert "… and 23 older runs" in two.stdout
    every = nbflow("runs", "--all", cwd=tmp_path)
    assert every.stdout.count("completed") == 25
    assert "older runs" not in every.stdout
    assert len(json.loads(nbflow("runs", "--json", cwd=tmp_path).stdout)) == 25
    assert len(json.loads(nbflow("runs", "--json", "--limit", "3", cwd=tmp_path).stdout)) == 3
    bad = nbflow("runs", "--limit", "0", cwd=tmp_path)
    assert bad.returncode == 2
    assert "'0' is not a whole number of 1 or more" in bad.stderr


@pytest.mark.parametrize("with_dot", [True, False])
def test_show_writes_the_dag_and_timeline_as_svg(folder: Path, with_dot: bool) -> None:
    run_id = run_id_of(folder)
    out = folder / "run.svg"
    shown = nbflow("show", run_id[:6], "--svg", str(out), cwd=folder, path=None if with_dot else "")
    assert shown.returncode == 0, shown.stderr
    assert "timeline of run" in shown.stdout
    root = ElementTree.parse(out).getroot()
    classes = [(element.get("class") or "").split() for element in root.iter()]
    states = [c for c in classes if "nbflow-state" in c]
    attempts = [c for c in classes if "nbflow-attempt" in c]
    assert len(states) == 4  # load, clean, train, report
    assert len(attempts) == 5  # train was interrupted once
    if with_dot and subprocess.run(["which", "dot"], capture_output=True).returncode == 0:
        assert "drawn with dot" in shown.stderr
    if not with_dot:
        assert "drawn with builtin" in shown.stderr
        assert "install it" in shown.stderr  # the one-line hint


def test_usage_errors_exit_with_2(folder: Path) -> None:
    unknown = nbflow("show", "zzzz", cwd=folder)
    assert unknown.returncode == 2
    assert "no run id starts with 'zzzz'" in unknown.stderr
    assert nbflow("explode", cwd=folder).returncode == 2
    empty = folder / "empty"
    empty.mkdir()
    missing = nbflow("runs", cwd=empty)
    assert missing.returncode == 2
    assert "no history" in missing.stderr
    assert not (empty / ".nbflow").exists()  # looking does not create anything


def test_verify_reports_damage_by_id_and_exits_1(folder: Path) -> None:
    assert nbflow("verify", cwd=folder).returncode == 0
    with Home(folder / ".nbflow") as home:
        artifact_id = next(iter(home.artifacts.ids()))
        home.events.close()
    import sqlite3

    conn = sqlite3.connect(folder / ".nbflow" / "nbflow.db")
    data = bytearray(
        conn.execute("SELECT data FROM blobs WHERE id=?", (artifact_id,)).fetchone()[0]
    )
    data[0] ^= 1
    conn.execute("UPDATE blobs SET data=? WHERE id=?", (bytes(data), artifact_id))
    conn.commit()
    conn.close()
    damaged = nbflow("verify", cwd=folder)
    assert damaged.returncode == 1
    assert artifact_id in damaged.stdout


def test_gc_removes_only_unreferenced_artifacts(folder: Path) -> None:
    with Home(folder / ".nbflow") as home:
        orphan = home.artifacts.put(b"x" * 20_000)  # a file artifact no run refers to
        before = set(home.artifacts.ids())
    dry = nbflow("gc", "--dry-run", cwd=folder)
    assert "would remove 1 artifacts" in dry.stdout
    assert nbflow("gc", cwd=folder).returncode == 0
    with Home(folder / ".nbflow") as home:
        assert set(home.artifacts.ids()) == before - {orphan}
    assert nbflow("verify", cwd=folder).returncode == 0
    bad = nbflow("gc", "--keep", "a lot", cwd=folder)
    assert bad.returncode == 2
    assert "'a lot' is not a size" in bad.stderr
    roomy = nbflow("gc", "--keep", "10GB", cwd=folder)  # the newest run is always kept
    assert roomy.returncode == 0
    assert "removed 0 artifacts" in roomy.stdout
    with Home(folder / ".nbflow") as home:
        assert set(home.artifacts.ids()) == before - {orphan}


def test_timeline_hover_gives_each_completed_attempts_snapshot_size(folder: Path) -> None:
    out = folder / "run.svg"
    assert nbflow("show", run_id_of(folder), "--svg", str(out), cwd=folder).returncode == 0
    root = ElementTree.parse(out).getroot()
    hovers = [
        "".join(title.itertext())
        for element in root.iter()
        if "nbflow-attempt" in (element.get("class") or "").split()
        and element.get("data-outcome") == "completed"
        for title in element.iter("{http://www.w3.org/2000/svg}title")
    ]
    assert len(hovers) == 4
    assert all("snapshot" in hover for hover in hovers), hovers


def test_show_draws_a_cut_off_state_as_interrupted(tmp_path: Path) -> None:
    from nbflow import Failpoints, Flow

    with Flow("cut", tmp_path / ".nbflow", failpoints=Failpoints()) as flow:
        flow.declare("first", lambda ctx: ctx)

        def second(ctx: dict[str, int]) -> dict[str, int]:
            flow.engine.failpoints.stop_after_body_once = True  # dies before its checkpoint
            return ctx

        flow.declare("second", second, after=["first"])
        run_id = flow.run().run_id
    out = tmp_path / "cut.svg"
    assert nbflow("show", run_id, "--svg", str(out), cwd=tmp_path).returncode == 0
    statuses = {
        element.get("data-state"): element.get("data-status")
        for element in ElementTree.parse(out).getroot().iter()
        if "nbflow-state" in (element.get("class") or "").split()
    }
    assert statuses == {"first": "completed", "second": "interrupted"}


def test_show_run_finds_the_history_of_the_notebook_folder_below(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    run_demo([str(notebooks)])
    run_id = run_id_of(notebooks)
    shown = nbflow("show", run_id[:8], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert run_id[:8] in shown.stdout
    missing = nbflow("show", "ffffffff", cwd=tmp_path)
    assert missing.returncode != 0
    assert "no history in .nbflow" in missing.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly(folder: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NBFLOW_HOME"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nbflow.cli", "show", run_id_of(folder)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()  # no reader left: its first write fails, as under `| head`
    error = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert error == ""
