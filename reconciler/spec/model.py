"""Pydantic models of the `mico.yaml` contract (format `ust.mico/v1`).

These models are the single source of the document structure: `schemas/mico.schema.json` is
generated from them, and a test proves both accept and reject the same documents. Rules that
span elements (references, uniqueness, sharing) live in `rules`, not here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel

from reconciler.spec.problems import shorten
from reconciler.spec.version import VERSION_PATTERN

API_VERSION = "ust.mico/v1"

SHORT_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TOPIC_PATTERN = r"^[a-zA-Z0-9._-]+$"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
LABEL_KEY_PATTERN = rf"^({_DNS_SUBDOMAIN}/)?{_LABEL_NAME}$"
LABEL_VALUE_PATTERN = rf"^({_LABEL_NAME})?$"
# https and git URLs without user info (no credentials in git), ssh URLs and scp-style
# `user@host:path`. No shell metacharacters, spaces or a leading '-' anywhere.
_HOSTNAME = r"[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?"
_HOST = rf"{_HOSTNAME}(:[0-9]{{1,5}})?"
_URL_PATH = r"[A-Za-z0-9._~%+=,@:/-]*"
GIT_URL_PATTERN = (
    rf"^((https|git)://{_HOST}/{_URL_PATH}"
    rf"|ssh://([A-Za-z0-9._-]+@)?{_HOST}/{_URL_PATH}"
    rf"|[A-Za-z0-9._-]+@{_HOSTNAME}:[A-Za-z0-9._~%+=,@/-]+)$"
)
GIT_REVISION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._/+-]*$"
CONFIG_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
OBJECT_NAME_PATTERN = rf"^{_DNS_SUBDOMAIN}$"
PROBE_PATH_PATTERN = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$"
#: any text but control characters (tab aside): it becomes a process argument
COMMAND_ARGUMENT_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
RELATIVE_PATH_PATTERN = r"^[A-Za-z0-9._][A-Za-z0-9._/+-]*$"
_IMAGE_COMPONENT = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
IMAGE_PATTERN = (
    rf"^({_HOST}/)?"
    rf"{_IMAGE_COMPONENT}(/{_IMAGE_COMPONENT})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)

#: What each pattern means, for error messages a person can act on.
PATTERN_HELP: dict[str, str] = {
    SHORT_NAME_PATTERN: "lowercase letters, digits and '-', starting with a letter",
    DNS_LABEL_PATTERN: "a DNS label: lowercase letters, digits and '-'",
    ENV_NAME_PATTERN: "an environment variable name: letters, digits and '_', not starting with a digit",
    TOPIC_PATTERN: "a Kafka topic name: letters, digits, '.', '_' and '-'",
    LABEL_KEY_PATTERN: "a Kubernetes label key: optional DNS prefix and '/', then a name",
    LABEL_VALUE_PATTERN: "a Kubernetes label value: letters, digits, '-', '_' and '.', "
    "starting and ending with a letter or digit",
    GIT_URL_PATTERN: "an https, git or ssh URL (or user@host:path) without credentials, "
    "spaces or shell metacharacters",
    GIT_REVISION_PATTERN: "a git tag, branch or commit: letters, digits, '.', '_', '/', '+', '-'",
    RELATIVE_PATH_PATTERN: "a relative path: letters, digits, '.', '_', '/', '+', '-'",
    PROBE_PATH_PATTERN: "a URL path starting with '/', without spaces",
    COMMAND_ARGUMENT_PATTERN: "text without control characters",
    OBJECT_NAME_PATTERN: "a Kubernetes object name: lowercase letters, digits, '-' and '.'",
    CONFIG_KEY_PATTERN: "a Secret or ConfigMap key: letters, digits, '-', '_' and '.'",
    QUANTITY_PATTERN: "a Kubernetes quantity such as 500m, 2, 512Mi or 1Gi",
    IMAGE_PATTERN: "an image reference like registry.example.com/repo/name:tag or name@sha256:<64 hex>",
    VERSION_PATTERN: "a version: optional letters, then SemVer 2.0, e.g. v1.2.3",
}


def _integral_float_to_int(value: Any) -> Any:
    """JSON Schema counts 1.0 as an integer; accept it the same way here."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


