"""Replay (DESIGN §3 "Replay"): a run started again from another run's manifest and
initial snapshot, and, when it completes, whether it reproduced that run's final state.
"""

from __future__ import annotations

from nbflow.engine.contract import read_manifest, store_manifest
from nbflow.engine.history import RunHistory
from nbflow.model.events import ReplayChecked
from nbflow.model.manifest import Manifest
from nbflow.store.artifacts import ArtifactStore


def replay_manifest(
    artifacts: ArtifactStore, run_id: str, original: RunHistory
) -> tuple[Manifest, str, str]:
    """For a replay of ``run_id`` (whose history is ``original``): its manifest with
    ``replay_of`` set (stored), that manifest's id, and the snapshot ``run_id`` started
    from."""
    manifest = read_manifest(artifacts, original.started.manifest_id)
    config = manifest.run_config.model_copy(update={"replay_of": run_id})
    replay = manifest.model_copy(update={"run_config": config})
    return replay, store_manifest(artifacts, replay), original.started.initial_snapshot_id


def check_replay(
    codec: object, run_id: str, replayed: RunHistory, snapshot_id: str
) -> ReplayChecked:
    """Whether a replay of ``run_id`` (whose history is ``replayed``) that ended on
    ``snapshot_id`` reproduced it: the same snapshot, or no variable that differs, when
    ``codec`` can tell (its ``differing``)."""
    ended = replayed.run_completed
    original = ended.final_snapshot_id if ended is not None else None
    if original == snapshot_id:
        return ReplayChecked(of_run=run_id, reproduced=True, same_snapshot=True)
    compare = getattr(codec, "differing", None)
    if original is None or compare is None:  # the replayed run had not completed
        return ReplayChecked(of_run=run_id, reproduced=False)
    differing = tuple(compare(original, snapshot_id))
    return ReplayChecked(of_run=run_id, reproduced=not differing, differing=differing)
