"""The per-user signing key and the signatures of documents (DESIGN §5)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nbflow.errors import NbflowError
from nbflow.store import Home
from nbflow.store.signing import SigningKey, key_path


def test_the_key_is_made_once_private_in_the_jupyter_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    assert key_path() == tmp_path / "data" / "nbflow_signing_key"
    first = SigningKey.load()
    assert stat.S_IMODE(os.stat(first.path).st_mode) == 0o600
    assert SigningKey.load() == first  # read back, not made again
    assert len(first.key_id) == 16
    assert first.mac("blake3:" + "0" * 64) != first.mac("blake3:" + "1" * 64)


def test_two_processes_making_the_key_at_once_agree_on_one(tmp_path: Path) -> None:
    code = "from nbflow.store.signing import SigningKey; print(SigningKey.load().key_id)"
    env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    racers = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    ids = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert len(ids) == 1
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["nbflow_signing_key"]


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    key = SigningKey.load(tmp_path / "key")
    os.chmod(key.path, 0o644)
    with pytest.raises(NbflowError) as caught:
        SigningKey.load(key.path)
    assert caught.value.code == "signing_key_insecure"
    assert f"chmod 600 {key.path}" in (caught.value.hint or "")


def test_a_document_signed_by_another_key_is_untrusted(tmp_path: Path) -> None:
    mine, theirs = SigningKey.load(tmp_path / "mine"), SigningKey.load(tmp_path / "theirs")
    with Home(tmp_path / ".nbflow", key=theirs) as home:
        document = home.artifacts.put_signed(b'{"made": "elsewhere"}')
        assert home.artifacts.is_signed(document)
    with Home(tmp_path / ".nbflow", key=mine) as home:
        assert not home.artifacts.is_signed(document)
        with pytest.raises(NbflowError) as caught:
            home.artifacts.require_signed(document, "manifest")
        assert caught.value.code == "untrusted_history"
        assert str(tmp_path / ".nbflow") in caught.value.message
        home.artifacts.sign(document)
        assert home.artifacts.is_signed(document)
    with Home(tmp_path / ".nbflow", key=theirs) as home:
        assert home.artifacts.is_signed(document)  # both signatures are kept


def test_a_forged_signature_row_is_refused(tmp_path: Path) -> None:
    key = SigningKey.load(tmp_path / "key")
    with Home(tmp_path / ".nbflow", key=key) as home:
        document = home.artifacts.put(b'{"forged": true}')
        home.signatures.put([(document, key.key_id, "0" * 64)])
        assert not home.artifacts.is_signed(document)
