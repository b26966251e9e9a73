"""The render stage: a validated Spec plus Settings to the desired Kubernetes objects.

Pure and deterministic: same input, same objects in the same order. It never talks to a
cluster; images built elsewhere come in as an argument.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reconciler.render.builds import build_job
from reconciler.render.labels import APPLICATIONS_ANNOTATION, applications_of
from reconciler.render.settings import Settings
from reconciler.render.workloads import (
    Instance,
    Manifest,
    ServiceId,
    connected,
    connector_deployment,
    instances,
    kubernetes_services,
    service_deployment,
)
from reconciler.spec import Spec
from reconciler.spec.model import Application, KafkaFaasConnector, Service

_KIND_ORDER = {"Job": 0, "Deployment": 1, "Service": 2}


def render(spec: Spec, settings: Settings, built: Mapping[ServiceId, str] | None = None) -> list[Manifest]:
    """Desired objects, sorted by kind, namespace and name.

    `built=None` is the preview (`mico-reconciler render`, `diff`): a build Job for every service
    built from source, annotated with the applications it gates, and its Deployment on the tag
    the build will push. With `built` (the daemon), Jobs are left to the builder and a
    source-built instance is rendered only once its image is built, pinned by digest: a failed
    build never deploys."""
    return Renderer(settings).render(spec, built)


class Renderer:
    """`render` with memory, for the daemon: an instance (or connector) whose inputs are the very
    objects it was rendered from last time (the spec loader keeps the elements of an unchanged
    file) is not rendered again. The result equals a fresh `render`; the objects handed out are
    shared between renders, so no stage may change them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._memo: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Manifest]]] = {}
        #: Objects rendered by `render` (not taken from memory), over the renderer's life: what a
        #: test and the engine count (held applications' previous revisions render apart).
        self.objects_rendered = 0
        self._instances: tuple[Spec, list[Instance]] | None = None

    def instances(self, spec: Spec) -> list[Instance]:
        """The instances of a spec, once per spec (the engine asks for builds, gates and render)."""
        if self._instances is None or self._instances[0] is not spec:
            self._instances = (spec, instances(spec))
        return self._instances[1]

    def render(self, spec: Spec, built: Mapping[ServiceId, str] | None = None) -> list[Manifest]:
        settings = self.settings
        memo: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Manifest]]] = {}
        objects: list[Manifest] = []
        every = self.instances(spec)
        for instance in every:
            service = instance.service
            identity = (service.short_name, service.version)
            if service.source is not None and built is not None and identity not in built:
                continue
            image = None if built is None else built.get(identity)
            inputs = (service, instance.entry, *instance.applications, *connected(instance, spec))
            key = ("instance", *map(id, inputs), instance.replicas, image, built is None)
            make = functools.partial(_instance_objects, instance, spec, settings, built)
            objects += self._remembered(memo, key, inputs, make)
        if built is None:
            services = {(i.service.short_name, i.service.version): i.service for i in every}
            objects.extend(build_job(services[key], settings, apps) for key, apps in _gates(every).items())
        for app in spec.applications:
            if app.deploy:
                for connector in app.kafka_faas_connectors:
                    key = ("connector", id(app), id(connector))
                    make = functools.partial(_connector_objects, app, connector, settings)
                    objects += self._remembered(memo, key, (app, connector), make)
        self._memo = memo  # what the latest spec used stays; the rest is forgotten
        return sorted(objects, key=object_key)

    def _remembered(
        self,
        memo: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Manifest]]],
        key: tuple[Any, ...],
        inputs: tuple[Any, ...],
        make: Callable[[], list[Manifest]],
    ) -> list[Manifest]:
        """Keyed by the inputs' ids, which stay theirs while the entry keeps the inputs alive."""
        found = self._memo.get(key)
        if found is None:
            found = (inputs, make())
            self.objects_rendered += len(found[1])
        memo[key] = found
        return found[1]


def _instance_objects(
    instance: Instance, spec: Spec, settings: Settings, built: Mapping[ServiceId, str] | None
) -> list[Manifest]:
    deployment = service_deployment(instance, spec, settings, built or {})
    return [deployment, *kubernetes_services(instance, settings)]


def _connector_objects(app: Application, connector: KafkaFaasConnector, settings: Settings) -> list[Manifest]:
    return [connector_deployment(app, connector, settings)]


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


def builds_needed(spec: Spec, every: Iterable[Instance] | None = None) -> list[Service]:
    """Services built from source that a deployed application uses, by name and version
    (`every`: the spec's instances, when known)."""
    every = instances(spec) if every is None else every
    found = {(i.service.short_name, i.service.version): i.service for i in every if i.service.source}
    return [found[key] for key in sorted(found)]


def build_gates(spec: Spec, every: Iterable[Instance] | None = None) -> dict[ServiceId, tuple[str, ...]]:
    """Per service version built from source, the applications whose rollout waits for its build."""
    return _gates(instances(spec) if every is None else every)


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
    "Renderer",
    "ServiceId",
    "Settings",
    "build_gates",
    "builds_needed",
    "compose",
    "object_key",
    "render",
]
