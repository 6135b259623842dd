"""Cache keys and reuse for notebook states: the kernel's variables (DESIGN §4 "Cache keys").

A state's key covers:
- its code, normalized, and the notebook functions and classes it uses, followed
  transitively through their globals;
- the content ids of the variables it reads, taken from the snapshot captured at the
  start of the attempt (a mutation in place by another cell changes them; big data is
  not hashed again);
- the content of its ``--inputs`` files (stat-cached), and the ``--outputs`` it declares;
- the versions of the distributions of the modules it uses.

On a hit, the variables the earlier attempt created or changed are restored from its
checkpoint, the ones it deleted are deleted, and its ``--outputs`` files are written back.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.inputtransformer2 import TransformerManager

from nbflow.cache import KeyParts, Uncacheable, code_facts, distribution_version, make_key
from nbflow.cache.facets import code_facet, inputs_facet, uses_facet
from nbflow.cache.values import ValueId, is_own_code
from nbflow.engine.caching import Keyed, Outputs, Reused
from nbflow.errors import NbflowError
from nbflow.model.manifest import Manifest
from nbflow.model.plan import StateSpec
from nbflow.snapshot.document import VariableEntry, VariableStatus
from nbflow.store.cache_index import CacheEntry
from nbflow.store.file_digests import SqliteFileDigests, expand

if TYPE_CHECKING:
    from nbflow.kernel.session import KernelSession

_TRANSFORMER = TransformerManager()  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=1024)
def python_of(source: str) -> str:
    """State code with IPython's syntax (magics, ``!shell``) turned into Python."""
    try:
        return str(_TRANSFORMER.transform_cell(source))
    except Exception:  # IPython refuses it: the code is then judged as written
        return source


def _identity(entry: VariableEntry) -> str | None:
    """What a stored variable's value is, by content; None when it is not stored."""
    if entry.status != VariableStatus.STORED:
        return None
    if entry.module is not None:
        return f"module:{entry.module}"
    return "|".join([entry.pickle or "", *entry.buffers])


def declared_inputs(
    patterns: tuple[str, ...], folder: Path, digests: SqliteFileDigests
) -> list[list[str]]:
    """``[pattern, path, digest]`` (or ``[pattern, "missing"]``) of each declared input."""
    found = []
    for pattern, path in expand(patterns, folder):
        if path is None:
            found.append([pattern, "missing"])
        else:
            name = str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)
            found.append([pattern, name, digests.digest(path)])
    return found


