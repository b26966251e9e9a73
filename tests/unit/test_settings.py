"""Render settings are checked before anything runs; an error names the setting, never the value."""

from __future__ import annotations

import pytest

from reconciler.render.settings import Settings, SettingsError, image_tag, problem

SECRET = "hunter2"


def test_defaults_are_valid() -> None:
    Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("namespace", "n" * 64),
        ("namespace", "Upper"),
        ("build_namespace", "-leading"),
        ("invalid_message_topic", "."),
        ("dead_letter_topic", ".."),
        ("test_message_output_topic", "t" * 250),
        ("dead_letter_topic", ""),
        ("kafka_bootstrap_servers", "broker:65536"),
        ("kafka_bootstrap_servers", "broker:0"),
        ("kafka_bootstrap_servers", "a:9092,b:99999"),
        ("kafka_bootstrap_servers", f"SASL_SSL://user:{SECRET}@broker:9093"),
        ("registry", f"user:{SECRET}@registry.example.com"),
        ("registry", "registry.example.com:70000/team"),
        ("openfaas_gateway", f"http://admin:{SECRET}@gateway:8080"),
        ("openfaas_gateway", "http://gateway:0"),
        ("connector_image", "docker.io/ustmico/kafka-faas-connector:latest-"),
        ("connector_image", "docker.io/ustmico/kafka-faas-connector:" + "v" * 64),
        ("connector_image", "docker.io/ustmico/kafka-faas-connector:" + "v" * 128),
        ("connector_image", "docker.io/ustmico/kafka-faas-connector:latest"),
        ("connector_image", "registry:5000/connector"),  # untagged means latest
        ("connector_command", "mico-kafka-faas-connector --debug"),
        ("connector_command", "sh -c 'curl evil'"),
        ("connector_command", "/"),
        ("connector_command", "/usr//bin/x"),
        ("connector_command", "bin/"),
        ("connector_command", "$(id)"),
        ("kaniko_image", "not an image"),
        ("build_deadline_seconds", 0),
        ("build_ttl_seconds", -1),
        ("build_backoff_limit", -1),
        ("build_deadline_seconds", True),
    ],
)
def test_invalid_values_are_refused_by_name(name: str, value: object) -> None:
    assert problem(name, value) is not None
    with pytest.raises(SettingsError) as error:
        Settings(**{name: value})  # type: ignore[arg-type]
    assert list(error.value.wrong) == [name]
    assert name in str(error.value)
    assert SECRET not in str(error.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("namespace", "n" * 63),
        ("test_message_output_topic", "t" * 249),
        ("dead_letter_topic", "a..b"),
        ("kafka_bootstrap_servers", "a:1,b:65535"),
        ("registry", "registry.example.com:5000/team/sub"),
        ("openfaas_gateway", "https://gateway.example.com/base"),
        ("connector_image", "docker.io/ustmico/kafka-faas-connector:1.0.0_build.7"),
        ("connector_image", "docker.io/ustmico/kafka-faas-connector@sha256:" + "a" * 64),
        ("connector_image", "registry:5000/connector:v1.0.2"),
        ("connector_command", ""),  # the image's own entrypoint
        ("connector_command", "/usr/local/bin/mico-kafka-faas-connector"),
        ("build_backoff_limit", 0),
    ],
)
def test_edge_values_are_accepted(name: str, value: object) -> None:
    assert problem(name, value) is None
    Settings(**{name: value})  # type: ignore[arg-type]


def test_every_wrong_setting_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        Settings(namespace="x" * 64, dead_letter_topic=".")
    assert set(error.value.wrong) == {"namespace", "dead_letter_topic"}
    assert len(str(error.value).splitlines()) == 1


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("docker.io/ustmico/c:1.2", "1.2"),
        ("registry:5000/c", None),
        ("registry:5000/c:v1", "v1"),
        ("c@sha256:" + "0" * 64, None),
        ("c:v2@sha256:" + "0" * 64, "v2"),
    ],
)
def test_image_tag(image: str, tag: str | None) -> None:
    assert image_tag(image) == tag
