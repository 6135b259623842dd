"""The artifact store on real files and a real SQLite database."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from nbflow.errors import NbflowError
from nbflow.hashing import content_id
from nbflow.store import ArtifactStore, Home, HomeLayout, prepare_home
from nbflow.store.artifacts import INLINE_MAX

BIG = INLINE_MAX + 1


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_is_private_with_gitignore_and_cachedir_tag(home: Home) -> None:
    home.artifacts.put(os.urandom(BIG))
    root = home.root
    assert mode_of(root) == 0o700
    assert (root / ".gitignore").read_text() == "*\n"
    assert (
        (root / "CACHEDIR.TAG")
        .read_text()
        .startswith("Signature: 8a477f597d28d172789f06886806bc55")
    )
    for path in root.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert mode_of(path) == expected, path


def test_home_modes_hold_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with Home(tmp_path / ".nbflow") as opened:
            opened.artifacts.put(os.urandom(BIG))
    finally:
        os.umask(old)
    for path in (tmp_path / ".nbflow").rglob("*"):
        assert mode_of(path) == (0o700 if path.is_dir() else 0o600), path


def test_database_runs_in_wal_mode_with_synchronous_full(home: Home) -> None:
    pragmas = home.events.pragmas()  # type: ignore[attr-defined]
    assert pragmas == {"journal_mode": "wal", "synchronous": 2}
    conn = sqlite3.connect(home.layout.database)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent
    conn.close()


@pytest.mark.parametrize("size", [0, 10, INLINE_MAX, BIG, 3 * 1024 * 1024])
def test_put_get_round_trip_and_dedupe(home: Home, size: int) -> None:
    data = os.urandom(size)
    artifact_id = home.artifacts.put(data)
    assert artifact_id == content_id(data)
    assert home.artifacts.get(artifact_id) == data
    assert home.artifacts.size(artifact_id) == size
    assert home.artifacts.put(data) == artifact_id
    assert list(home.artifacts.ids()).count(artifact_id) == 1


def test_large_artifacts_are_files_small_ones_are_in_the_database(home: Home) -> None:
    small = home.artifacts.put(b"x" * 100)
    large = home.artifacts.put(b"y" * BIG)
    assert home.artifacts.is_file(large)
    assert not home.artifacts.is_file(small)
    conn = sqlite3.connect(home.layout.database)
    stored = conn.execute("SELECT id FROM blobs").fetchall()
    conn.close()
    assert [row[0] for row in stored] == [small]


def test_put_buffers_stores_the_concatenation(home: Home) -> None:
    parts: list[bytes | memoryview] = [os.urandom(BIG), memoryview(os.urandom(1000)), b"tail"]
    artifact_id = home.artifacts.put_buffers(parts)
    whole = b"".join(bytes(p) for p in parts)
    assert artifact_id == content_id(whole)
    assert home.artifacts.get(artifact_id) == whole


def test_open_mapped_verifies_and_maps(home: Home) -> None:
    data = os.urandom(BIG * 4)
    artifact_id = home.artifacts.put(data)
    mapped = home.artifacts.open_mapped(artifact_id)
    assert bytes(mapped) == data


def flip_file_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    os.chmod(path, 0o600)
    path.write_bytes(bytes(raw))


def test_flipped_byte_in_file_artifact_fails_naming_the_id(home: Home) -> None:
    data = os.urandom(BIG)
    artifact_id = home.artifacts.put(data)
    flip_file_byte(home.artifacts.path_of(artifact_id), BIG // 2)
    for read in (home.artifacts.get, home.artifacts.open_mapped):
        with pytest.raises(NbflowError) as caught:
            read(artifact_id)
        assert caught.value.code == "artifact_corrupt"
        assert artifact_id in str(caught.value)
    assert home.artifacts.verify(artifact_id) is False


def test_flipped_byte_in_database_artifact_fails_naming_the_id(home: Home) -> None:
    artifact_id = home.artifacts.put(b"small artifact kept in the database")
    conn = sqlite3.connect(home.layout.database)
    data = bytearray(conn.execute("SELECT data FROM blobs").fetchone()[0])
    data[3] ^= 0x01
    conn.execute("UPDATE blobs SET data = ?", (bytes(data),))
    conn.commit()
    conn.close()
    with pytest.raises(NbflowError) as caught:
        home.artifacts.get(artifact_id)
    assert caught.value.code == "artifact_corrupt"
    assert artifact_id in str(caught.value)
    assert home.artifacts.verify(artifact_id) is False


def test_missing_artifact_is_reported_by_id(home: Home) -> None:
    missing = content_id(b"never stored")
    with pytest.raises(NbflowError) as caught:
        home.artifacts.get(missing)
    assert caught.value.code == "artifact_not_found"
    assert missing in str(caught.value)
    with pytest.raises(NbflowError) as bad:
        home.artifacts.get("sha1:abc")
    assert bad.value.code == "artifact_id_invalid"


def test_writes_leave_no_temp_files_and_stale_ones_are_removed(tmp_path: Path) -> None:
    layout = prepare_home(tmp_path / ".nbflow")
    store = ArtifactStore(layout)
    store.put(os.urandom(BIG))
    assert list(layout.tmp.iterdir()) == []
    # A writer that died mid-write (pid that cannot exist) left a temp file behind;
    # one of a live process (ours) must be kept.
    dead = layout.tmp / "99999999-deadbeef.tmp"
    dead.write_bytes(b"half an artifact")
    alive = layout.tmp / f"{os.getpid()}-cafe.tmp"
    alive.write_bytes(b"being written")
    ArtifactStore(layout)
    assert not dead.exists()
    assert alive.exists()


def test_batch_holds_small_artifacts_until_the_next_event_commit(home: Home) -> None:
    from nbflow.model import Note

    with home.artifacts.batch():
        artifact_id = home.artifacts.put(b"pending until the event commits")
        assert home.artifacts.get(artifact_id)  # readable by its writer meanwhile
        with Home(home.root) as other:
            assert not other.artifacts.exists(artifact_id)  # not durable yet
        home.events.append("run", 0, [Note(text="references it")])
        with Home(home.root) as other:
            assert other.artifacts.get(artifact_id) == b"pending until the event commits"


def test_batch_exit_makes_pending_artifacts_durable(home: Home) -> None:
    with home.artifacts.batch():
        artifact_id = home.artifacts.put(b"flushed at the end of the block")
    with Home(home.root) as other:
        assert other.artifacts.exists(artifact_id)


def test_home_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permission bits; a file in the way is the failure root also meets
        blocker = tmp_path / "blocked"
        blocker.write_text("not a folder")
        with pytest.raises(NbflowError) as caught:
            Home(blocker / ".nbflow")
        assert caught.value.code in {"home_not_writable", "home_not_a_directory"}
        assert str(blocker) in str(caught.value)
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(NbflowError) as caught:
            Home(locked / ".nbflow")
        assert caught.value.code == "home_not_writable"


def test_layout_paths(tmp_path: Path) -> None:
    layout = HomeLayout(tmp_path)
    assert layout.objects == tmp_path / "objects"
    assert layout.database == tmp_path / "nbflow.db"


def test_wal_is_preallocated_on_open_without_growing_the_database(tmp_path: Path) -> None:
    from nbflow.model import Note
    from nbflow.store.database import WAL_PREALLOCATE_BYTES

    root = tmp_path / ".nbflow"
    for reopen in range(2):  # SQLite deletes the WAL when the last connection closes
        with Home(root) as opened:
            wal = opened.layout.database.with_name("nbflow.db-wal")
            assert wal.stat().st_size >= WAL_PREALLOCATE_BYTES * 9 // 10
            assert opened.layout.database.stat().st_size < 256 * 1024
            opened.events.append(f"run{reopen}", 0, [Note(text="kept")])
    with Home(root) as opened:
        assert [r.run_id for r in opened.events.runs()] == ["run1", "run0"]


def test_raw_small_reads_many_at_once_pending_ones_included(home: Home) -> None:
    """More ids than one query takes: every stored small one comes back, files and
    unknown ids do not, and a batch's pending artifacts are found too."""
    stored = {home.artifacts.put(f"small {i}".encode()): f"small {i}".encode() for i in range(1200)}
    big = home.artifacts.put(os.urandom(BIG))
    unknown = content_id(b"never stored")
    with home.artifacts.batch():
        pending = home.artifacts.put(b"held until the batch ends")
        found = home.artifacts.raw_small([*stored, big, unknown, pending])
    assert found == {**stored, pending: b"held until the batch ends"}
    with pytest.raises(NbflowError):
        home.artifacts.raw_small(["not an id"])
