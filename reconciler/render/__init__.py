"""The render stage: a validated Spec plus Settings to the desired Kubernetes objects.

Pure and deterministic: same input, same objects in the same order. It never talks to a
cluster; images built elsewhere come in as an argument.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.render.builds import build_job
from reconciler.render.settings import Settings
from reconciler.render.workloads import (
    Manifest,
    ServiceId,
    connector_deployment,
    instances,
    kubernetes_services,
    service_deployment,
)
from reconciler.spec import Spec

_KIND_ORDER = {"Job": 0, "Deployment": 1, "Service": 2}


def render(spec: Spec, settings: Settings, built: Mapping[ServiceId, str] | None = None) -> list[Manifest]:
    """Desired objects, sorted by kind, namespace and name."""
    built = built or {}
    objects: list[Manifest] = []
    needs_build = {}
    for instance in instances(spec):
        objects.append(service_deployment(instance, spec, settings, built))
        objects.extend(kubernetes_services(instance, settings))
        if instance.service.source is not None:
            needs_build[(instance.service.short_name, instance.service.version)] = instance.service
    objects.extend(build_job(service, settings) for service in needs_build.values())
    for app in spec.applications:
        if app.deploy:
            objects.extend(connector_deployment(app, c, settings) for c in app.kafka_faas_connectors)
    return sorted(objects, key=object_key)


def object_key(obj: Manifest) -> tuple[int, str, str]:
    meta = obj["metadata"]
    return (_KIND_ORDER.get(obj["kind"], 99), meta.get("namespace", ""), meta["name"])


__all__ = ["Manifest", "Settings", "object_key", "render"]
