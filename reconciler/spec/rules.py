"""Semantic rules of the contract: everything the JSON Schema cannot say.

References between services, applications, interfaces and topics; uniqueness across files;
sharing conflicts; Kafka and connector rules; derived Kubernetes names. Each rule adds
problems and never stops the others, so one run reports every error.
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from reconciler.spec import names
from reconciler.spec.model import (
    LABEL_VALUE_PATTERN,
    Application,
    DeploymentInfo,
    KafkaFaasConnector,
    Service,
    ServiceDeployment,
)
from reconciler.spec.problems import Origin, PathKey, Problem
from reconciler.spec.version import MicoVersion, VersionRange, VersionSet

T = TypeVar("T")

#: Variables the reconciler sets itself on Kafka-enabled services and connectors.
KAFKA_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_GROUP_ID",
    "KAFKA_TOPIC_INPUT",
    "KAFKA_TOPIC_OUTPUT",
    "KAFKA_TOPIC_INVALID_MESSAGE",
    "KAFKA_TOPIC_DEAD_LETTER",
    "KAFKA_TOPIC_TEST_MESSAGE_OUTPUT",
)
CONNECTOR_VARIABLES = ("OPENFAAS_GATEWAY", "OPENFAAS_FUNCTION_NAME")
RESERVED_LABEL_PREFIXES = ("ust.mico/", "app.kubernetes.io/")
#: Deployment fields that must agree between applications sharing one instance.
SHARED_FIELDS = (
    "labels",
    "env",
    "env_refs",
    "env_from",
    "resources",
    "image_pull_policy",
    "interface_connections",
    "topics",
)
#: etcd refuses requests over 1.5 MiB; the stored object also carries managed fields and
#: status, so a rendered Deployment may be at most 1 MiB.
MAX_OBJECT_BYTES = 1024 * 1024
#: Kubernetes' limit on the total size of an object's annotations.
MAX_ANNOTATION_BYTES = 256 * 1024
#: What a Deployment holds besides env, labels and the applications annotation (names,
#: image, ports, interface connections and Kafka variables), generously.
_DEPLOYMENT_BASE_BYTES = 16 * 1024
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)


@dataclass(frozen=True)
class Sourced(Generic[T]):
    """An element and where it was written; `partial` names the fields (YAML keys) an invalid
    element lost, wholly or some items of a list, so no rule reads their absence as a fact."""

    item: T
    origin: Origin
    partial: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Renumbered(Origin):
    """The origin of an element some list items were left out of: for each such list, the
    YAML index of each item kept, so problems still point at the item written."""

    kept: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def written(self, sub: tuple[PathKey, ...]) -> tuple[PathKey, ...]:
        if len(sub) >= 2 and isinstance(sub[0], str) and isinstance(sub[1], int):
            for key, indices in self.kept:
                if key == sub[0] and 0 <= sub[1] < len(indices):
                    return (key, indices[sub[1]], *sub[2:])
        return sub

    def problem(self, message: str, *sub: PathKey) -> Problem:
        return super().problem(message, *self.written(sub))

    def describe(self, *sub: PathKey) -> str:
        return super().describe(*self.written(sub))


def instance_key(service: Service, entry: ServiceDeployment) -> tuple[str, str, str]:
    """Entries with the same key are one Deployment (MICO's scale-out)."""
    return (service.short_name, service.version, entry.instance or "")


class _Checker:
    def __init__(
        self,
        services: list[Sourced[Service]],
        applications: list[Sourced[Application]],
        broken_short_names: set[str],
    ) -> None:
        self.services = services
        self.applications = applications
        self.broken = broken_short_names
        self.problems: list[Problem] = []
        self.versions: dict[str, list[tuple[MicoVersion, Sourced[Service]]]] = defaultdict(list)
        self._by_identity: dict[tuple[str, MicoVersion], Service] = {}
        for sourced in services:
            parsed = _version(sourced.item.version)
            if parsed is not None:
                self.versions[sourced.item.short_name].append((parsed, sourced))
                self._by_identity.setdefault((sourced.item.short_name, parsed), sourced.item)
        self._version_sets: dict[str, VersionSet] = {}
        #: The fields salvaged services lost, by id of the service.
        self._lost: dict[int, frozenset[str]] = {id(s.item): s.partial for s in services if s.partial}

    def lost(self, service: Service, *fields: str) -> bool:
        """Whether a salvaged service lost one of `fields`: its value there is not known."""
        return not self._lost.get(id(service), frozenset()).isdisjoint(fields)

    def add(self, origin: Origin, message: str, *path: str | int) -> None:
        self.problems.append(origin.problem(message, *path))

    def resolve(self, short_name: str, version: str) -> Service | None:
        wanted = _version(version)
        return None if wanted is None else self._by_identity.get((short_name, wanted))

    def version_set(self, short_name: str) -> VersionSet:
        if short_name not in self._version_sets:
            self._version_sets[short_name] = VersionSet.of(v for v, _ in self.versions[short_name])
        return self._version_sets[short_name]

    @functools.cache  # noqa: B019 - one checker per load; thousands of problems may name a service
    def listed_versions(self, short_name: str) -> str:
        """The highest versions defined, newest first, and how many more there are."""
        versions = sorted(v for v, _ in self.versions[short_name])
        shown = ", ".join(str(v) for v in reversed(versions[-_LISTED_VERSIONS:]))
        more = len(versions) - _LISTED_VERSIONS
        return f"{shown} and {more} more" if more > 0 else shown

    # -- services -----------------------------------------------------------------------------

    def unique_definitions(self) -> None:
        for kind, items in (("service", self.services), ("application", self.applications)):
            seen: dict[tuple[str, MicoVersion], Origin] = {}
            for sourced in items:
                item = sourced.item
                parsed = _version(item.version)
                if parsed is None:
                    continue
                first = seen.setdefault((item.short_name, parsed), sourced.origin)
                if first is not sourced.origin:
                    self.add(
                        sourced.origin,
                        f"{kind} {item.short_name!r} version {item.version} is defined twice; "
                        f"also at {first.describe()}",
                        "version",
                    )

    def service_shape(self) -> None:
        job_names: dict[str, Sourced[Service]] = {}
        for sourced in self.services:
            service, origin = sourced.item, sourced.origin
            if not _LABEL_VALUE.match(names.label_safe(service.version)):
                self.add(
                    origin,
                    f"version {service.version!r} cannot be a Kubernetes label value (it must end "
                    "with a letter or digit)",
                    "version",
                )
            unknown = not sourced.partial.isdisjoint(("interfaces", "kafkaEnabled"))
            if not service.kafka_enabled and not service.interfaces and not unknown:
                self.add(
                    origin, "a service that is not kafkaEnabled needs at least one interface", "interfaces"
                )
            interface_names = {i.name for i in service.interfaces}
            for field, probe in (
                ("readinessProbe", service.readiness_probe),
                ("livenessProbe", service.liveness_probe),
            ):
                check = None if probe is None else probe.http or probe.tcp
                if check is None or check.interface is None or "interfaces" in sourced.partial:
                    continue
                if check.interface not in interface_names:
                    kind = "http" if probe is not None and probe.http is not None else "tcp"
                    self.add(
                        origin, f"the service has no interface {check.interface!r}", field, kind, "interface"
                    )
            seen_interfaces: set[str] = set()
            for i, interface in enumerate(service.interfaces):
                if interface.name in seen_interfaces:
                    self.add(
                        origin, f"interface {interface.name!r} is defined twice", "interfaces", i, "name"
                    )
                seen_interfaces.add(interface.name)
                ports: set[tuple[int, str]] = set()
                for p, port in enumerate(interface.ports):
                    if (port.port, port.type) in ports:
                        self.add(
                            origin,
                            f"port {port.port}/{port.type} is declared twice",
                            "interfaces",
                            i,
                            "ports",
                            p,
                            "port",
                        )
                    ports.add((port.port, port.type))
                name = names.kubernetes_service_name(
                    names.instance_name(service.short_name, service.version, None), interface.name
                )
                if len(name) > names.MAX_NAME:
                    self.add(
                        origin,
                        f"the Kubernetes Service name {name!r} would be {len(name)} "
                        f"characters (max {names.MAX_NAME}); shorten the service or interface name",
                        "interfaces",
                        i,
                        "name",
                    )
            if service.source is not None:
                self._check_source(sourced, job_names)

    def _check_source(self, sourced: Sourced[Service], job_names: dict[str, Sourced[Service]]) -> None:
        service, origin = sourced.item, sourced.origin
        assert service.source is not None
        for field in ("dockerfile", "context"):
            value: str = getattr(service.source, field)
            if ".." in posixpath.normpath(value).split("/") or ".." in value.split("/"):
                self.add(origin, f"{value!r} must stay inside the repository (no '..')", "source", field)
        revision = service.source.revision
        if revision is not None and (
            ".." in revision or "//" in revision or revision.endswith((".", "/", ".lock"))
        ):
            self.add(origin, f"{revision!r} is not a valid git revision", "source", "revision")
        job = names.build_job_name(service.short_name, service.version)
        if len(job) > names.MAX_NAME:
            self.add(
                origin,
                f"the build Job name {job!r} would be {len(job)} characters (max {names.MAX_NAME})",
                "version",
            )
        other = job_names.setdefault(job, sourced)
        if other is not sourced:
            self.add(
                origin,
                f"the build Job name {job!r} is also derived from service "
                f"{other.item.short_name!r} {other.item.version} at {other.origin.describe()}",
                "version",
            )

    def dependencies(self) -> None:
        for sourced in self.services:
            for d, dependency in enumerate(sourced.item.dependencies):
                try:
                    wanted = VersionRange.parse(dependency.version)
                except ValueError as err:
                    self.add(sourced.origin, str(err), "dependencies", d, "version")
                    continue
                if dependency.short_name in self.broken:
                    continue
                candidates = self.versions.get(dependency.short_name, [])
                if not candidates:
                    self.add(
                        sourced.origin,
                        f"depends on service {dependency.short_name!r}, which is not defined",
                        "dependencies",
                        d,
                        "shortName",
                    )
                elif not wanted.satisfied_by_any(self.version_set(dependency.short_name)):
                    have = self.listed_versions(dependency.short_name)
                    self.add(
                        sourced.origin,
                        f"no version of {dependency.short_name!r} satisfies "
                        f"{dependency.version!r} (defined: {have})",
                        "dependencies",
                        d,
                        "version",
                    )

    # -- applications -------------------------------------------------------------------------

    def applications_shape(self) -> None:
        for sourced in self.applications:
            app, origin = sourced.item, sourced.origin
            members: dict[str, Service] = {}
            first_index: dict[str, int] = {}
            for e, entry in enumerate(app.services):
                if entry.short_name in first_index:
                    self.add(
                        origin,
                        f"service {entry.short_name!r} is included twice (only one version of a "
                        "service per application; first at "
                        f"services[{_written_index(origin, 'services', first_index[entry.short_name])}])",
                        "services",
                        e,
                        "shortName",
                    )
                    continue
                first_index[entry.short_name] = e
                service = self.resolve(entry.short_name, entry.version)
                if service is None:
                    if entry.short_name not in self.broken:
                        self.add(
                            origin,
                            f"service {entry.short_name!r} version {entry.version} is not defined",
                            "services",
                            e,
                            "version",
                        )
                    continue
                members[entry.short_name] = service
            for e, entry in enumerate(app.services):
                service = members.get(entry.short_name)
                if service is not None and first_index.get(entry.short_name) == e:
                    self._check_entry(origin, e, entry, service, members, "services" in sourced.partial)
            self._check_connectors(origin, app.kafka_faas_connectors)

    def _check_entry(
        self,
        origin: Origin,
        e: int,
        entry: ServiceDeployment,
        service: Service,
        members: dict[str, Service],
        lost_members: bool,
    ) -> None:
        where = ("services", e)
        self._check_labels(origin, entry.labels, *where)
        env_names = self._env_names(origin, entry, *where)
        for c, connection in enumerate(entry.interface_connections):
            at = (*where, "interfaceConnections", c)
            if connection.env in env_names:
                self.add(
                    origin,
                    f"variable {connection.env!r} is already set by "
                    f"{'.'.join(map(str, env_names[connection.env]))}",
                    *at,
                    "env",
                )
            env_names.setdefault(connection.env, ("interfaceConnections", c))
            target = members.get(connection.service)
            if target is None:
                if connection.service not in self.broken and not lost_members:
                    self.add(
                        origin,
                        f"service {connection.service!r} is not part of this application",
                        *at,
                        "service",
                    )
                continue
            if connection.interface not in {i.name for i in target.interfaces} and not self.lost(
                target, "interfaces"
            ):
                self.add(
                    origin,
                    f"service {connection.service!r} has no interface {connection.interface!r}",
                    *at,
                    "interface",
                )
        if self.lost(service, "kafkaEnabled"):
            pass  # whether the reconciler sets the Kafka variables, or topics are allowed, is unknown
        elif service.kafka_enabled:
            for variable in KAFKA_VARIABLES:
                if variable in env_names:
                    self.add(
                        origin,
                        f"{variable} is set by the reconciler for Kafka-enabled services",
                        *where,
                        *env_names[variable],
                    )
        elif entry.topics:
            self.add(
                origin, f"topics need a kafkaEnabled service; {service.short_name!r} is not", *where, "topics"
            )
        roles: set[str] = set()
        for t, topic in enumerate(entry.topics):
            if topic.role in roles:
                self.add(origin, f"role {topic.role} has more than one topic", *where, "topics", t, "role")
            roles.add(topic.role)
            self._check_topic_name(origin, topic.name, *where, "topics", t, "name")

    def _check_labels(self, origin: Origin, labels: dict[str, str], *where: str | int) -> None:
        for key in labels:
            if key.startswith(RESERVED_LABEL_PREFIXES):
                self.add(origin, f"label {key!r} is reserved for the reconciler", *where, "labels", key)
            prefix, _, name = key.rpartition("/")
            if len(name) > 63 or len(prefix) > 253:
                self.add(
                    origin,
                    "a label key's name is at most 63 characters and its prefix at most 253",
                    *where,
                    "labels",
                    key,
                )

    def _env_names(
        self, origin: Origin, info: DeploymentInfo, *where: str | int
    ) -> dict[str, tuple[str | int, ...]]:
        """Where each variable of `env` and `envRefs` is set; one set twice is a problem."""
        names: dict[str, tuple[str | int, ...]] = {k: ("env", k) for k in info.env}
        for name in info.env_refs:
            if name in names:
                self.add(origin, f"variable {name!r} is already set by env.{name}", *where, "envRefs", name)
            names.setdefault(name, ("envRefs", name))
        return names

    def _check_connectors(self, origin: Origin, connectors: list[KafkaFaasConnector]) -> None:
        seen: set[str] = set()
        for c, connector in enumerate(connectors):
            at = ("kafkaFaasConnectors", c)
            self._check_labels(origin, connector.labels, *at)
            env_names = self._env_names(origin, connector, *at)
            for variable in (*KAFKA_VARIABLES, *CONNECTOR_VARIABLES):
                if variable in env_names:
                    self.add(
                        origin,
                        f"{variable} is set by the reconciler for connectors",
                        *at,
                        *env_names[variable],
                    )
            if connector.instance in seen:
                self.add(
                    origin, f"connector instance {connector.instance!r} is defined twice", *at, "instance"
                )
            seen.add(connector.instance)
            if connector.output_topic is None and connector.function is None:
                self.add(origin, "a connector needs an outputTopic unless it calls a function", *at)
            self._check_topic_name(origin, connector.input_topic, *at, "inputTopic")
            if connector.output_topic is not None:
                self._check_topic_name(origin, connector.output_topic, *at, "outputTopic")

    def _check_topic_name(self, origin: Origin, name: str, *path: str | int) -> None:
        if name in (".", ".."):
            self.add(origin, f"{name!r} is not a valid Kafka topic name", *path)

    def sharing(self) -> None:
        """Entries of deployed applications that form one instance must agree."""
        groups: dict[tuple[str, str, str], list[tuple[Sourced[Application], int]]] = defaultdict(list)
        for sourced in self.applications:
            if not sourced.item.deploy or "deploy" in sourced.partial:
                continue
            for e, entry in enumerate(sourced.item.services):
                service = self.resolve(entry.short_name, entry.version)
                if service is not None:
                    groups[instance_key(service, entry)].append((sourced, e))
        self._unique_service_names(groups)
        for members in groups.values():
            first_app, first_e = members[0]
            first = first_app.item.services[first_e]
            self._check_size(first_app.origin, first_e, first, [app.item for app, _ in members])
            for other_app, e in members[1:]:
                entry = other_app.item.services[e]
                if entry.interface_connections == first.interface_connections:
                    self._same_targets((first_app, first_e), (other_app, e))
                for field in SHARED_FIELDS:
                    if getattr(entry, field) != getattr(first, field):
                        alias = ServiceDeployment.model_fields[field].alias or field
                        self.add(
                            other_app.origin,
                            f"{entry.short_name!r} is shared with application "
                            f"{first_app.item.short_name!r} {first_app.item.version} "
                            f"({first_app.origin.describe('services', first_e)}) but its "
                            f"{alias} differs; give it its own 'instance' or make them equal",
                            "services",
                            e,
                            alias,
                        )

    def _same_targets(
        self, first: tuple[Sourced[Application], int], other: tuple[Sourced[Application], int]
    ) -> None:
        """A shared instance is one Deployment with one environment: each of its connections must
        reach the same Service in every application sharing it (`service: hello` names each
        application's own `hello` entry, which may be another instance)."""
        (first_app, first_e), (other_app, e) = first, other
        for c, connection in enumerate(other_app.item.services[e].interface_connections):
            first_target = self._target_instance(first_app.item, connection.service)
            other_target = self._target_instance(other_app.item, connection.service)
            if first_target is None or other_target is None or first_target == other_target:
                continue
            where = first_app.origin.describe("services", first_e, "interfaceConnections", c)
            self.add(
                other_app.origin,
                f"{other_app.item.services[e].short_name!r} is shared with application "
                f"{first_app.item.short_name!r} {first_app.item.version}, where this connection "
                f"({where}) reaches instance {first_target!r}; here it would reach {other_target!r}, "
                "and one Deployment cannot point at both: give it its own 'instance' or share the target",
                "services",
                e,
                "interfaceConnections",
                c,
            )

    def _target_instance(self, application: Application, short_name: str) -> str | None:
        """The instance a connection to `short_name` reaches in `application`, as render names it."""
        entry = next((t for t in application.services if t.short_name == short_name), None)
        target = None if entry is None else self.resolve(entry.short_name, entry.version)
        if entry is None or target is None:
            return None
        return names.instance_name(target.short_name, target.version, entry.instance)

    def _unique_service_names(
        self, groups: dict[tuple[str, str, str], list[tuple[Sourced[Application], int]]]
    ) -> None:
        """`<shortName>-<hash>-<interface>` of two instances can be made equal (a shortName that
        ends like another's name and hash); one would overwrite the other's Service."""
        seen: dict[str, tuple[tuple[str, str, str], Sourced[Application], int]] = {}
        for key, members in groups.items():
            service = self.resolve(key[0], key[1])
            app, e = members[0]
            instance = names.instance_name(key[0], key[1], key[2] or None)
            for interface in service.interfaces if service else ():
                name = names.kubernetes_service_name(instance, interface.name)
                first_key, first_app, first_e = seen.setdefault(name, (key, app, e))
                if first_key != key:
                    self.add(
                        app.origin,
                        f"the Service name {name!r} of interface {interface.name!r} is also the name "
                        f"of a Service of {first_key[0]!r} {first_key[1]} "
                        f"({first_app.origin.describe('services', first_e)}); rename the interface",
                        "services",
                        e,
                    )

    def _check_size(
        self, origin: Origin, e: int, entry: ServiceDeployment, applications: list[Application]
    ) -> None:
        """A Deployment the apiserver would refuse is an error now, not at apply time."""
        annotation = len(",".join(a.key for a in applications))
        if annotation > MAX_ANNOTATION_BYTES:
            self.add(
                origin,
                f"this instance is shared by {len(applications)} applications; listing them "
                f"takes {annotation:,} bytes, over Kubernetes' {MAX_ANNOTATION_BYTES:,} for annotations",
                "services",
                e,
            )
        # labels twice: on the Deployment and on its pod template; a bound first (a character
        # takes at most 6 bytes in JSON), so the exact size is only computed near the limit
        pairs = [*entry.env.items(), *entry.labels.items(), *entry.labels.items()]
        bound = sum(6 * (len(k) + len(v)) + 32 for k, v in pairs)
        if bound + annotation + _DEPLOYMENT_BASE_BYTES <= MAX_OBJECT_BYTES:
            return
        env = [{"name": k, "value": v} for k, v in entry.env.items()]
        body = json.dumps([env, entry.labels, entry.labels], ensure_ascii=False).encode()
        size = len(body) + annotation + _DEPLOYMENT_BASE_BYTES
        if size > MAX_OBJECT_BYTES:
            self.add(
                origin,
                f"the Deployment would be about {size:,} bytes, over the {MAX_OBJECT_BYTES:,} "
                "Kubernetes can store (etcd refuses more than 1.5 MiB with its metadata); "
                "keep large values out of env and labels",
                "services",
                e,
            )

    def run(self) -> list[Problem]:
        self.unique_definitions()
        self.service_shape()
        self.dependencies()
        self.applications_shape()
        self.sharing()
        return self.problems


#: Versions a "no version satisfies" problem lists, so its line stays short.
_LISTED_VERSIONS = 5


def _written_index(origin: Origin, key: str, index: int) -> int:
    """The YAML index of a list item, where the element lost items before it."""
    if isinstance(origin, Renumbered):
        written = origin.written((key, index))[1]
        assert isinstance(written, int)
        return written
    return index


def _version(text: str) -> MicoVersion | None:
    try:
        return MicoVersion.parse(text)
    except ValueError:
        return None


def check(
    services: list[Sourced[Service]],
    applications: list[Sourced[Application]],
    broken_short_names: Iterable[str] = (),
) -> list[Problem]:
    """Every semantic problem of structurally valid elements; `broken_short_names` are
    elements that failed structural validation, so references to them are not reported twice."""
    return _Checker(services, applications, set(broken_short_names)).run()
