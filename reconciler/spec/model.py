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
    git: GitUrl
    revision: GitRevision | None = Field(default=None, description="defaults to the version")
    dockerfile: RelativePath = "Dockerfile"
    context: RelativePath = "."


class InterfacePort(ContractModel):
    port: PortNumber
    target_port: PortNumber
    type: Literal["TCP", "UDP"] = "TCP"


class Interface(ContractModel):
    name: ShortName
    description: Text = ""
    protocol: Annotated[str, StringConstraints(max_length=64)] = ""
    transport_protocol: Annotated[str, StringConstraints(max_length=64)] = ""
    public: bool = True
    ports: Annotated[list[InterfacePort], Field(min_length=1)]


class Dependency(ContractModel):
    short_name: ShortName
    version: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Described(ContractModel):
    """What identifies and describes a service or an application alike."""

    short_name: ShortName
    version: Version
    name: Title
    description: Text = ""
    owner: Text = ""
    contact: Text = ""


class Service(Described):
    source: GitSource | None = None
    image: ImageRef | None = None
    interfaces: list[Interface] = []
    dependencies: list[Dependency] = []
    kafka_enabled: bool = False

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
    env: EnvName
    service: ShortName
    interface: ShortName


class Topic(ContractModel):
    name: TopicName
    role: TopicRole


class DeploymentInfo(ContractModel):
    """MICO's per-instance deployment info, the same for a service entry and a connector."""

    replicas: Replicas = 1
    labels: dict[LabelKey, LabelValue] = {}
    env: dict[EnvName, Annotated[str, StringConstraints(max_length=32768)]] = {}
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "Always"


class ServiceDeployment(DeploymentInfo):
    short_name: ShortName
    version: Version
    instance: DnsLabel | None = None
    interface_connections: list[InterfaceConnection] = []
    topics: list[Topic] = []


class KafkaFaasConnector(DeploymentInfo):
    instance: DnsLabel
    function: DnsLabel | None = None
    input_topic: TopicName
    output_topic: TopicName | None = None


class Application(Described):
    deploy: bool = True
    services: list[ServiceDeployment] = []
    kafka_faas_connectors: list[KafkaFaasConnector] = []

    @property
    def key(self) -> str:
        """`shortName@version`: how status, history, annotations and rollouts name it."""
        return f"{self.short_name}@{self.version}"


class Document(ContractModel):
    """One YAML document of a mico.yaml file."""

    api_version: Literal["ust.mico/v1"]
    services: list[Service] = []
    applications: list[Application] = []
