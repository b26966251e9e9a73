"""Render settings: where objects go and what the daemon wires into them.

Each value reaches object names, container args or environment variables, so each is
validated here, once, with MICO's defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from reconciler.spec.model import DNS_LABEL_PATTERN, IMAGE_PATTERN, TOPIC_PATTERN

_REGISTRY = r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
_BOOTSTRAP = r"^[A-Za-z0-9.-]+:[0-9]{1,5}(,[A-Za-z0-9.-]+:[0-9]{1,5})*$"
_HTTP_URL = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$"
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class SettingsError(ValueError):
    """A setting would put an unsafe or malformed value into an object."""


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
    connector_image: str = "docker.io/ustmico/kafka-faas-connector:latest"
    kaniko_image: str = "gcr.io/kaniko-project/executor:v1.23.2"
    registry_secret: str = "mico-registry-credentials"  # noqa: S105 - a Secret's name, not a secret
    build_deadline_seconds: int = 600
    build_ttl_seconds: int = 3600
    build_backoff_limit: int = 0
    build_cpu_request: str = "500m"
    build_cpu_limit: str = "2"
    build_memory_request: str = "1Gi"
    build_memory_limit: str = "4Gi"

    def __post_init__(self) -> None:
        wrong = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if not _valid(f.name, getattr(self, f.name))
        ]
        if wrong:
            raise SettingsError("invalid settings: " + ", ".join(wrong))


_RULES: dict[str, str] = {
    "namespace": DNS_LABEL_PATTERN,
    "build_namespace": DNS_LABEL_PATTERN,
    "registry": _REGISTRY,
    "kafka_bootstrap_servers": _BOOTSTRAP,
    "invalid_message_topic": TOPIC_PATTERN,
    "dead_letter_topic": TOPIC_PATTERN,
    "test_message_output_topic": TOPIC_PATTERN,
    "openfaas_gateway": _HTTP_URL,
    "connector_image": IMAGE_PATTERN,
    "kaniko_image": IMAGE_PATTERN,
    "registry_secret": _DNS_SUBDOMAIN,
    "build_cpu_request": _QUANTITY,
    "build_cpu_limit": _QUANTITY,
    "build_memory_request": _QUANTITY,
    "build_memory_limit": _QUANTITY,
}


def _valid(name: str, value: object) -> bool:
    if isinstance(value, int):
        return (0 if name == "build_backoff_limit" else 1) <= value <= 86_400 * 7
    return isinstance(value, str) and len(value) <= 253 and re.fullmatch(_RULES[name], value) is not None
