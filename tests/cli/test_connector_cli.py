"""`mico-kafka-faas-connector` refuses a wrong environment in one line, before connecting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def connector(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "OPENFAAS_", "CONNECTOR_"))}
    return subprocess.run(
        [sys.executable, "-m", "faas_connector", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "KAFKA_BOOTSTRAP_SERVERS: not set"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPIC_INPUT": "a/b"}, "KAFKA_TOPIC_INPUT"),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "OPENFAAS_GATEWAY": "http://u:hunter2@gw"},
            "OPENFAAS_GATEWAY",
        ),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "OPENFAAS_FUNCTION_NAME": "a b"}, "OPENFAAS_FUNCTION_NAME"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "CONNECTOR_HTTP_PORT": "99999"}, "CONNECTOR_HTTP_PORT"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "OPENFAAS_GATEWAY": "http://[gw"}, "OPENFAAS_GATEWAY"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "OPENFAAS_GATEWAY": "http://gw:99999"}, "OPENFAAS_GATEWAY"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPIC_OUTPUT": ".."}, "KAFKA_TOPIC_OUTPUT"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092\nInjected: x"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ],
)
def test_a_wrong_environment_is_one_line(env: dict[str, str], named: str) -> None:
    result = connector(env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mico-kafka-faas-connector: invalid configuration: ")
    assert named in lines[0]
    assert "hunter2" not in result.stderr
    assert "Injected" not in result.stderr


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = connector({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "CONNECTOR_HTTP_PORT": str(port)})
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"mico-kafka-faas-connector: port {port}: Address already in use")


def test_version() -> None:
    result = connector({}, "--version")
    assert result.returncode == 0
    assert result.stdout.startswith("mico-kafka-faas-connector ")
