"""The SQLite event store: appends, conflicts, the runs index, foreign files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nbflow.errors import NbflowError
from nbflow.model import (
    Note,
    RunCompleted,
    RunStarted,
    RunStatus,
    StateCompleted,
    StateEntered,
)
from nbflow.store import Home, SqliteEventStore
from nbflow.store.database import row_checksum

SNAP = "blake3:" + "1" * 64


def started(flow: str = "flow") -> RunStarted:
    return RunStarted(op_id=flow, manifest_id=SNAP, initial_snapshot_id=SNAP)


def test_append_numbers_events_from_one_and_reads_them_back(home: Home) -> None:
    first = home.events.append(
        "r", 0, [started(), StateEntered(state_id="a", attempt=0, base_snapshot_id=SNAP)]
    )
    assert [e.seq for e in first] == [1, 2]
    home.events.append("r", 2, [StateCompleted(state_id="a", context_snapshot_id=SNAP)])
    events = home.events.read_range("r")
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.event.kind for e in events] == ["run_started", "state_entered", "state_completed"]
    assert all(e.run_id == "r" and e.at_us > 0 for e in events)
    assert [e.seq for e in home.events.read_range("r", 2, 2)] == [2]
    assert home.events.head_seq("r") == 3
    assert home.events.head_seq("other") == 0
    assert home.events.read_range("other") == []


def test_append_at_a_stale_sequence_number_is_a_conflict_and_writes_nothing(home: Home) -> None:
    home.events.append("r", 0, [started()])
    with pytest.raises(NbflowError) as caught:
        home.events.append("r", 0, [Note(text="late writer")])
    assert caught.value.code == "sequence_conflict"
    assert caught.value.details == {"expected_seq": 0, "head_seq": 1}
    with pytest.raises(NbflowError):
        home.events.append("r", 5, [Note(text="from the future")])
    assert [e.event.kind for e in home.events.read_range("r")] == ["run_started"]


def test_runs_index_follows_the_stream_in_the_same_transaction(home: Home) -> None:
    home.events.append("r", 0, [started("nb.ipynb")])
    home.events.append("r", 1, [StateEntered(state_id="train", attempt=0, base_snapshot_id=SNAP)])
    record = home.events.run("r")
    assert record is not None
    assert (record.flow_id, record.manifest_id, record.status) == ("nb.ipynb", SNAP, "running")
    assert (record.head_seq, record.last_state, record.finished_us) == (2, "train", None)
    home.events.append("r", 2, [RunCompleted(status=RunStatus.FAILED, final_snapshot_id=SNAP)])
    record = home.events.run("r")
    assert record is not None
    assert record.status == "failed"
    assert record.finished_us is not None
    assert record.finished_us >= record.started_us


def test_runs_lists_newest_first_and_filters_by_flow(home: Home) -> None:
    for index in range(5):
        home.events.append(f"run{index}", 0, [started("a" if index % 2 else "b")])
    assert [r.run_id for r in home.events.runs()] == [f"run{i}" for i in (4, 3, 2, 1, 0)]
    assert [r.run_id for r in home.events.runs(flow_id="a")] == ["run3", "run1"]
    assert len(home.events.runs(limit=2)) == 2


def test_listing_ten_thousand_runs_reads_the_index_not_the_events(home: Home) -> None:
    store = home.events
    assert isinstance(store, SqliteEventStore)
    for index in range(10_000):
        store.append(f"{index:08x}", 0, [started(f"flow{index % 7}"), Note(text="x" * 50)])
    runs = store.runs()
    assert len(runs) == 10_000
    assert runs[0].run_id == f"{9_999:08x}"
    conn = sqlite3.connect(home.layout.database)
    plans = {
        sql: " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        for sql, params in (
            ("SELECT * FROM runs ORDER BY started_us DESC LIMIT 50", ()),
            ("SELECT * FROM runs WHERE flow_id = ? ORDER BY started_us DESC", ("flow3",)),
        )
    }
    conn.close()
    for sql, plan in plans.items():
        assert "USING INDEX" in plan, (sql, plan)
        assert "TEMP B-TREE" not in plan, (sql, plan)
        assert "events" not in plan


def test_find_runs_by_prefix_treats_wildcards_literally(home: Home) -> None:
    for run_id in ("abc123", "abd456", "a_c789"):
        home.events.append(run_id, 0, [started()])
    assert home.events.find_runs("ab") == ["abc123", "abd456"]
    assert home.events.find_runs("a_") == ["a_c789"]
    assert home.events.find_runs("a%") == []


def test_a_run_is_named_by_a_unique_prefix_of_its_id(home: Home) -> None:
    for run_id in ("abc-1", "abc-2", "xyz-1"):
        home.events.append(run_id, 0, [started()])
    assert home.events.run_named("abc-2") == "abc-2"
    assert home.events.run_named("x") == "xyz-1"
    with pytest.raises(NbflowError) as ambiguous:
        home.events.run_named("abc")
    assert ambiguous.value.code == "run_ambiguous"
    assert "2 runs start with 'abc'" in ambiguous.value.message
    with pytest.raises(NbflowError) as unknown:
        home.events.run_named("nope")
    assert unknown.value.code == "run_not_found"


def test_foreign_sqlite_database_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    root = tmp_path / ".nbflow"
    root.mkdir()
    foreign = root / "nbflow.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE customers (name TEXT)")
    conn.execute("INSERT INTO customers VALUES ('Ada')")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    with pytest.raises(NbflowError) as caught:
        Home(root)
    assert caught.value.code == "store_foreign"
    assert str(foreign) in str(caught.value)
    assert foreign.read_bytes() == before


def test_file_that_is_not_sqlite_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    root = tmp_path / ".nbflow"
    root.mkdir()
    junk = root / "nbflow.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(NbflowError) as caught:
        Home(root)
    assert caught.value.code == "store_unreadable"
    assert junk.read_bytes() == b"this is not a database at all" * 100


def test_database_from_a_newer_nbflow_is_refused(tmp_path: Path) -> None:
    with Home(tmp_path / ".nbflow") as opened:
        database = opened.layout.database
    conn = sqlite3.connect(database)
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()
    with pytest.raises(NbflowError) as caught:
        Home(tmp_path / ".nbflow")
    assert caught.value.code == "store_schema_unsupported"


def test_event_changed_outside_nbflow_is_reported_not_guessed(home: Home) -> None:
    home.events.append("r", 0, [started()])
    conn = sqlite3.connect(home.layout.database)
    conn.execute("UPDATE events SET body = '{\"garbage\": 1}'")
    conn.commit()
    with pytest.raises(NbflowError) as caught:
        home.events.read_range("r")
    assert caught.value.code == "store_corrupt"  # the row's checksum no longer matches
    assert "event 1 of run r is damaged" in str(caught.value)
    # With a matching checksum (a deliberate edit), the body is still refused.
    run_id, seq, at_us, kind, body = conn.execute(
        "SELECT run_id, seq, at_us, kind, body FROM events"
    ).fetchone()
    conn.execute("UPDATE events SET crc = ?", (row_checksum(run_id, seq, at_us, kind, body),))
    conn.commit()
    conn.close()
    with pytest.raises(NbflowError) as caught:
        home.events.read_range("r")
    assert caught.value.code == "event_undecodable"


def test_history_survives_reopening(tmp_path: Path) -> None:
    with Home(tmp_path / ".nbflow") as first:
        first.events.append("r", 0, [started(), Note(text="kept")])
    with Home(tmp_path / ".nbflow") as second:
        assert [e.event.kind for e in second.events.read_range("r")] == ["run_started", "note"]


def test_a_damaged_index_entry_is_rebuilt_from_the_rows_on_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / ".nbflow"
    with Home(root) as home:
        for index in range(300):
            home.events.append(f"run{index:04d}", 0, [started("alpha" if index % 2 else "beta")])
    conn = sqlite3.connect(root / "nbflow.db")
    leaves = conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'runs_by_flow' AND pagetype = 'leaf'"
    ).fetchall()
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray((root / "nbflow.db").read_bytes())
    starts = [(page - 1) * page_size for (page,) in leaves]
    start = next(s for s in starts if data.find(b"alpha", s, s + page_size) >= 0)
    at = data.index(b"alpha", start, start + page_size)
    data[at : at + 5] = b"alphb"  # an index entry now names a flow its row does not
    (root / "nbflow.db").write_bytes(bytes(data))
    with Home(root) as home:
        assert home.database.repaired
        assert len(home.events.runs(flow_id="alpha")) == 150
        assert home.events.runs(flow_id="alphb") == []
    assert "damaged index entries were rebuilt" in caplog.text
    with Home(root) as home:
        assert home.database.repaired == []
