"""Deployments and Services of service instances and Kafka-FaaS-connectors.

Entries of deployed applications that share a service version and instance key become one
Deployment whose replicas are the sum of theirs (MICO's scale-out). Environment order is
the contract's: deployment env, interface connections, Kafka variables, OPENFAAS_*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.render.labels import APPLICATIONS_ANNOTATION, mico_labels, selector
from reconciler.render.quantities import canonical
from reconciler.render.settings import Settings, image_tag
from reconciler.spec import Spec
from reconciler.spec.model import (
    Application,
    DeploymentInfo,
    KafkaFaasConnector,
    Probe,
    Resources,
    Service,
    ServiceDeployment,
)
from reconciler.spec.names import (
    CONNECTOR_SHORT_NAME,
    connector_name,
    instance_name,
    kubernetes_service_name,
    label_safe,
)
from reconciler.spec.rules import instance_key

Manifest = dict[str, Any]
ServiceId = tuple[str, str]


@dataclass(frozen=True)
class Instance:
    """One Deployment of a service version, and the application entries it serves."""

    name: str
    service: Service
    entry: ServiceDeployment
    applications: tuple[Application, ...]
    replicas: int


def instances(spec: Spec) -> list[Instance]:
    grouped: dict[tuple[str, str, str], list[tuple[Application, ServiceDeployment, Service]]] = {}
    for app in spec.applications:
        if not app.deploy:
            continue
        for entry in app.services:
            service = spec.service(entry.short_name, entry.version)
            grouped.setdefault(instance_key(service, entry), []).append((app, entry, service))
    result = []
    for (short_name, version, key), members in grouped.items():
        _, entry, service = members[0]
        result.append(
            Instance(
                name=instance_name(short_name, version, key or None),
                service=service,
                entry=entry,
                applications=tuple(app for app, _, _ in members),
                replicas=sum(e.replicas for _, e, _ in members),
            )
        )
    return sorted(result, key=lambda i: i.name)


def image_of(service: Service, settings: Settings, built: Mapping[ServiceId, str]) -> str:
    """The image to run: given, built (pinned by digest), or the tag a build will push."""
    if service.image is not None:
        return service.image
    return built.get((service.short_name, service.version), pushed_image(service, settings))


def pushed_image(service: Service, settings: Settings) -> str:
    return f"{settings.registry}/{service.short_name}:{label_safe(service.version)}"


def _env(pairs: list[tuple[str, str]], info: DeploymentInfo | None = None) -> list[Manifest]:
    """Plain variables, then (with `info`) those whose values stay in Secrets and ConfigMaps."""
    env: list[Manifest] = [{"name": name, "value": value} for name, value in pairs]
    for name, ref in (info.env_refs if info is not None else {}).items():
        kind, source = ("secretKeyRef", ref.secret) if ref.secret else ("configMapKeyRef", ref.config_map)
        env.append({"name": name, "valueFrom": {kind: {"name": source, "key": ref.key}}})
    return env


def _env_from(info: DeploymentInfo) -> list[Manifest]:
    return [
        {"secretRef": {"name": source.secret}}
        if source.secret
        else {"configMapRef": {"name": source.config_map}}
        for source in info.env_from
    ]


_AMOUNTS = {"cpu": "cpu", "memory": "memory", "ephemeral_storage": "ephemeral-storage"}


def _resources(settings: Settings, *layers: Resources | None) -> Manifest:
    """Requests and limits, each amount from the last layer that gives it (the namespace's
    defaults in the settings, the service version's, the deployment entry's), as the
    apiserver will store it."""
    result: Manifest = {}
    for part, defaults in (
        ("requests", {"cpu": settings.workload_cpu_request, "memory": settings.workload_memory_request}),
        ("limits", {"cpu": settings.workload_cpu_limit, "memory": settings.workload_memory_limit}),
    ):
        amounts = {name: value for name, value in defaults.items() if value}
        for layer in layers:
            if layer is not None:
                amounts |= {
                    _AMOUNTS[name]: value for name, value in getattr(layer, part) if value is not None
                }
        if amounts:
            result[part] = {name: canonical(value) for name, value in amounts.items()}
    return result


def _probe(probe: Probe | None, service: Service) -> Manifest:
    """The kubelet's check; an interface's port is its first port's targetPort."""
    if probe is None:
        return {}
    check: Manifest
    if probe.exec is not None:
        check = {"exec": {"command": list(probe.exec.command)}}
    else:
        target = probe.http or probe.tcp
        assert target is not None  # the contract requires one check
        port = target.port
        if port is None:
            port = next(i.ports[0].target_port for i in service.interfaces if i.name == target.interface)
        check = (
            {"httpGet": {"path": probe.http.path, "port": port}}
            if probe.http
            else {"tcpSocket": {"port": port}}
        )
    delay = {"initialDelaySeconds": probe.initial_delay_seconds} if probe.initial_delay_seconds else {}
    return {  # a 0 is not stored (omitempty): rendering one would be drift on every run
        **check,
        **delay,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "failureThreshold": probe.failure_threshold,
    }


def _pull_secrets(settings: Settings, *own: str) -> list[str]:
    every = [*own, *filter(None, settings.workload_image_pull_secrets.split(","))]
    return list(dict.fromkeys(every))