ShortName = Annotated[str, StringConstraints(min_length=3, max_length=54, pattern=SHORT_NAME_PATTERN)]
DnsLabel = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
Version = Annotated[str, StringConstraints(max_length=63, pattern=VERSION_PATTERN)]
EnvName = Annotated[str, StringConstraints(max_length=253, pattern=ENV_NAME_PATTERN)]
TopicName = Annotated[str, StringConstraints(min_length=1, max_length=249, pattern=TOPIC_PATTERN)]
LabelKey = Annotated[str, StringConstraints(max_length=317, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE_PATTERN)]
GitUrl = Annotated[str, StringConstraints(max_length=2048, pattern=GIT_URL_PATTERN)]
GitRevision = Annotated[str, StringConstraints(max_length=255, pattern=GIT_REVISION_PATTERN)]
RelativePath = Annotated[str, StringConstraints(max_length=1024, pattern=RELATIVE_PATH_PATTERN)]
ImageRef = Annotated[str, StringConstraints(max_length=1024, pattern=IMAGE_PATTERN)]
Text = Annotated[str, StringConstraints(max_length=4096)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=256)]
PortNumber = Annotated[int, Field(ge=1, le=65535), BeforeValidator(_integral_float_to_int)]
Replicas = Annotated[int, Field(ge=1, le=10_000), BeforeValidator(_integral_float_to_int)]

TopicRole = Literal["INPUT", "OUTPUT", "DEAD_LETTER", "INVALID_MESSAGE", "TEST_MESSAGE_OUTPUT"]


class ContractModel(BaseModel):
    """Strict, closed objects: unknown keys (typos like `replcas`) and nulls are errors."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=False,
        regex_engine="rust-regex",
        # each field's docstring is its description in the JSON Schema, which editors show on
        # hover and completion
        use_attribute_docstrings=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = [shorten(str(k)) for k, v in data.items() if v is None]
            if nulls:
                raise ValueError(f"null is not allowed for {', '.join(nulls)}: give a value or omit the key")
        return data


class GitSource(ContractModel):
    """Where the service's source is; the reconciler builds its image with Kaniko."""

    git: GitUrl = Field(examples=["https://github.com/UST-MICO/spring-boot-realworld-example-app.git"])
    """The repository to build from: https, git or ssh URL, without credentials."""
    revision: GitRevision | None = Field(default=None, examples=["v1.0.0"])
    """The tag, branch or commit to build; defaults to the service's version."""
    dockerfile: RelativePath = "Dockerfile"
    """The Dockerfile's path inside the repository."""
    context: RelativePath = "."
    """The build context's path inside the repository."""


class InterfacePort(ContractModel):
    """One port of an interface: the Kubernetes Service's port and the container's."""

    port: PortNumber = Field(examples=[80])
    """The port the Kubernetes Service listens on."""
    target_port: PortNumber = Field(examples=[8080])
    """The port the container listens on."""
    type: Literal["TCP", "UDP"] = "TCP"
    """The transport of this port."""


class Interface(ContractModel):
    """A service's interface (MICO's MicoServiceInterface): one Kubernetes Service."""

    name: ShortName = Field(examples=["backend"])
    """The interface's name, unique in its service; part of the Kubernetes Service's name."""
    description: Text = ""
    """What the interface offers, for people."""
    protocol: Annotated[str, StringConstraints(max_length=64)] = Field("", examples=["HTTP"])
    """The application protocol, for people and the graph (e.g. HTTP, gRPC)."""
    transport_protocol: Annotated[str, StringConstraints(max_length=64)] = Field("", examples=["TCP"])
    """The transport protocol, for people (each port has its own `type`)."""
    public: bool = True
    """Reachable from outside the cluster: a LoadBalancer Service, else ClusterIP."""
    ports: Annotated[list[InterfacePort], Field(min_length=1)]
    """The interface's ports, at least one."""


class Dependency(ContractModel):
    """Another service this one needs; `validate` checks that a defined version satisfies it."""

    short_name: ShortName
    """The shortName of the service depended on."""
    version: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(examples=["^1.0.0"])
    """A semver range (npm syntax) the depended-on version must satisfy."""


class Described(ContractModel):
    """What identifies and describes a service or an application alike."""

    short_name: ShortName = Field(examples=["realworld"])
    """The identifier: lowercase letters, digits and '-', 3 to 54 characters; with `version`
    it names the element everywhere (status, history, labels)."""
    version: Version = Field(examples=["v1.0.0"])
    """A MICO version: optional letters, then SemVer 2.0."""
    name: Title
    """The human-readable name."""
    description: Text = ""
    """What it is, for people."""
    owner: Text = ""
    """Who owns it, for people."""
    contact: Text = ""
    """How to reach its owner, for people."""


