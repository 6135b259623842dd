"""A history written before signatures and checksums (schema 1) is migrated on first open."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from nbflow import Flow
from nbflow.errors import NbflowError
from nbflow.snapshot import NamespaceCodec


def make_flow(home: Path) -> Flow:
    flow = Flow("legacy", home=home, codec=lambda artifacts: NamespaceCodec(artifacts))

    def load(ctx: dict[str, Any]) -> dict[str, Any]:
        return {**ctx, "rows": [1, 2, 3]}

    flow.declare("load", load, source="load")
    return flow


def as_schema_1(database: Path) -> None:
    """Rewrite a history as the first nbflow wrote it: no checksums, signatures, leases."""
    conn = sqlite3.connect(database)
    conn.executescript(
        """
        DROP TABLE signatures;
        DROP TABLE leases;
        DROP TABLE cache;
        DROP TABLE file_digests;
        ALTER TABLE events DROP COLUMN crc;
        ALTER TABLE runs DROP COLUMN crc;
        PRAGMA user_version = 1;
        """
    )
    conn.close()


def test_a_legacy_history_of_this_user_is_migrated_signed_and_restorable(tmp_path: Path) -> None:
    home = tmp_path / ".nbflow"
    with make_flow(home) as flow:
        result = flow.run()
    as_schema_1(home / "nbflow.db")
    with make_flow(home) as flow:
        assert flow.home.database.migrated_from == 1
        assert flow.restore("load", result.run_id) == {"rows": [1, 2, 3]}
        assert flow.home.signatures.signed_by(flow.home.key.key_id)  # adopted once
        kinds = [e.event.kind for e in flow.home.events.read_range(result.run_id)]
        assert kinds[-2:] == ["state_completed", "run_completed"]
    conn = sqlite3.connect(home / "nbflow.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM events WHERE crc = 0").fetchone()[0] == 0
    conn.close()
    with make_flow(home) as flow:
        assert flow.home.database.migrated_from is None  # only once


def test_a_legacy_history_that_is_not_private_is_migrated_but_not_trusted(
    tmp_path: Path,
) -> None:
    home = tmp_path / ".nbflow"
    with make_flow(home) as flow:
        result = flow.run()
    as_schema_1(home / "nbflow.db")
    os.chmod(home, 0o755)  # not as nbflow made it: it may have come from elsewhere
    with make_flow(home) as flow:
        assert flow.home.database.migrated_from == 1
        with pytest.raises(NbflowError) as caught:
            flow.restore("load", result.run_id)
        assert caught.value.code == "untrusted_history"