def _kafka_env(group_id: str, topics: Mapping[str, str], settings: Settings) -> list[tuple[str, str]]:
    pairs = [("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers), ("KAFKA_GROUP_ID", group_id)]
    for role in ("INPUT", "OUTPUT"):
        if role in topics:
            pairs.append((f"KAFKA_TOPIC_{role}", topics[role]))
    defaults = {
        "INVALID_MESSAGE": settings.invalid_message_topic,
        "DEAD_LETTER": settings.dead_letter_topic,
        "TEST_MESSAGE_OUTPUT": settings.test_message_output_topic,
    }
    pairs.extend((f"KAFKA_TOPIC_{role}", topics.get(role, default)) for role, default in defaults.items())
    return pairs


def connected(instance: Instance, spec: Spec) -> list[Service]:
    """The services an instance's interface connections point at: its Deployment reads them."""
    app = instance.applications[0]
    entries = {e.short_name: e for e in app.services}
    return [
        spec.service(entries[c.service].short_name, entries[c.service].version)
        for c in instance.entry.interface_connections
    ]


def _connection_env(instance: Instance, spec: Spec, settings: Settings) -> list[tuple[str, str]]:
    """`<service>.<namespace>.svc.cluster.local:<port>`, resolved in the first application (the
    spec rules make every application sharing the instance resolve them to the same Services)."""
    app = instance.applications[0]
    pairs = []
    for connection in instance.entry.interface_connections:
        target_entry = next(e for e in app.services if e.short_name == connection.service)
        target = spec.service(target_entry.short_name, target_entry.version)
        interface = next(i for i in target.interfaces if i.name == connection.interface)
        target_instance = instance_name(target.short_name, target.version, target_entry.instance)
        host = kubernetes_service_name(target_instance, interface.name)
        pairs.append(
            (connection.env, f"{host}.{settings.namespace}.svc.cluster.local:{interface.ports[0].port}")
        )
    return pairs


def _deployment(
    *,
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    replicas: int,
    container: Manifest,
    settings: Settings,
    pull_secrets: list[str],
) -> Manifest:
    pod: Manifest = {"containers": [container]}
    if pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in pull_secrets]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 0,
            "selector": {"matchLabels": selector(name)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }


def _applications_annotation(apps: tuple[Application, ...]) -> dict[str, str]:
    return {APPLICATIONS_ANNOTATION: ",".join(sorted(a.key for a in apps))}


def service_deployment(
    instance: Instance, spec: Spec, settings: Settings, built: Mapping[ServiceId, str]
) -> Manifest:
    service, entry = instance.service, instance.entry
    env = list(entry.env.items()) + _connection_env(instance, spec, settings)
    if service.kafka_enabled:
        env += _kafka_env(instance.name, {t.role: t.name for t in entry.topics}, settings)
    container: Manifest = {
        "name": service.short_name,
        "image": image_of(service, settings, built),
        "imagePullPolicy": entry.image_pull_policy,
        "ports": [
            {"containerPort": target_port, "protocol": protocol}
            for target_port, protocol in dict.fromkeys(
                (p.target_port, p.type) for i in service.interfaces for p in i.ports
            )
        ],
        "env": _env(env, entry),
        "envFrom": _env_from(entry),
        "resources": _resources(settings, service.resources, entry.resources),
        "readinessProbe": _probe(service.readiness_probe, service),
        "livenessProbe": _probe(service.liveness_probe, service),
    }
    return _deployment(
        name=instance.name,
        labels={**entry.labels, **mico_labels(service.short_name, service.version, instance.name)},
        annotations=_applications_annotation(instance.applications),
        replicas=instance.replicas,
        container=_drop_empty(container),
        settings=settings,
        pull_secrets=_pull_secrets(settings, *service.image_pull_secrets),
    )


def kubernetes_services(instance: Instance, settings: Settings) -> list[Manifest]:
    service = instance.service
    result = []
    for interface in service.interfaces:
        labels = mico_labels(service.short_name, service.version, instance.name)
        labels["ust.mico/interface"] = interface.name
        result.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": kubernetes_service_name(instance.name, interface.name),
                    "namespace": settings.namespace,
                    "labels": labels,
                    "annotations": _applications_annotation(instance.applications),
                },
                "spec": {
                    "type": "LoadBalancer" if interface.public else "ClusterIP",
                    "selector": selector(instance.name),
                    "ports": [
                        {
                            "name": f"{p.type.lower()}-{p.port}",
                            "port": p.port,
                            "targetPort": p.target_port,
                            "protocol": p.type,
                        }
                        for p in interface.ports
                    ],
                },
            }
        )
    return result


def connector_deployment(app: Application, connector: KafkaFaasConnector, settings: Settings) -> Manifest:
    name = connector_name(app.short_name, app.version, connector.instance)
    topics = {"INPUT": connector.input_topic}
    if connector.output_topic is not None:
        topics["OUTPUT"] = connector.output_topic
    env = [
        *connector.env.items(),
        *_kafka_env(name, topics, settings),
        ("OPENFAAS_GATEWAY", settings.openfaas_gateway),
    ]
    if connector.function is not None:
        env.append(("OPENFAAS_FUNCTION_NAME", connector.function))
    tag = image_tag(settings.connector_image)
    return _deployment(
        name=name,
        labels={**connector.labels, **mico_labels(CONNECTOR_SHORT_NAME, tag, name)},
        annotations=_applications_annotation((app,)),
        replicas=connector.replicas,
        container=_drop_empty(
            {
                "name": CONNECTOR_SHORT_NAME,
                "image": settings.connector_image,
                **({"command": [settings.connector_command]} if settings.connector_command else {}),
                "imagePullPolicy": connector.image_pull_policy,
                "env": _env(env, connector),
                "envFrom": _env_from(connector),
                "resources": _resources(settings, connector.resources),
            }
        ),
        settings=settings,
        pull_secrets=_pull_secrets(settings),
    )


def _drop_empty(container: Manifest) -> Manifest:
    return {k: v for k, v in container.items() if v not in ([], {})}
