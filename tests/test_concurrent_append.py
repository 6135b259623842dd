"""Two processes append to one run at the same sequence number."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

from nbflow.errors import SequenceConflictError
from nbflow.model import Note, RunStarted
from nbflow.store import Home

ROUNDS = 25
SNAP = "blake3:" + "2" * 64


def writer(home_dir: str, name: str, barrier: Barrier, results: multiprocessing.Queue[str]) -> None:
    with Home(home_dir) as home:
        for round_index in range(ROUNDS):
            barrier.wait()
            # Both writers read the same head before either appends.
            head = home.events.head_seq("shared")
            barrier.wait()
            try:
                home.events.append("shared", head, [Note(text=f"{name} round {round_index}")])
                results.put(f"{round_index} ok {name}")
            except SequenceConflictError as exc:
                results.put(f"{round_index} {exc.code} {name}")
            barrier.wait()


def test_exactly_one_of_two_processes_wins_each_race(tmp_path: Path) -> None:
    home_dir = tmp_path / ".nbflow"
    with Home(home_dir) as home:
        home.events.append(
            "shared", 0, [RunStarted(op_id="f", manifest_id=SNAP, initial_snapshot_id=SNAP)]
        )
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    results: multiprocessing.Queue[str] = context.Queue()
    processes = [
        context.Process(target=writer, args=(str(home_dir), name, barrier, results))
        for name in ("left", "right")
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in range(2 * ROUNDS)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    by_round: dict[int, list[str]] = {}
    for line in outcomes:
        round_text, verdict, _ = line.split()
        by_round.setdefault(int(round_text), []).append(verdict)
    assert len(by_round) == ROUNDS
    for verdicts in by_round.values():
        assert sorted(verdicts) == ["ok", "sequence_conflict"]

    with Home(home_dir) as home:
        events = home.events.read_range("shared")
    assert [e.seq for e in events] == list(range(1, ROUNDS + 2))  # no gap, no duplicate
    texts = [e.event.text for e in events[1:]]  # type: ignore[union-attr]
    assert [int(t.split()[-1]) for t in texts] == list(range(ROUNDS))


def test_a_reader_never_sees_a_stream_longer_than_its_index_while_a_writer_appends(
    tmp_path: Path,
) -> None:
    import threading

    from nbflow.model import Note, RunStarted
    from nbflow.store import Home

    snap = "blake3:" + "1" * 64
    root = tmp_path / ".nbflow"
    with Home(root) as writer_home:
        writer_home.events.append(
            "r", 0, [RunStarted(op_id="f", manifest_id=snap, initial_snapshot_id=snap)]
        )
    done = threading.Event()

    def write() -> None:
        with Home(root) as home:
            for seq in range(1, 400):
                home.events.append("r", seq, [Note(text=f"note {seq}")])
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    with Home(root) as reader:
        while not done.is_set() or reads < 5:
            stream = reader.events.read_range("r")  # never store_corrupt mid-append
            assert [e.seq for e in stream] == list(range(1, len(stream) + 1))
            reads += 1
    writer.join()
    assert reads >= 5
