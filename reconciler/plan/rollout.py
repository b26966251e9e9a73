"""Atomic application rollout: which applications move to the new revision and which stay. Pure.

MICO created or updated an application's Kubernetes objects only after all of its builds had
finished. So an application whose builds have all succeeded is released at the new revision;
one still waiting for a build (starting, failed, backing off) is held at the revision it last
rolled out at and keeps exactly that revision's objects, or nothing if it never rolled out.
An instance it shares with released applications keeps its previous contribution (replicas).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.plan import Manifest, ObjectRef
from reconciler.plan.builds import BuildDecision, BuildState
from reconciler.render import ServiceId
from reconciler.render.labels import applications_of
from reconciler.spec import Spec


@dataclass(frozen=True)
class Held:
    """An application held back, and what it keeps."""

    #: The builds it waits for: service, version, job, state (building or failed), reason, logTail.
    builds: tuple[Mapping[str, Any], ...]
    #: The revision it last rolled out at (None: never).
    revision: str | None = None
    #: That revision's config with only this application, and the images its builds pinned;
    #: None when it never rolled out or that revision cannot be rendered again (see `problem`).
    config: Spec | None = None
    images: Mapping[ServiceId, str] = field(default_factory=dict)
    #: Why the previous revision cannot be rendered; its objects are then kept as they are.
    problem: str | None = None

    def status(self) -> dict[str, Any]:
        """What `status` shows about the hold."""
        return {"revision": self.revision, "problem": self.problem}


def waiting(
    spec: Spec, decisions: Mapping[ServiceId, BuildDecision]
) -> dict[str, tuple[dict[str, Any], ...]]:
    """Deployed applications (`shortName@version`) waiting for a build, with the builds and why."""
    found: dict[str, list[dict[str, Any]]] = {}
    for app in spec.applications:
        if not app.deploy:
            continue
        for entry in app.services:
            service = spec.service(entry.short_name, entry.version)
            decision = decisions.get((service.short_name, service.version))
            if decision is None or decision.state == BuildState.READY:
                continue
            failure = decision.last_failure or {}
            found.setdefault(app.key, []).append(
                {
                    "service": service.short_name,
                    "version": service.version,
                    "job": decision.job,
                    "state": "failed" if failure else "building",
                    "reason": failure.get("reason") or decision.reason,
                    "logTail": failure.get("log_tail"),
                }
            )
    return {app: tuple(builds) for app, builds in found.items()}


#: The problem of a held application whose objects exist but whose rollout was never recorded.
NO_ROLLOUT = "no rollout of it is recorded (deployed before an upgrade?); its objects are kept as they are"


def keep_live(
    held: Mapping[str, Held], desired: list[Manifest], live: Mapping[ObjectRef, Manifest]
) -> tuple[dict[str, Held], list[Manifest]]:
    """Held applications whose previous revision cannot be rendered again keep their live objects
    exactly: a desired object that serves one of them live stays as it is (an instance shared
    with a released application keeps their replicas). Their other objects are never desired,
    and the engine retains them."""
    frozen = {app for app, hold in held.items() if hold.config is None}
    if not frozen:
        return dict(held), desired
    kept = {ref for ref, obj in live.items() if applications_of(obj) & frozen}
    present = {app for obj in live.values() for app in applications_of(obj)}
    return (
        {
            app: replace(hold, problem=NO_ROLLOUT)
            if hold.config is None and hold.revision is None and app in present
            else hold
            for app, hold in held.items()
        },
        [live[ObjectRef.of(obj)] if ObjectRef.of(obj) in kept else obj for obj in desired],
    )


def rollouts(
    spec: Spec,
    revision: str,
    held: Collection[str],
    incomplete: Collection[str],
    recorded: Mapping[str, str],
) -> dict[str, str | None]:
    """The changes to remember: every released application whose objects all applied now runs at
    `revision`; an application no longer deployed is forgotten (None), so adding it again later
    never brings back an old revision."""
    deployed = {a.key for a in spec.applications if a.deploy}
    changes: dict[str, str | None] = {app: None for app in recorded if app not in deployed}
    for app in sorted(deployed - set(held) - set(incomplete)):
        if recorded.get(app) != revision:
            changes[app] = revision
    return changes
