"""Withheld secrets never reach the disk: every file under ``.nbflow/`` is searched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import SecretStr
from snapshot_support import define

from nbflow.snapshot import NamespaceCodec, VariableStatus
from nbflow.store import Home

TOKEN = "ghp_" + "Zq7Rk2Lm9Xv4Tn8Bw1Yc6Hd3Fs5Gj0Pa" + "Nu1E"
PASSWORD = "correct-horse-battery-staple-42"


class Client:
    """A user object holding a token in an attribute."""

    def __init__(self, token: str) -> None:
        self.endpoint = "https://api.example.com"
        self.headers = {"Authorization": f"Bearer {token}"}


def every_byte_under(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]


def test_planted_tokens_are_withheld_and_not_on_disk(tmp_path: Path) -> None:
    root = tmp_path / ".nbflow"
    namespace = define("def call_api():\n    return 'calling with ' + api_token\n")
    namespace.update(
        {
            "api_token": TOKEN,  # credential-looking name
            "secrets": {"github": {"note": f"use {TOKEN} for CI"}},  # dict, credential name
            "config": {"host": "db", "db_password": PASSWORD},  # credential-looking key
            "notes": ["ok", {"deep": (1, f"token is {TOKEN}")}],  # token inside a string
            "client": Client(TOKEN),  # token in an object's attribute
            "wrapped": SecretStr(PASSWORD),  # a secret type
            "values": np.arange(100_000),
            "greeting": "hello",
        }
    )
    with Home(root) as home:
        codec = NamespaceCodec(home.artifacts)
        snapshot_id = codec.capture(namespace)
        namespace["greeting"] = "hello again"
        codec.capture(namespace)
        report = codec.last_report
        assert report is not None
        withheld = {note.name: note.reason for note in report.withheld}
        assert set(withheld) == {"api_token", "secrets", "config", "notes", "client", "wrapped"}
        for reason in withheld.values():
            assert TOKEN not in reason
            assert PASSWORD not in reason
        restored = NamespaceCodec(home.artifacts).restore(snapshot_id)
        assert set(restored) == {"call_api", "values", "greeting"}
        document = codec.document(snapshot_id)
        assert document.names(VariableStatus.WITHHELD) == tuple(sorted(withheld))

    files = every_byte_under(root)
    assert any(p.name == "nbflow.db" for p, _ in files)
    for path, data in files:
        for secret in (TOKEN, PASSWORD):
            for form in (secret.encode(), secret.encode("utf-16-le")):
                assert form not in data, f"{secret[:6]}... found in {path}"


def test_function_reading_a_secret_global_does_not_carry_it(home: Home) -> None:
    namespace: dict[str, Any] = define("def auth():\n    return api_key\n")
    namespace["api_key"] = PASSWORD
    codec = NamespaceCodec(home.artifacts)
    snapshot_id = codec.capture(namespace)
    restored = NamespaceCodec(home.artifacts).restore(snapshot_id)
    assert "api_key" not in restored
    restored["api_key"] = "re-entered"
    assert restored["auth"]() == "re-entered"


def test_placeholders_and_ordinary_words_are_kept(home: Home) -> None:
    namespace = {
        "tokens": ["the", "cat"],
        "tokenizer": {"vocab_size": 3},
        "sort_key": "name",
        "config": {"password": "", "api_key": "${API_KEY}"},
        "text": "a key, a token and a password were mentioned",
    }
    codec = NamespaceCodec(home.artifacts)
    restored = NamespaceCodec(home.artifacts).restore(codec.capture(namespace))
    assert restored == namespace
