"""The connector's configuration: the environment variables the reconciler renders for each
Kafka-FaaS-connector instance, with MICO's defaults, plus a few tunables of this runtime. Each
value is checked before anything connects; a wrong one is named in one line, never echoed
back when it could hold a credential."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

_TOPIC = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,249}")
_FUNCTION = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?")
_GROUP = re.compile(r"[A-Za-z0-9._-]{1,255}")
_BOOTSTRAP = re.compile(r"[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}(,[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5})*")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Config:
    bootstrap_servers: str
    group_id: str = "mico"
    input_topic: str = "transform-request"
    #: None: every event must carry a routing slip (the reconciler sets no KAFKA_TOPIC_OUTPUT
    #: for a connector without an output topic)
    output_topic: str | None = None
    invalid_message_topic: str = "InvalidMessage"
    dead_letter_topic: str = "DeadLetter"
    test_message_output_topic: str = "TestMessagesOutput"
    gateway: str = "http://127.0.0.1:8080"
    #: None: events pass through unchanged
    function: str | None = None
    function_timeout_seconds: float = 10.0
    #: the longest wait between tries of a record whose function is unreachable
    retry_max_seconds: float = 30.0
    http_port: int = 8080

    @property
    def origin(self) -> str:
        """The `source` of the error events this connector writes."""
        return f"kafka://{self.group_id}/{self.input_topic}"


def from_environment(env: Mapping[str, str]) -> Config:
    wrong: list[str] = []

    def get(name: str, pattern: re.Pattern[str] | None, default: str | None) -> str | None:
        value = env.get(name, "") or default
        if value is not None and pattern is not None and not pattern.fullmatch(value):
            wrong.append(f"{name}: {_expected(pattern)}")
        return value

    def number(name: str, default: float, low: float, high: float) -> float:
        text = env.get(name, "")
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            wrong.append(f"{name}: expected a number from {low:g} to {high:g}")
            return default
        return value

    bootstrap = get("KAFKA_BOOTSTRAP_SERVERS", _BOOTSTRAP, None)
    if bootstrap is None:
        wrong.append("KAFKA_BOOTSTRAP_SERVERS: not set (host:port[,host:port...])")
    gateway = env.get("OPENFAAS_GATEWAY", "") or Config.gateway
    if not _gateway(gateway):
        wrong.append("OPENFAAS_GATEWAY: expected an http(s) URL without credentials or query, port 1-65535")
    config = Config(
        bootstrap_servers=bootstrap or "",
        group_id=get("KAFKA_GROUP_ID", _GROUP, Config.group_id) or Config.group_id,
        input_topic=get("KAFKA_TOPIC_INPUT", _TOPIC, Config.input_topic) or Config.input_topic,
        output_topic=get("KAFKA_TOPIC_OUTPUT", _TOPIC, None),
        invalid_message_topic=get("KAFKA_TOPIC_INVALID_MESSAGE", _TOPIC, Config.invalid_message_topic) or "",
        dead_letter_topic=get("KAFKA_TOPIC_DEAD_LETTER", _TOPIC, Config.dead_letter_topic) or "",
        test_message_output_topic=get(
            "KAFKA_TOPIC_TEST_MESSAGE_OUTPUT", _TOPIC, Config.test_message_output_topic
        )
        or "",
        gateway=gateway,
        function=get("OPENFAAS_FUNCTION_NAME", _FUNCTION, None),
        function_timeout_seconds=number("CONNECTOR_FUNCTION_TIMEOUT_SECONDS", 10.0, 0.1, 600),
        retry_max_seconds=number("CONNECTOR_RETRY_MAX_SECONDS", 30.0, 0.1, 3600),
        http_port=int(number("CONNECTOR_HTTP_PORT", 8080, 1, 65535)),
    )
    if wrong:
        raise ConfigError("invalid configuration: " + "; ".join(wrong))
    return config


def _gateway(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.username or parts.password or parts.query or parts.fragment)
        and port != 0
        and url.isprintable()
    )


def _expected(pattern: re.Pattern[str]) -> str:
    return {
        _TOPIC: "a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)",
        _FUNCTION: "an OpenFaaS function name (a DNS label, optionally .namespace)",
        _GROUP: "a consumer group id (letters, digits, '.', '_', '-')",
        _BOOTSTRAP: "host:port[,host:port...]",
    }[pattern]
