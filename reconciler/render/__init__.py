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
from reconciler.spec.model import Service

_KIND_ORDER = {"Job": 0, "Deployment": 1, "Service": 2}


def render(spec: Spec, settings: Settings, built: Mapping[ServiceId, str] | None = None) -> list[Manifest]:
    """Desired objects, sorted by kind, namespace and name.

    `built=None` is the preview (`mico-reconciler render`, `diff`): a build Job for every service
    built from source and its Deployment on the tag the build will push. With `built` (the
    daemon), Jobs are left to the builder and a source-built instance is rendered only once its
    image is built, pinned by digest: a failed build never deploys."""
    objects: list[Manifest] = []
    needs_build = {}
    for instance in instances(spec):
        service = instance.service
        key = (service.short_name, service.version)
        if service.source is not None:
            needs_build[key] = service
            if built is not None and key not in built:
                continue
        objects.append(service_deployment(instance, spec, settings, built or {}))
        objects.extend(kubernetes_services(instance, settings))
    if built is None:
        objects.extend(build_job(service, settings) for service in needs_build.values())
    for app in spec.applications:
        if app.deploy:
            objects.extend(connector_deployment(app, c, settings) for c in app.kafka_faas_connectors)
    return sorted(objects, key=object_key)


def builds_needed(spec: Spec) -> list[Service]:
    """Services built from source that a deployed application uses, by name and version."""
    found = {
        (i.service.short_name, i.service.version): i.service for i in instances(spec) if i.service.source
    }
    return [found[key] for key in sorted(found)]


def object_key(obj: Manifest) -> tuple[int, str, str]:
    meta = obj["metadata"]
    return (_KIND_ORDER.get(obj["kind"], 99), meta.get("namespace", ""), meta["name"])


__all__ = ["Manifest", "Settings", "builds_needed", "object_key", "render"]
