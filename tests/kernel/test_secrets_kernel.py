"""In a real kernel, a token from the environment never reaches ``.nbflow/`` (DESIGN §4)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from conftest import KernelFactory
from secret_corpus import opaque_token


def on_disk(root: Path, secret: str) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and secret.encode() in p.read_bytes()
    ]


def test_an_environment_token_is_withheld_from_errors_facts_and_variables(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    token = opaque_token(random.Random(4))
    kernel = kernels(SERVICE_API_TOKEN=token)
    kernel.ok("%load_ext nbflow")
    failed = kernel.run(
        "%%state fetch\nimport os\ntoken = os.environ['SERVICE_API_TOKEN']\n"
        "url = f'https://api.example.com/v1/items?access_token={token}'\n"
        "raise PermissionError(f'401 Unauthorized for {url}')"
    )
    assert failed.status == "error"
    assert token in failed.traceback  # the cell shows the user's own error as it was
    assert "withheld from the error of state 'fetch' before saving it" in failed.text
    assert "environment variable SERVICE_API_TOKEN" in failed.text

    refused = kernel.run(
        "%%state echo\nimport nbflow\n"
        "reply = nbflow.fact('reply', lambda: {'echo': os.environ['SERVICE_API_TOKEN']})"
    )
    assert refused.status == "error"
    assert "fact 'reply' was not recorded: its value holds a secret" in refused.text

    kernel.ok(
        "%%state client\n"
        "headers = {'Authorization': 'Bearer ' + os.environ['SERVICE_API_TOKEN']}\n"
        "pages = [1, 2, 3]"
    )
    kernel.ok("%flow restore client")
    assert kernel.ok("print(pages)").stdout.strip() == "[1, 2, 3]"

    home = tmp_path / ".nbflow"
    assert (home / "nbflow.db-wal").exists()
    assert on_disk(home, token) == []
    connection = sqlite3.connect(home / "nbflow.db")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    assert on_disk(home, token) == []
