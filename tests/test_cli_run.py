"""``nbflow run``: a notebook executed headless as one run, and resumed after a crash."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.sign import NotebookNotary

STATE_LOG = "states.log"


def code_cell(source: str, **fields: Any) -> Any:
    return nbformat.v4.new_code_cell(source, **fields)  # type: ignore[no-untyped-call]


def write_notebook(folder: Path) -> Path:
    cells = [
        code_cell("n = 3", metadata={"tags": ["parameters"]}),
        code_cell("import os, time\nprint('plain cell ran')"),
        code_cell(
            f"%%state load\nopen({STATE_LOG!r}, 'a').write('load\\n')\nrows = list(range(n))\nrows"
        ),
        code_cell(
            f"%%state clean --after load\nopen({STATE_LOG!r}, 'a').write('clean\\n')\n"
            "rows = [r * 2 for r in rows]\nprint('clean', rows)"
        ),
        code_cell(
            f"%%state train --after clean\nopen({STATE_LOG!r}, 'a').write('train\\n')\n"
            "while os.path.exists('hold'):\n    time.sleep(0.05)\nmodel = sum(rows)"
        ),
        code_cell("print('model', model)"),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    path = folder / "pipeline.ipynb"
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
    return path


def nbflow_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nbflow.cli", *args]


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def outputs(path: Path) -> list[str]:
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    shown = []
    for cell in notebook.cells:
        texts = [
            o.get("text") or o.get("data", {}).get("text/plain", "")
            for o in cell.get("outputs", [])
        ]
        shown.append("".join(texts))
    return shown


def test_run_is_killed_in_state_3_and_the_same_command_resumes_it(tmp_path: Path) -> None:
    path = write_notebook(tmp_path)
    output = tmp_path / "out.ipynb"
    command = nbflow_command("run", str(path), "-p", "n=4", "--output", str(output))
    (tmp_path / "hold").touch()
    cli = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    log = tmp_path / STATE_LOG
    deadline = time.monotonic() + 120
    while not (log.exists() and "train" in log.read_text()):
        assert time.monotonic() < deadline, "train never started"
        assert cli.poll() is None, cli.stderr.read() if cli.stderr else ""
        time.sleep(0.05)
    kernels = descendants(cli.pid)
    assert kernels, "the kernel is a child of the command"
    for pid in [cli.pid, *kernels]:
        with contextlib.suppress(ProcessLookupError):  # a child that ended meanwhile
            os.kill(pid, signal.SIGKILL)
    cli.wait(timeout=30)
    (tmp_path / "hold").unlink()
    assert log.read_text().split() == ["load", "clean", "train"]

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming run" in again.stderr
    assert log.read_text().split() == ["load", "clean", "train", "train"]  # 1-2 not again
    shown = outputs(output)
    assert shown[1] == ""  # injected parameters
    assert "plain cell ran" in shown[2]
    assert "[0, 1, 2, 3]" in shown[3]  # load's output, kept from the first execution
    assert "clean [0, 2, 4, 6]" in shown[4]
    assert "model 12" in shown[6]
    assert "completed: 3/3 states" in again.stdout


def test_exit_codes_and_json_summary(tmp_path: Path) -> None:
    path = write_notebook(tmp_path)
    data_dir = tmp_path / "jupyter-data"
    done = subprocess.run(
        nbflow_command("run", str(path), "--json"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JUPYTER_DATA_DIR": str(data_dir)},
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["run"]["status"] == "completed"
    assert [a["state_id"] for a in summary["attempts"]] == ["load", "clean", "train"]
    written = nbformat.read(tmp_path / "pipeline.output.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    # Signed with this user's notebook secret: Jupyter trusts, and draws, its pictures.
    notary = NotebookNotary(data_dir=str(data_dir))  # type: ignore[no-untyped-call]
    assert notary.check_signature(written)  # type: ignore[no-untyped-call]
    (tmp_path / "other").mkdir()
    stranger = NotebookNotary(data_dir=str(tmp_path / "other"))  # type: ignore[no-untyped-call]
    assert not stranger.check_signature(written)  # type: ignore[no-untyped-call]
    no_resume = subprocess.run(
        nbflow_command("resume", str(path)), cwd=tmp_path, capture_output=True, text=True
    )
    assert no_resume.returncode == 2
    assert "no interrupted run" in no_resume.stderr
    broken = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    broken.cells[3].source = broken.cells[3].source.replace("rows = [", "rows = 1 / 0 or [")
    nbformat.write(broken, path)  # type: ignore[no-untyped-call]
    failed = subprocess.run(
        nbflow_command("run", str(path)), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert failed.returncode == 1
    assert "ZeroDivisionError" in "".join(outputs(tmp_path / "pipeline.output.ipynb"))
    bad = subprocess.run(
        nbflow_command("run", str(path), "-p", "not a pair"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2


def parameter_notebook(folder: Path) -> Path:
    seen = "open('seen.log', 'a').write(repr((lr, n, name, grid, type(lr).__name__)) + '\\n')"
    cells = [
        code_cell("lr, n, name, grid = 1.0, 1, 'x', []", metadata={"tags": ["parameters"]}),
        code_cell(f"%%state first\n{seen}\nw = lr * 10"),
        code_cell(
            f"%%state second --after first\n{seen}\n"
            "import os, time\nwhile os.path.exists('hold'):\n    time.sleep(0.05)"
        ),
        code_cell("print('w', w)"),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    path = folder / "params.ipynb"
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
    return path


def no_json_float(data: bytes) -> None:
    def refuse(text: str) -> float:
        raise AssertionError(f"a JSON float {text} in the manifest")

    json.loads(data, parse_float=refuse)


def test_parameters_keep_their_type_in_the_notebook_the_manifest_and_a_resume(
    tmp_path: Path,
) -> None:
    from nbflow.store import Home

    path = parameter_notebook(tmp_path)
    command = nbflow_command(
        "run", str(path), "-p", "lr=0.01", "-p", "n=3", "-p", "name=abc",
        "-p", "grid=[1, 2.5]",
    )  # fmt: skip
    (tmp_path / "hold").touch()
    cli = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.DEVNULL)
    seen = tmp_path / "seen.log"
    deadline = time.monotonic() + 120
    try:
        while not (seen.exists() and len(seen.read_text().splitlines()) >= 2):
            assert time.monotonic() < deadline, "the second state never started"
            assert cli.poll() is None
            time.sleep(0.05)
    finally:
        for pid in [*descendants(cli.pid), cli.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        cli.wait(timeout=30)
    (tmp_path / "hold").unlink()
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming run" in again.stderr
    expected = repr((0.01, 3, "abc", [1, 2.5], "float"))
    assert seen.read_text().splitlines() == [expected] * 3  # first, second, second resumed
    assert "w 0.1" in outputs(tmp_path / "params.output.ipynb")[4]
    with Home(tmp_path / ".nbflow") as home:
        (record,) = home.events.runs()
        assert record.manifest_id is not None
        manifest = home.artifacts.get(record.manifest_id)
    no_json_float(manifest)
    assert b'"lr":{"$float":"0.01"}' in manifest

    papermill = subprocess.run(
        nbflow_command("run", str(path), "-p", "lr", "0.01", "--fresh"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert papermill.returncode == 0, papermill.stderr
    assert seen.read_text().splitlines()[-1] == repr((0.01, 1, "x", [], "float"))


def test_parameter_parsing_keeps_literal_types_and_refuses_what_cannot_be_stored() -> None:
    from nbflow.cli.errors import CommandLineError
    from nbflow.cli.main import papermill_pairs
    from nbflow.cli.run import parse_parameters, python_literal

    parsed = parse_parameters(["lr=0.01", "n=3", "name=abc", "grid=[1, 2.5]", "on=True", "z=None"])
    assert parsed == {"lr": 0.01, "n": 3, "name": "abc", "grid": [1, 2.5], "on": True, "z": None}
    assert type(parsed["lr"]) is float
    assert papermill_pairs(["run", "nb.ipynb", "-p", "lr", "0.01", "-p", "n=2"]) == [
        "run", "nb.ipynb", "-p", "lr=0.01", "-p", "n=2",
    ]  # fmt: skip
    assert eval(python_literal(float("inf"))) == float("inf")
    assert eval(python_literal([float("-inf"), (1,), {"a": 0.5}])) == [
        float("-inf"),
        (1,),
        {"a": 0.5},
    ]
    with pytest.raises(CommandLineError, match="set"):
        parse_parameters(["s={1, 2}"])


def five_states(folder: Path, fourth: str = "d = c + 1") -> Path:
    cells = [code_cell(f"LOG = {STATE_LOG!r}")]
    codes = ["a = 1", "b = a + 1", "c = b + 1", fourth, "e = d + 1"]
    for index, (name, code) in enumerate(zip("abcde", codes, strict=True)):
        after = f" --after {'abcde'[index - 1]}" if index else ""
        cells.append(
            code_cell(
                f"%%state {name}{after}\nopen(LOG, 'a').write('{name}\\n')\n{code}\n"
                f"print('made {name}')"
            )
        )
    cells.append(code_cell("print('e is', e)"))
    notebook = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    path = folder / "five.ipynb"
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
    return path


def test_nbflow_run_twice_executes_nothing_and_an_edit_executes_exactly_what_it_affects(
    tmp_path: Path,
) -> None:
    log = tmp_path / STATE_LOG

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            nbflow_command("run", str(tmp_path / "five.ipynb"), *extra),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done

    five_states(tmp_path)
    run()
    assert log.read_text().split() == list("abcde")
    again = run()
    assert log.read_text().split() == list("abcde")  # nothing executed
    assert again.stderr.count("cached") >= 5
    shown = outputs(tmp_path / "five.output.ipynb")
    assert "e is 5" in shown[6]
    assert all("cached from run" in text for text in shown[1:6])
    # What each cell printed when it ran is shown again above the notice.
    assert [text.split("\n")[0] for text in shown[1:6]] == [f"made {n}" for n in "abcde"]
    five_states(tmp_path, fourth="d = c + 10")  # the fourth of five state cells
    show = subprocess.run(
        nbflow_command("show", "five.ipynb", "--svg", "now.svg"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert show.returncode == 0, show.stderr
    plan = {line.split()[1]: line for line in show.stdout.splitlines() if line.startswith("  ")}
    assert "stale" in plan["d"]
    assert "its code changed" in plan["d"]
    assert "upstream d is stale" in plan["e"]
    assert all("cached" in plan[name] for name in "abc")
    picture = (tmp_path / "now.svg").read_text()
    assert picture.count('data-status="stale"') == 2
    run()
    assert log.read_text().split() == [*"abcde", "d", "e"]
    assert "e is 14" in outputs(tmp_path / "five.output.ipynb")[6]
    run("--no-cache")
    assert log.read_text().split() == [*"abcde", "d", "e", *"abcde"]


def test_a_parameter_change_executes_the_states_that_read_it(tmp_path: Path) -> None:
    log = tmp_path / STATE_LOG
    cells = [code_cell("start = 1\nfactor = 1", metadata={"tags": ["parameters"]})]
    for name, after, code in (
        ("one", "", "x = start + 1"),
        ("two", " --after one", "y = x * 2"),
        ("three", "", "z = factor * 5"),
    ):
        cells.append(
            code_cell(f"%%state {name}{after}\nopen({STATE_LOG!r}, 'a').write('{name}\\n')\n{code}")
        )
    cells.append(code_cell("print('values', x, y, z)"))
    notebook = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    path = tmp_path / "params.ipynb"
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]

    def run(*parameters: str) -> list[str]:
        before = len(log.read_text().split()) if log.exists() else 0
        pairs = [word for pair in parameters for word in ("-p", pair)]
        done = subprocess.run(
            nbflow_command("run", str(path), *pairs),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return log.read_text().split()[before:]

    assert run("start=1") == ["one", "two", "three"]
    assert run("start=1") == []
    assert run("start=2") == ["one", "two"]
    assert "values 3 6 5" in outputs(tmp_path / "params.output.ipynb")[-1]
    assert run("start=2", "factor=3") == ["three"]
    assert "values 3 6 15" in outputs(tmp_path / "params.output.ipynb")[-1]


def test_nbflow_run_twice_on_the_quickstart_notebook_executes_no_state_and_keeps_outputs(
    tmp_path: Path,
) -> None:
    from nbflow.model.events import StateCached, StateEntered
    from nbflow.store import Home

    source = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
    path = tmp_path / "quickstart.ipynb"
    path.write_bytes(source.read_bytes())
    for _round in range(2):
        done = subprocess.run(
            nbflow_command("run", str(path)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    with Home(tmp_path / ".nbflow") as home:
        newest, first = home.events.runs(flow_id="quickstart.ipynb")
        stream = [e.event for e in home.events.read_range(newest.run_id)]
        served = {e.state_id for e in stream if isinstance(e, StateCached)}
        entered = {e.state_id for e in stream if isinstance(e, StateEntered)}
    assert served == entered == {"qs_load", "qs_clean", "qs_features", "qs_train"}
    shown = outputs(tmp_path / "quickstart.output.ipynb")
    cells = nbformat.read(path, as_version=4).cells  # type: ignore[no-untyped-call]
    load = next(i for i, c in enumerate(cells) if c.source.startswith("%%state qs_load"))
    assert "(150, 5)" in shown[load]  # the shape it showed when it ran
    assert "qs_load cached from run" in shown[load]
    assert first.run_id[:8] in shown[load]
