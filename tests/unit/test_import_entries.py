"""`mico-reconciler import`'s pure part and its file edit: which tags become which entries, and
that adding them keeps what people wrote in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.source.edit import DuplicateServiceError, add_services
from reconciler.spec import load
from reconciler.spec.imported import (
    NotImportableError,
    exposed_ports,
    release_tags,
    service_entries,
    short_name_of,
)

URL = "https://git.example.com/team/Order_Service.git"
TAGS = ["v0.9.0", "v1.0.0", "v1.10.0", "v1.2.0", "v2.0.0-rc.1", "latest", "release-1", "1.3.0"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (URL, "order-service"),
        ("git@github.com:UST-MICO/msg-validator.git", "msg-validator"),
        ("ssh://git.example.com/x/2fast--API/", "fast-api"),
    ],
)
def test_short_name_from_the_repository_name(url: str, expected: str) -> None:
    assert short_name_of(url) == expected


def test_a_repository_name_that_makes_no_short_name_is_an_error() -> None:
    with pytest.raises(NotImportableError, match="--short-name"):
        short_name_of("https://git.example.com/x/42.git")


def test_by_default_the_latest_release_only() -> None:
    assert release_tags(TAGS) == ["v1.10.0"]  # by version, not by text; no pre-release


def test_all_version_tags_oldest_first() -> None:
    assert release_tags(TAGS, every=True) == ["v0.9.0", "v1.0.0", "v1.2.0", "1.3.0", "v1.10.0", "v2.0.0-rc.1"]


def test_tags_matching_a_pattern() -> None:
    assert release_tags(TAGS, pattern="v1.*") == ["v1.0.0", "v1.2.0", "v1.10.0"]
    assert release_tags(TAGS, pattern="nothing*") == []


def test_ports_a_dockerfile_exposes() -> None:
    dockerfile = "FROM x\nexpose 8080 9090/udp \\\n  8080/tcp\nEXPOSE $PORT 70000 53/UDP\nRUN echo EXPOSE 1\n"
    assert exposed_ports(dockerfile) == [(8080, "TCP"), (9090, "UDP"), (53, "UDP")]


def test_an_entry_per_tag_with_the_dockerfile_an_interface_per_exposed_port() -> None:
    entries, skipped = service_entries(
        URL,
        "order-service",
        {"v1.0.0": "FROM x\nEXPOSE 8080\n", "v1.1.0": None, "v1.2.0": "FROM x\n"},
        dockerfile="build/Dockerfile",
    )
    assert entries == [
        {
            "shortName": "order-service",
            "version": "v1.0.0",
            "name": "Order_Service",
            "source": {"git": URL, "dockerfile": "build/Dockerfile"},
            "interfaces": [
                {"name": "tcp-8080", "public": False, "ports": [{"port": 8080, "targetPort": 8080}]}
            ],
        }
    ]
    assert skipped == {
        "v1.1.0": "no build/Dockerfile",
        "v1.2.0": "build/Dockerfile exposes no port: give --port (or --kafka-enabled)",
    }


def test_given_ports_or_kafka_instead_of_expose() -> None:
    entries, _ = service_entries(
        URL, "order-service", {"v1.0.0": "FROM x\nEXPOSE 1\n"}, ports=[(9000, "TCP")]
    )
    assert [i["name"] for i in entries[0]["interfaces"]] == ["tcp-9000"]
    entries, _ = service_entries(URL, "order-service", {"v1.0.0": "FROM x\n"}, kafka_enabled=True)
    assert entries[0]["kafkaEnabled"] is True
    assert "interfaces" not in entries[0]


COMMENTED = """\
# yaml-language-server: $schema=../schemas/mico.schema.json
apiVersion: ust.mico/v1
services:
  # the web shop's backend
  - shortName: order-service
    version: v1.0.0
    name: "Order service"   # quoted on purpose
    image: registry.example.com/order-service:v1.0.0
    interfaces: [{name: http, ports: [{port: 80, targetPort: 8080}]}]  # flow style kept
applications: []  # none yet
"""


def test_adding_keeps_comments_order_and_quotes(tmp_path: Path) -> None:
    target = tmp_path / "mico.yaml"
    target.write_text(COMMENTED)
    add_services(target, service_entries(URL, "order-service", {"v1.1.0": "EXPOSE 80"})[0])
    text = target.read_text()
    assert text.startswith(COMMENTED.split("applications")[0])  # all before, untouched
    assert "  - shortName: order-service\n    version: v1.1.0\n" in text
    assert text.rstrip().endswith("applications: []  # none yet")
    spec = load({"mico.yaml": text.encode()})
    assert [s.version for s in spec.services] == ["v1.0.0", "v1.1.0"]


def test_a_service_version_defined_already_is_refused_and_nothing_written(tmp_path: Path) -> None:
    target = tmp_path / "mico.yaml"
    target.write_text(COMMENTED)
    entries, _ = service_entries(URL, "order-service", {"1.0.0": "EXPOSE 80", "v1.1.0": "EXPOSE 80"})
    with pytest.raises(DuplicateServiceError, match=r"order-service 1\.0\.0"):
        add_services(target, entries)
    assert target.read_text() == COMMENTED
    assert [p.name for p in tmp_path.iterdir()] == ["mico.yaml"]  # no temporary file left


def test_a_new_file_gets_the_api_version(tmp_path: Path) -> None:
    target = tmp_path / "new.mico.yaml"
    add_services(target, service_entries(URL, "order-service", {"v1.0.0": "EXPOSE 80"})[0])
    spec = load({"new.mico.yaml": target.read_bytes()})
    assert [(s.short_name, s.version) for s in spec.services] == [("order-service", "v1.0.0")]