class Service(Described):
    """A MICO service version: built from `source` or run from `image` (exactly one)."""

    source: GitSource | None = None
    """Build the image from this git repository (exactly one of `source` and `image`)."""
    image: ImageRef | None = Field(None, examples=["docker.io/ustmico/msg-validator:v1.0.0"])
    """Run this image (exactly one of `source` and `image`)."""
    interfaces: list[Interface] = []
    """The interfaces the service offers, each a Kubernetes Service."""
    dependencies: list[Dependency] = []
    """Services this one needs, by shortName and version range."""
    kafka_enabled: bool = False
    """The service talks to Kafka: it gets the broker and its topics in its environment."""
    resources: Resources | None = None
    """Requests and limits for each pod of this version; a deployment entry may override them."""
    readiness_probe: Probe | None = None
    """When a pod takes traffic: until it passes, the pod is not ready and MICO's status stays Pending."""
    liveness_probe: Probe | None = None
    """When a pod is restarted: after `failureThreshold` failed checks in a row."""
    image_pull_secrets: list[ObjectName] = Field([], examples=[["registry-credentials"]])
    """Secrets (type docker-config, in the workload namespace) to pull a private image with."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["source"]}, {"required": ["image"]}]}
    )

    @model_validator(mode="after")
    def _source_or_image(self, info: ValidationInfo) -> Service:
        partial = isinstance(info.context, dict) and info.context.get("partial")
        if not partial and (self.source is None) == (self.image is None):
            raise ValueError("give exactly one of 'source' (build from git) or 'image'")
        return self


class InterfaceConnection(ContractModel):
    """Tell this instance where another service's interface is, in an environment variable."""

    env: EnvName = Field(examples=["BACKEND_REST_API"])
    """The environment variable that gets the interface's address."""
    service: ShortName
    """The shortName of a service of the same application that provides the interface."""
    interface: ShortName
    """The name of that service's interface."""


class Topic(ContractModel):
    """A Kafka topic this instance uses; created when missing."""

    name: TopicName = Field(examples=["transform-request"])
    """The topic's name."""
    role: TopicRole
    """How the instance uses it; each role becomes its KAFKA_TOPIC_* environment variable."""


ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN)]
ConfigKey = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=CONFIG_KEY_PATTERN)]
Quantity = Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY_PATTERN)]


class EnvSource(ContractModel):
    """Every key of an existing Secret or ConfigMap in the workload namespace as a variable
    (exactly one of `secret` and `configMap`); the reconciler names it, it never reads it."""

    secret: ObjectName | None = Field(None, examples=["realworld-db"])
    """The Secret's name."""
    config_map: ObjectName | None = None
    """The ConfigMap's name."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["secret"]}, {"required": ["configMap"]}]}
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvSource:
        if (self.secret is None) == (self.config_map is None):
            raise ValueError("give exactly one of 'secret' and 'configMap'")
        return self


class ValueFrom(EnvSource):
    """One key of an existing Secret or ConfigMap: the value of one variable."""

    key: ConfigKey = Field(examples=["password"])
    """The key whose value the variable gets."""


class ResourceAmounts(ContractModel):
    """Kubernetes quantities: CPU in cores or millicores (`500m`), memory and ephemeral
    storage in bytes with a suffix (`512Mi`, `1Gi`)."""

    cpu: Quantity | None = Field(None, examples=["500m"])
    """CPU: cores (`2`) or millicores (`500m`)."""
    memory: Quantity | None = Field(None, examples=["512Mi"])
    """Memory in bytes, e.g. `512Mi` or `1Gi`."""
    ephemeral_storage: Quantity | None = Field(None, examples=["1Gi"])
    """Local ephemeral storage (container writable layer, logs, emptyDir) in bytes."""


class Resources(ContractModel):
    """What the scheduler reserves for each pod (`requests`) and what it may use (`limits`)."""

    requests: ResourceAmounts = ResourceAmounts()
    """Reserved for the pod: the scheduler places it only where these fit."""
    limits: ResourceAmounts = ResourceAmounts()
    """The most the pod may use: more CPU is throttled, more memory ends the container."""


ProbePath = Annotated[str, StringConstraints(max_length=1024, pattern=PROBE_PATH_PATTERN)]
CommandArgument = Annotated[str, StringConstraints(max_length=4096, pattern=COMMAND_ARGUMENT_PATTERN)]
Seconds = Annotated[int, Field(ge=1, le=3600), BeforeValidator(_integral_float_to_int)]


class PortCheck(ContractModel):
    """Where a check connects: an interface of the service (its first port's targetPort) or a
    container port that is no interface (e.g. a management port); exactly one."""

    interface: ShortName | None = None
    """The name of one of the service's interfaces."""
    port: PortNumber | None = None
    """A container port."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["interface"]}, {"required": ["port"]}]}
    )

    @model_validator(mode="after")
    def _one_target(self) -> PortCheck:
        if (self.interface is None) == (self.port is None):
            raise ValueError("give exactly one of 'interface' and 'port'")
        return self


class HttpCheck(PortCheck):
    """An HTTP GET: any status from 200 to 399 passes."""

    path: ProbePath = Field("/", examples=["/actuator/health"])
    """The path to request."""


class ExecCheck(ContractModel):
    """A command run in the container: exit status 0 passes."""

    command: Annotated[list[CommandArgument], Field(min_length=1, max_length=32)] = Field(
        examples=[["pg_isready", "--host", "localhost"]]
    )
    """The program and its arguments (no shell unless you name one)."""


class Probe(ContractModel):
    """A check the kubelet runs on each container (exactly one of `http`, `tcp` and `exec`)."""

    http: HttpCheck | None = None
    """An HTTP GET on a port."""
    tcp: PortCheck | None = None
    """A TCP connection to a port."""
    exec: ExecCheck | None = None
    """A command in the container."""
    initial_delay_seconds: Annotated[int, Field(ge=0, le=3600), BeforeValidator(_integral_float_to_int)] = 0
    """Seconds after the container starts before the first check."""
    period_seconds: Seconds = 10
    """Seconds between checks."""
    timeout_seconds: Seconds = 2
    """Seconds a check may take."""
    failure_threshold: Annotated[int, Field(ge=1, le=100), BeforeValidator(_integral_float_to_int)] = 3
    """Failed checks in a row that count: not ready (readiness) or restarted (liveness)."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["http"]}, {"required": ["tcp"]}, {"required": ["exec"]}]}
    )

    @model_validator(mode="after")
    def _one_check(self) -> Probe:
        if sum(check is not None for check in (self.http, self.tcp, self.exec)) != 1:
            raise ValueError("give exactly one of 'http', 'tcp' and 'exec'")
        return self


