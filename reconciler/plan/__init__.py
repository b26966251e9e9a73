"""The plan stage: desired vs actual objects into actions, each with its reason. Pure.

Ownership is decided here and nowhere else: an object is this reconciler's only when it
carries the managed-by label *and* the tracking annotation naming this reconciler instance,
so a copied label or a second reconciler never leads to a change or a deletion. An object
counts as changed only when a field the reconciler sets differs (desired is compared as a
subset of live), so server-side defaults never cause endless updates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from reconciler.render.labels import MANAGED_BY, MANAGED_BY_LABEL

Manifest = dict[str, Any]

TRACKING_ANNOTATION = "ust.mico/tracking-id"
HASH_ANNOTATION = "ust.mico/desired-hash"


class Verb(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Outcome(StrEnum):
    """The closed vocabulary of what happened to an object; metric labels and history use it."""

    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    SKIPPED = "skipped"
    FAILED = "failed"


class ObjectRef(NamedTuple):
    """A tuple, not a dataclass: a run makes one per object and hashes it often."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Manifest) -> ObjectRef:
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Action:
    ref: ObjectRef
    verb: Verb
    reason: str
    manifest: Manifest | None = None
    drift: bool = False


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    unchanged: tuple[ObjectRef, ...]
    #: Objects changed or deleted outside the reconciler since it last applied them.
    drift: tuple[Action, ...]
    #: Desired objects whose name is taken by an object this reconciler does not own.
    foreign: tuple[ObjectRef, ...]
    #: Deletions held back by the prune guard.
    prune_refused: tuple[Action, ...] = field(default=())
    #: Objects compared field by field (the others were known unchanged): the work done.
    compared: int = 0


def tracking_id(*, repo: str, path: str, namespace: str) -> str:
    """Names this reconciler instance: config repository, path and target namespace."""
    return f"{repo}//{path.strip('/') or '.'}@{namespace}"


def desired_hash(obj: Manifest) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def stamp(
    objects: Iterable[Manifest], tracking: str, memo: dict[int, tuple[Manifest, Manifest]] | None = None
) -> list[Manifest]:
    """Desired objects with the tracking annotation and the hash of what is applied. With `memo`
    (the daemon's, between runs), an object stamped before, the same object, is not hashed
    again: the memo then holds exactly the objects of this call."""
    stamped = []
    kept: dict[int, tuple[Manifest, Manifest]] = {}
    for obj in objects:
        found = None if memo is None else memo.get(id(obj))
        if found is None:  # the memo holds `obj` itself, so its id cannot name another object
            meta = obj["metadata"]
            annotations = {**meta.get("annotations", {}), TRACKING_ANNOTATION: tracking}
            body = {**obj, "metadata": {**meta, "annotations": annotations}}
            annotations[HASH_ANNOTATION] = desired_hash(body)
            found = (obj, body)
        kept[id(obj)] = found
        stamped.append(found[1])
    if memo is not None:
        memo.clear()
        memo.update(kept)
    return stamped


def owned(obj: Manifest, tracking: str) -> bool:
    meta = obj.get("metadata", {})
    return (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY and (
        meta.get("annotations") or {}
    ).get(TRACKING_ANNOTATION) == tracking


def contains(live: Any, desired: Any) -> bool:
    """Whether every field of `desired` has the same value in `live` (server defaults ignored)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(contains(live.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def compute(
    desired: list[Manifest],
    actual: Mapping[ObjectRef, Manifest],
    *,
    tracking: str,
    last_applied: Mapping[ObjectRef, str],
    self_heal: bool = True,
    max_prune_fraction: float = 0.5,
    force_prune: bool = False,
    verified: Mapping[ObjectRef, tuple[str, str]] | None = None,
    retain: Collection[ObjectRef] = (),
) -> Plan:
    """`desired` must be stamped; `actual` holds every live object the observe stage listed.
    `verified` maps objects found unchanged before to (desired hash, resourceVersion): an object
    still at that version with that hash is unchanged without comparing it field by field.
    `retain` are owned objects kept although no longer desired (an application waiting for a
    build keeps whatever it had deployed)."""
    verified = verified or {}
    compared = 0
    actions: list[Action] = []
    drift: list[Action] = []
    unchanged: list[ObjectRef] = []
    foreign: list[ObjectRef] = []
    wanted = {ObjectRef.of(obj): obj for obj in desired}
    for ref, obj in wanted.items():
        live = actual.get(ref)
        digest = obj["metadata"]["annotations"][HASH_ANNOTATION]
        if live is None:
            if last_applied.get(ref) == digest:
                drift.append(Action(ref, Verb.CREATE, "deleted outside the reconciler", obj, drift=True))
            else:
                actions.append(Action(ref, Verb.CREATE, "new in the config", obj))
        elif not owned(live, tracking):
            foreign.append(ref)
        elif verified.get(ref) == (digest, live["metadata"].get("resourceVersion")):
            unchanged.append(ref)
        else:
            compared += 1
            if contains(live, obj):
                unchanged.append(ref)
            elif live["metadata"].get("annotations", {}).get(HASH_ANNOTATION) == digest:
                reason = f"changed outside the reconciler: {_difference(live, obj)}"
                drift.append(Action(ref, Verb.UPDATE, reason, obj, drift=True))
            else:
                actions.append(
                    Action(ref, Verb.UPDATE, f"changed in the config: {_difference(live, obj)}", obj)
                )
    if self_heal:
        actions.extend(drift)
    owned_refs = [ref for ref, obj in actual.items() if owned(obj, tracking)]
    deletions = [
        Action(ref, Verb.DELETE, "no longer in the config")
        for ref in sorted(owned_refs)
        if ref not in wanted and ref not in retain
    ]
    refused: list[Action] = []
    if deletions and not force_prune and len(deletions) > max_prune_fraction * len(owned_refs):
        refused = deletions
    else:
        actions.extend(reversed(deletions))
    return Plan(tuple(actions), tuple(unchanged), tuple(drift), tuple(foreign), tuple(refused), compared)


def _difference(live: Manifest, desired: Manifest) -> str:
    """The first field that differs other than the hash annotation (which always does)."""

    def strip(obj: Manifest) -> Manifest:
        annotations = {
            k: v for k, v in obj["metadata"].get("annotations", {}).items() if k != HASH_ANNOTATION
        }
        return {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}

    return _first_difference(strip(live), strip(desired))


def _first_difference(live: Any, desired: Any, path: str = "") -> str:
    """The first field that differs, e.g. `spec.replicas: 3 -> 2`, for the action's reason."""
    if isinstance(desired, dict) and isinstance(live, dict):
        for key, value in desired.items():
            if not contains(live.get(key), value):
                return _first_difference(live.get(key), value, f"{path}.{key}" if path else key)
    elif isinstance(desired, list) and isinstance(live, list) and len(live) == len(desired):
        for index, (a, b) in enumerate(zip(live, desired, strict=True)):
            if not contains(a, b):
                return _first_difference(a, b, f"{path}[{index}]")
    return f"{path}: {_short(live)} -> {_short(desired)}"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if value is not None else "absent"
    return text if len(text) <= 60 else text[:57] + "..."
