"""Render settings: where objects go and what the daemon wires into them.

Each value reaches object names, container args, label values or environment variables, so
each is validated here, once, with MICO's defaults. An error names the setting and the form it
expects, never the value: a mistyped value may hold a credential (`user:token@registry`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields

from reconciler import __version__
from reconciler.spec.model import DNS_LABEL_PATTERN, IMAGE_PATTERN, LABEL_VALUE_PATTERN
from reconciler.spec.names import MAX_NAME, label_safe

_REGISTRY = r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
_BOOTSTRAP = r"^[A-Za-z0-9.-]+:[0-9]{1,5}(,[A-Za-z0-9.-]+:[0-9]{1,5})*$"
_HTTP_URL = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$"
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class SettingsError(ValueError):
    """A setting would put an unsafe or malformed value into an object. `wrong` maps each such
    setting's name to the form it expects."""

    def __init__(self, wrong: dict[str, str]) -> None:
        super().__init__("invalid settings: " + "; ".join(f"{k}: expected {v}" for k, v in wrong.items()))
        self.wrong = wrong


@dataclass(frozen=True, kw_only=True)
class Settings:
    namespace: str = "mico-workspace"
    build_namespace: str = "mico-build-bot"
    registry: str = "docker.io/ustmico"
    kafka_bootstrap_servers: str = "bootstrap.kafka:9092"
    invalid_message_topic: str = "InvalidMessage"
    dead_letter_topic: str = "DeadLetter"
    test_message_output_topic: str = "TestMessagesOutput"
    openfaas_gateway: str = "http://gateway.openfaas:8080"
    #: this product's own image, which carries the connector (`make image`); pinned to this
    #: version, so a render means the same image every time
    connector_image: str = f"localhost/mico-reconciler:{__version__}"
    #: the connector's entrypoint in that image; "" runs the image's own (MICO's Java connector)
    connector_command: str = "mico-kafka-faas-connector"
    kaniko_image: str = "gcr.io/kaniko-project/executor:v1.23.2"
    #: docker-config Secrets (comma-separated, in the workload namespace) every workload pulls with
    workload_image_pull_secrets: str = ""
    #: the namespace's default requests and limits of each workload container ("" = none); a
    #: service version's `resources` and an entry's override them, amount by amount
    workload_cpu_request: str = ""
    workload_memory_request: str = ""
    workload_cpu_limit: str = ""
    workload_memory_limit: str = ""
    registry_secret: str = "mico-registry-credentials"  # noqa: S105 - a Secret's name, not a secret
    build_deadline_seconds: int = 600
    build_ttl_seconds: int = 3600
    build_backoff_limit: int = 0
    build_cpu_request: str = "500m"
    build_cpu_limit: str = "2"
    build_memory_request: str = "1Gi"
    build_memory_limit: str = "4Gi"

    def __post_init__(self) -> None:
        wrong = {
            f.name: expected
            for f in fields(self)
            if (expected := problem(f.name, getattr(self, f.name))) is not None
        }
        if wrong:
            raise SettingsError(wrong)


def problem(name: str, value: object) -> str | None:
    """None if `value` is valid for the setting `name` (a Settings field; the daemon checks its
    Lease namespace and Kafka admin servers with the rules of `namespace` and
    `kafka_bootstrap_servers`), else the form expected."""
    if name in _NUMBERS:
        low, high = _NUMBERS[name]
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return None
        return f"an integer from {low} to {high}"
    valid, expected = _RULES[name]
    if isinstance(value, str) and len(value) <= _LONGEST.get(name, 253) and valid(value):
        return None
    return expected


