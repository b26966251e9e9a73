"""The render stage: a validated Spec plus Settings to the desired Kubernetes objects.

Pure and deterministic: same input, same objects in the same order. It never talks to a
cluster; images built elsewhere come in as an argument.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

from reconciler.render.builds import build_job
from reconciler.render.labels import APPLICATIONS_ANNOTATION, applications_of
from reconciler.render.settings import Settings
from reconciler.render.workloads import (
    Instance,
    Manifest,
    ServiceId,
    connector_deployment,
    instances,
    kubernetes_services,
    service_deployment,
)
from reconciler.spec import Spec
from reconciler.spec.model import Service

_KIND_ORDER = {"Job": 0, "Deployment": 1, "Service": 2}


def render(spec: Spec, settings: Settings, built: Mapping[ServiceId, str] | None = None) -> list[Manifest]:
    """Desired objects, sorted by kind, namespace and name.

    `built=None` is the preview (`mico-reconciler render`, `diff`): a build Job for every service
    built from source, annotated with the applications it gates, and its Deployment on the tag
    the build will push. With `built` (the daemon), Jobs are left to the builder and a
    source-built instance is rendered only once its image is built, pinned by digest: a failed
    build never deploys."""
    objects: list[Manifest] = []
    every = instances(spec)
    for instance in every:
        service = instance.service
        if (
            service.source is not None
            and built is not None
            and (service.short_name, service.version) not in built
        ):
            continue
        objects.append(service_deployment(instance, spec, settings, built or {}))
        objects.extend(kubernetes_services(instance, settings))
    if built is None:
        services = {(i.service.short_name, i.service.version): i.service for i in every}
        objects.extend(build_job(services[key], settings, apps) for key, apps in _gates(every).items())
    for app in spec.applications:
        if app.deploy:
            objects.extend(connector_deployment(app, c, settings) for c in app.kafka_faas_connectors)
    return sorted(objects, key=object_key)


def compose(parts: Iterable[list[Manifest]]) -> list[Manifest]:
    """One desired state from renders of disjoint sets of applications (each set rendered from
    the revision it rolls out at). An instance two parts render is one object: the first part's,
    serving the applications of both, with the replicas of both (MICO's scale-out)."""
    merged: dict[tuple[str, str, str], Manifest] = {}
    for part in parts:
        for obj in part:
            key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
            merged[key] = obj if key not in merged else _joined(merged[key], obj)
    return sorted(merged.values(), key=object_key)


def _joined(first: Manifest, other: Manifest) -> Manifest:
    joined = copy.deepcopy(first)
    annotations = joined["metadata"]["annotations"]
    members = applications_of(first) | applications_of(other)
    annotations[APPLICATIONS_ANNOTATION] = ",".join(sorted(members))
    if joined["kind"] == "Deployment":
        joined["spec"]["replicas"] += other["spec"]["replicas"]
    return joined


def builds_needed(spec: Spec) -> list[Service]:
    """Services built from source that a deployed application uses, by name and version."""
    found = {
        (i.service.short_name, i.service.version): i.service for i in instances(spec) if i.service.source
    }
    return [found[key] for key in sorted(found)]


def build_gates(spec: Spec) -> dict[ServiceId, tuple[str, ...]]:
    """Per service version built from source, the applications whose rollout waits for its build."""
    return _gates(instances(spec))


def _gates(every: Iterable[Instance]) -> dict[ServiceId, tuple[str, ...]]:
    gates: dict[ServiceId, set[str]] = {}
    for instance in every:
        if instance.service.source is not None:
            key = (instance.service.short_name, instance.service.version)
            gates.setdefault(key, set()).update(a.key for a in instance.applications)
    return {key: tuple(sorted(gates[key])) for key in sorted(gates)}


def object_key(obj: Manifest) -> tuple[int, str, str]:
    meta = obj["metadata"]
    return (_KIND_ORDER.get(obj["kind"], 99), meta.get("namespace", ""), meta["name"])


__all__ = [
    "Manifest",
    "ServiceId",
    "Settings",
    "build_gates",
    "builds_needed",
    "compose",
    "object_key",
    "render",
]
