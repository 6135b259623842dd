"""A namespace captured by one Python process is restored and used by another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nbflow

REPO = Path(nbflow.__file__).resolve().parent.parent

CAPTURE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import pandas as pd
    from nbflow.snapshot import NamespaceCodec
    from nbflow.store import Home

    OFFSET = 10

    def add(x):
        return x + OFFSET

    def helper():
        return OFFSET

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def norm2(self):
            return self.x ** 2 + self.y ** 2 + helper()

    square = lambda v: v * v

    def make_counter():
        count = 0
        def inc():
            nonlocal count
            count += 1
            return count
        return inc

    point = Point(3, 4)
    counter = make_counter()
    counter()
    counter()
    arr = np.arange(100_000)
    alias = arr
    frame = pd.DataFrame({"x": np.arange(30_000)}, index=[f"r{i}" for i in range(30_000)])
    pairs = [point, point]

    home = Home(sys.argv[1])
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture(globals())
    home.close()
    print(snapshot_id)
    """
)

RESTORE = textwrap.dedent(
    """
    import json
    import sys
    from nbflow.snapshot import NamespaceCodec
    from nbflow.store import Home

    home = Home(sys.argv[1])
    ns = {"__name__": "__main__"}
    NamespaceCodec(home.artifacts).restore(sys.argv[2], into=ns)
    result = {
        "add": ns["add"](1),
        "norm2": ns["point"].norm2(),
        "is_point": isinstance(ns["point"], ns["Point"]),
        "new_point": ns["Point"](1, 1).norm2(),
        "square": ns["square"](7),
        "counter": ns["counter"](),
        "alias": ns["alias"] is ns["arr"],
        "pairs": ns["pairs"][0] is ns["pairs"][1] is ns["point"],
        "arr_sum": int(ns["arr"].sum()),
        "frame_last": ns["frame"].loc["r29999", "x"].item(),
        "modules": [ns["np"].__name__, ns["pd"].__name__],
        "home_skipped": "home" not in ns,
    }
    ns["OFFSET"] = 100  # a later cell: restored functions read the live namespace
    result["add_after"] = ns["add"](1)
    print(json.dumps(result))
    """
)


def run(script: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_captured_in_one_process_used_in_another(tmp_path: Path) -> None:
    (tmp_path / "capture.py").write_text(CAPTURE)
    (tmp_path / "restore.py").write_text(RESTORE)
    home = str(tmp_path / ".nbflow")
    snapshot_id = run(tmp_path / "capture.py", home)
    result = json.loads(run(tmp_path / "restore.py", home, snapshot_id))
    assert result == {
        "add": 11,
        "norm2": 25 + 10,
        "is_point": True,
        "new_point": 2 + 10,
        "square": 49,
        "counter": 3,
        "alias": True,
        "pairs": True,
        "arr_sum": sum(range(100_000)),
        "frame_last": 29_999,
        "modules": ["numpy", "pandas"],
        "home_skipped": True,
        "add_after": 101,
    }