class KernelCache:
    """The :class:`nbflow.engine.caching.CachePolicy` of a kernel session."""

    def __init__(self, session: KernelSession) -> None:
        self._session = session

    def key(
        self, manifest: Manifest, spec: StateSpec, base_snapshot_id: str, context: Any
    ) -> Keyed:
        """See :class:`CachePolicy`."""
        document = self._session.snapshots.captured_document(base_snapshot_id)

        def value_id(name: str) -> str | None:
            entry = document.variable(name)
            return _identity(entry) if entry is not None else None

        return self._keyed(spec, value_id, namespace=context)

    def current_facets(self, spec: StateSpec) -> dict[str, str]:
        """The facets ``spec`` would have if it ran now on the kernel's variables (see
        :mod:`nbflow.cache.facets`); no value is hashed."""
        return dict(self._keyed(spec, lambda _name: "value", facets_only=True).facets)

    def _keyed(
        self,
        spec: StateSpec,
        value_id: ValueId,
        *,
        facets_only: bool = False,
        namespace: dict[str, Any] | None = None,
    ) -> Keyed:
        """``namespace``: the variables the state will run on (the kernel's own, or in a
        fan-out run its base snapshot's, restored apart)."""
        facts = code_facts(python_of(spec.source))
        facets = {"code": code_facet(spec.id, facts.normalized, spec.outputs)}
        reason: str | None = None
        inputs: list[list[str]] = []
        try:
            inputs = self._inputs(spec)  # hashed once, for the facet and the key
            facets["inputs"] = inputs_facet(inputs)
        except NbflowError as exc:
            reason = exc.message
        except OSError as exc:  # a declared input vanished or is unreadable: just run
            reason = f"its input {exc.filename!s} cannot be read ({exc.strerror})"
        live = namespace if namespace is not None else self._session.shell.user_ns
        parts = KeyParts(live, value_id)
        if facts.opaque is not None:
            reason = reason or f"it uses {facts.opaque}"
        else:
            try:
                for name in sorted(facts.reads):
                    parts.read(name)
                for module in sorted(facts.imports):
                    parts.parts[f"import:{module}"] = distribution_version(module)
                facets["uses"] = uses_facet(parts.parts)
            except Uncacheable as exc:
                reason = reason or exc.reason
        if not spec.cache:
            reason = "it is marked --no-cache"
        elif spec.always_run:
            reason = "it is marked --always-run"
        if reason is not None or facets_only:
            return Keyed(None, reason, facets)
        key = make_key(
            {
                "state": spec.id,
                "code": facts.normalized,
                "reads": parts.parts,
                "inputs": inputs,
                "outputs": list(spec.outputs),
            }
        )
        return Keyed(key, None, facets)

    def _inputs(self, spec: StateSpec) -> list[list[str]]:
        return declared_inputs(
            spec.inputs, self._session.location.folder, self._session.home.file_digests
        )

    def outputs(self, spec: StateSpec, base_snapshot_id: str, snapshot_id: str) -> Outputs:
        """The variables the attempt created, changed (among those it wrote or read) or
        deleted, and its ``--outputs`` files, stored as artifacts."""
        snapshots = self._session.snapshots
        before = snapshots.captured_document(base_snapshot_id)
        after = snapshots.captured_document(snapshot_id)
        facts = code_facts(python_of(spec.source))
        touched = facts.writes | facts.reads
        namespace = self._session.shell.user_ns
        changed, deleted = [], []
        before_by_name = before.by_name()
        for entry in after.variables:
            old = before_by_name.get(entry.name)
            if old is not None and _identity(old) == _identity(entry):
                continue
            if old is not None and entry.name not in touched:
                continue  # not the state's doing: its pickled bytes moved with a neighbour
            if (
                old is not None
                and entry.name not in facts.writes
                and is_own_code(namespace.get(entry.name), ("__main__",))
            ):
                continue  # a notebook function it only called: its code did not change
            if entry.status != VariableStatus.STORED:
                return Outputs(
                    reason=f"it sets {entry.name!r}, which cannot be saved (mark the state "
                    "--always-run if it opens connections or files)"
                )
            changed.append(entry.name)
        names_after = set(after.names())
        for entry in before.variables:
            if entry.name not in names_after:
                deleted.append(entry.name)
        files = self._store_files(spec)
        return Outputs(tuple(changed), tuple(deleted), files)

    def _store_files(self, spec: StateSpec) -> tuple[tuple[str, str], ...]:
        folder = self._session.location.folder
        artifacts = self._session.home.artifacts
        stored = []
        for _pattern, path in expand(spec.outputs, folder):
            if path is not None:
                stored.append((str(path.relative_to(folder)), artifacts.put(path.read_bytes())))
        return tuple(stored)

    def reuse(self, entry: CacheEntry, context: Any, base_snapshot_id: str) -> Reused[Any]:
        """Put the entry's outputs into the kernel's namespace; its files back on disk.

        Variables that already hold the entry's values (the same bytes in the attempt's
        base snapshot) are left alone, so that re-running an unchanged plan in the same
        kernel restores nothing. Every file is read (and checked) before anything changes,
        so that an entry that cannot be used leaves the namespace as it was."""
        session = self._session
        namespace = context if isinstance(context, dict) else session.shell.user_ns
        files = [(relative, session.home.artifacts.get(aid)) for relative, aid in entry.files]
        base = session.snapshots.document(base_snapshot_id)
        saved = session.snapshots.document(entry.snapshot_id)
        wanted = []
        for name in entry.changed:
            now, then = base.variable(name), saved.variable(name)
            if now is None or then is None or _identity(now) != _identity(then):
                wanted.append(name)
        deleted = [name for name in entry.deleted if name in namespace]
        if wanted:
            session.snapshots.restore(entry.snapshot_id, into=namespace, names=wanted)
        for name in deleted:
            namespace.pop(name, None)
        folder = session.location.folder
        for relative, data in files:
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.nbflow-tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return Reused(namespace, changed=bool(wanted or deleted))