def image_tag(image: str) -> str | None:
    """The tag of an image reference, as the connector's version label (None if by digest only)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def _pattern(pattern: str) -> Callable[[str], bool]:
    return lambda value: re.fullmatch(pattern, value) is not None


def _with_ports(pattern: str) -> Callable[[str], bool]:
    """`pattern`, and every `:PORT` in the value from 1 to 65535."""
    return lambda value: (
        re.fullmatch(pattern, value) is not None
        and all(1 <= int(port) <= 65535 for port in re.findall(r":([0-9]+)", value))
    )


def _dns_label(value: str) -> bool:
    return len(value) <= MAX_NAME and re.fullmatch(DNS_LABEL_PATTERN, value) is not None


def _topic(value: str) -> bool:
    return value not in (".", "..") and re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", value) is not None


def _connector_image(value: str) -> bool:
    """A pinned image (a version tag, not `latest`, or a digest) whose tag, which becomes the
    connectors' `ust.mico/version` label, is a label value."""
    if re.fullmatch(IMAGE_PATTERN, value) is None:
        return False
    tag = image_tag(value)
    if tag is None:
        return "@" in value
    return (
        tag != "latest"
        and len(label_safe(tag)) <= MAX_NAME
        and re.fullmatch(LABEL_VALUE_PATTERN, label_safe(tag)) is not None
    )


_DNS_LABEL_FORM = "a DNS label: lowercase letters, digits and '-', at most 63 characters"
_TOPIC_FORM = "a Kafka topic name: 1 to 249 of a-z A-Z 0-9 . _ -, not '.' or '..'"
_QUANTITY_FORM = "a Kubernetes quantity such as 500m, 2 or 4Gi"
_IMAGE_FORM = "an image reference such as registry.example.com/team/image:tag"
_RULES: dict[str, tuple[Callable[[str], bool], str]] = {
    "namespace": (_dns_label, _DNS_LABEL_FORM),
    "build_namespace": (_dns_label, _DNS_LABEL_FORM),
    "registry": (
        _with_ports(_REGISTRY),
        "HOST[:PORT][/PATH] without scheme or credentials, port 1-65535",
    ),
    "kafka_bootstrap_servers": (
        _with_ports(_BOOTSTRAP),
        "HOST:PORT[,HOST:PORT...] without scheme or credentials, port 1-65535",
    ),
    "invalid_message_topic": (_topic, _TOPIC_FORM),
    "dead_letter_topic": (_topic, _TOPIC_FORM),
    "test_message_output_topic": (_topic, _TOPIC_FORM),
    "openfaas_gateway": (
        _with_ports(_HTTP_URL),
        "http(s)://HOST[:PORT][/PATH] without credentials, port 1-65535",
    ),
    "connector_image": (
        _connector_image,
        _IMAGE_FORM + " pinned by a version tag (not latest) or a digest; the tag is a label value "
        "(at most 63 characters, beginning and ending with a letter or digit)",
    ),
    "connector_command": (
        _pattern(r"(/?[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?"),
        "an executable's name or absolute path (letters, digits, '.', '_', '-', '/'), or empty "
        "for the image's entrypoint",
    ),
    "kaniko_image": (_pattern(IMAGE_PATTERN), _IMAGE_FORM),
    "workload_image_pull_secrets": (
        _pattern(rf"({DNS_SUBDOMAIN[1:-1]}(,{DNS_SUBDOMAIN[1:-1]})*)?"),
        "Secret names (DNS subdomains) separated by commas, or empty",
    ),
    "registry_secret": (_pattern(DNS_SUBDOMAIN), "a Secret name (a DNS subdomain)"),
    **dict.fromkeys(
        ("workload_cpu_request", "workload_memory_request", "workload_cpu_limit", "workload_memory_limit"),
        (_pattern(f"({_QUANTITY[1:-1]})?"), _QUANTITY_FORM + ", or empty for none"),
    ),
    "build_cpu_request": (_pattern(_QUANTITY), _QUANTITY_FORM),
    "build_cpu_limit": (_pattern(_QUANTITY), _QUANTITY_FORM),
    "build_memory_request": (_pattern(_QUANTITY), _QUANTITY_FORM),
    "build_memory_limit": (_pattern(_QUANTITY), _QUANTITY_FORM),
}
#: a list of names may be longer than one
_LONGEST = {"workload_image_pull_secrets": 2048}
_WEEK = 86_400 * 7
_NUMBERS: dict[str, tuple[int, int]] = {
    "build_deadline_seconds": (1, _WEEK),
    "build_ttl_seconds": (1, _WEEK),
    "build_backoff_limit": (0, _WEEK),
}
