"""Checks made before a run starts, and reading a manifest back on resume."""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import ValidationError

from nbflow.errors import ManifestError, PlanError, StorageError
from nbflow.hashing.canonical import FloatNotAllowed, NotJsonValue, canonical_json
from nbflow.hashing.code_secrets import find_secrets_in_code
from nbflow.hashing.ids import content_id
from nbflow.hashing.secrets import SecretFinding, find_secrets
from nbflow.model.config import FanOutJoin, RunConfig
from nbflow.model.manifest import Manifest
from nbflow.model.plan import Plan
from nbflow.store.artifacts import ArtifactStore


def validate_execution_mode(config: RunConfig) -> None:
    """Refuse execution modes the engine does not implement."""
    if isinstance(config.execution_mode, FanOutJoin):
        raise PlanError(
            "unsupported_execution_mode",
            "execution mode fan_out_join is not supported yet",
            name="fan_out_join",
            hint="use the sequential execution mode",
        )


def manifest_bytes(manifest: Manifest) -> bytes:
    """The canonical bytes of ``manifest``, refusing floats, non-JSON values and secrets."""
    document: Any = manifest.model_dump(mode="python")
    try:
        data = canonical_json(document)
    except (FloatNotAllowed, NotJsonValue) as exc:
        raise ManifestError(
            "manifest_not_canonical",
            f"the manifest cannot be hashed canonically: {exc}",
            name=exc.path,
            hint="encode parameters with nbflow.model.parameters.encode_parameters",
        ) from exc
    findings = _secrets_of(data)
    if findings:
        raise ManifestError(
            "secrets_detected",
            "the manifest would persist secrets: "
            + "; ".join(f"{f.kind} at {f.where}" for f in findings),
            name=findings[0].where,
            hint="read credentials from the environment or a secrets manager inside the state",
            details={"findings": [{"kind": f.kind, "where": f.where} for f in findings]},
        )
    return data


@functools.lru_cache(maxsize=16)
def _secrets_of(data: bytes) -> tuple[SecretFinding, ...]:
    """The findings for canonical manifest bytes: a start checks the manifest it stores,
    and a plan of hundreds of states costs tens of milliseconds to read as code."""
    return tuple(manifest_secrets(json.loads(data)))


def manifest_secrets(document: dict[str, Any]) -> list[SecretFinding]:
    """Suspected secrets in a manifest: state code read as code, everything else as data."""
    findings: list[SecretFinding] = []
    states = document.get("plan", {}).get("states", ())
    for index, state in enumerate(states):
        findings += find_secrets_in_code(state["source"], f"$.plan.states[{index}].source")
    without_code = {
        **document,
        "plan": {**document["plan"], "states": [{**s, "source": ""} for s in states]},
    }
    return findings + find_secrets(without_code)


def manifest_id_of(manifest: Manifest) -> str:
    """The manifest id: the content id of its canonical bytes."""
    return content_id(manifest_bytes(manifest))


def check_start_contract(
    manifest: Manifest, manifest_id: str, plan: Plan, run_config: RunConfig
) -> None:
    """Refuse a start whose parts disagree with each other (DESIGN §3, Start)."""
    if manifest_id_of(manifest) != manifest_id:
        raise ManifestError(
            "manifest_id_mismatch",
            f"manifest id {manifest_id} is not the hash of the manifest",
            name=manifest_id,
            hint="compute the id with nbflow.engine.manifest_id_of(manifest)",
        )
    if manifest.flow_id != plan.flow_id:
        raise ManifestError(
            "manifest_op_id_mismatch",
            f"the manifest is for flow {manifest.flow_id!r} but the plan for {plan.flow_id!r}",
            name=plan.flow_id,
        )
    if manifest.plan != plan:
        raise ManifestError(
            "manifest_plan_mismatch",
            "the plan differs from the plan inside the manifest",
            name=plan.flow_id,
            hint="start the run with the manifest's own plan",
        )
    if manifest.run_config != run_config:
        raise ManifestError(
            "run_config_mismatch",
            "the run config differs from the run config inside the manifest",
            name=manifest.flow_id,
        )


def read_manifest(artifacts: ArtifactStore, manifest_id: str, *, trusted: bool = True) -> Manifest:
    """Read a manifest back, refusing bytes that do not hash to ``manifest_id``.

    A manifest's states are code that a resume runs, so by default it must be signed by
    this user (``untrusted_history`` otherwise). ``trusted=False`` reads it only to look
    at it (counting states for a picture); nothing of it may then be run.
    """
    if trusted:
        artifacts.require_signed(manifest_id, "manifest")
    data = artifacts.raw(manifest_id)
    if data is None:
        raise StorageError(
            "manifest_not_found",
            f"manifest {manifest_id} is not in the store",
            name=manifest_id,
            hint="the .nbflow folder is incomplete; start a new run",
        )
    if content_id(data) != manifest_id:
        raise ManifestError(
            "manifest_corrupt",
            f"manifest {manifest_id} is damaged: its bytes do not match its hash",
            name=manifest_id,
            hint="the run cannot be resumed; start a new run (nothing was changed)",
        )
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise ManifestError(
            "manifest_deserialize_failed",
            f"manifest {manifest_id} is not a manifest this nbflow understands",
            name=manifest_id,
            details={"errors": exc.error_count()},
        ) from exc


def store_manifest(artifacts: ArtifactStore, manifest: Manifest) -> str:
    """Write ``manifest`` as an artifact (after the canonical and secret checks); its id."""
    return artifacts.put_signed(manifest_bytes(manifest))