class DeploymentInfo(ContractModel):
    """MICO's per-instance deployment info, the same for a service entry and a connector."""

    replicas: Replicas = 1
    """Pods to run; entries that share an instance add theirs up (MICO's scale-out)."""
    labels: dict[LabelKey, LabelValue] = Field({}, examples=[{"tier": "backend"}])
    """Kubernetes labels for the Deployment and its pods."""
    env: dict[EnvName, Annotated[str, StringConstraints(max_length=32768)]] = Field(
        {}, examples=[{"LOG_LEVEL": "info"}]
    )
    """Plain environment variables (never secrets: the config is in git; see `envRefs`)."""
    env_refs: dict[EnvName, ValueFrom] = Field(
        {}, examples=[{"DB_PASSWORD": {"secret": "realworld-db", "key": "password"}}]
    )
    """Variables whose values stay in the cluster: a key of an existing Secret or ConfigMap."""
    env_from: list[EnvSource] = Field([], examples=[[{"configMap": "realworld-settings"}]])
    """Existing Secrets and ConfigMaps whose every key becomes a variable."""
    resources: Resources | None = None
    """Requests and limits for this instance, over the service version's (per amount)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "Always"
    """When the kubelet pulls the image."""


class ServiceDeployment(DeploymentInfo):
    """A service version this application deploys, with its deployment info. Entries of
    several applications with the same service version (and `instance`) share one instance."""

    short_name: ShortName
    """The shortName of a service defined in `services`."""
    version: Version
    """The version of that service."""
    instance: DnsLabel | None = None
    """A name for a separate instance: entries share an instance only when this is the same."""
    interface_connections: list[InterfaceConnection] = []
    """Interfaces of other services of this application, passed in environment variables."""
    topics: list[Topic] = []
    """The Kafka topics this instance reads and writes (needs `kafkaEnabled`)."""


class KafkaFaasConnector(DeploymentInfo):
    """A Kafka-FaaS-connector: reads a topic, calls an OpenFaaS function, writes the result."""

    instance: DnsLabel = Field(examples=["transformer"])
    """The connector's name, unique in its application."""
    function: DnsLabel | None = None
    """The OpenFaaS function to call; without one, events pass through unchanged."""
    input_topic: TopicName
    """The topic it reads."""
    output_topic: TopicName | None = None
    """The topic it writes to, unless an event's routing slip says otherwise."""


class Application(Described):
    """A MICO application: service versions deployed together."""

    deploy: bool = True
    """Deploy it; false keeps the definition without running anything."""
    services: list[ServiceDeployment] = []
    """The service versions it deploys, each with its deployment info."""
    kafka_faas_connectors: list[KafkaFaasConnector] = []
    """Kafka-FaaS-connector instances between its topics."""

    @property
    def key(self) -> str:
        """`shortName@version`: how status, history, annotations and rollouts name it."""
        return f"{self.short_name}@{self.version}"


class Document(ContractModel):
    """One YAML document of a mico.yaml file."""

    api_version: Literal["ust.mico/v1"]
    """The contract's version: ust.mico/v1."""
    services: list[Service] = []
    """Service versions, each defined once across all files."""
    applications: list[Application] = []
    """Applications, each defined once across all files."""
