"""Production workload settings in the contract: values by reference to Secrets and ConfigMaps,
resources, private registries. Validated with positions, rendered as Kubernetes has them, and
agreed on by every entry that shares an instance."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from reconciler.render import Settings, render
from reconciler.render.quantities import canonical
from reconciler.spec.loader import Spec
from tests.helpers import dump, example_data, load_data, problems_of

BACKEND = "spring-boot-realworld-example-app"
VALIDATOR = "msg-validator"


def entry(data: dict[str, Any], app: str, service: str) -> dict[str, Any]:
    found = next(a for a in data["applications"] if a["shortName"] == app)
    return next(e for e in found["services"] if e["shortName"] == service)


def definition(data: dict[str, Any], service: str) -> dict[str, Any]:
    return next(s for s in data["services"] if s["shortName"] == service)


def production() -> dict[str, Any]:
    data = example_data()
    definition(data, BACKEND)["resources"] = {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"memory": "1Gi", "ephemeralStorage": "2Gi"},
    }
    definition(data, VALIDATOR)["imagePullSecrets"] = ["ustmico-registry"]
    entry(data, "realworld", BACKEND).update(
        envRefs={
            "SPRING_DATASOURCE_PASSWORD": {"secret": "realworld-db", "key": "password"},
            "FEATURES": {"configMap": "realworld-settings", "key": "features.json"},
        },
        envFrom=[{"configMap": "realworld-settings"}, {"secret": "realworld-api-keys"}],
        resources={"requests": {"cpu": "1"}, "limits": {"cpu": "2"}},
    )
    data["applications"][1]["kafkaFaasConnectors"][0].update(
        envRefs={"TOKEN": {"secret": "gateway-token", "key": "token"}},
        resources={"limits": {"memory": "256Mi"}},
    )
    return data


def deployment(spec: Spec, prefix: str, settings: Settings | None = None) -> dict[str, Any]:
    (found,) = [
        o
        for o in render(spec, settings or Settings())
        if o["kind"] == "Deployment" and o["metadata"]["name"].startswith(prefix)
    ]
    return found


def container(obj: dict[str, Any]) -> dict[str, Any]:
    (only,) = obj["spec"]["template"]["spec"]["containers"]
    return only


def test_references_resources_and_pull_secrets_are_rendered_as_kubernetes_has_them() -> None:
    spec = load_data(production())
    backend = container(deployment(spec, BACKEND))
    assert backend["env"] == [
        {
            "name": "SPRING_DATASOURCE_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "realworld-db", "key": "password"}},
        },
        {
            "name": "FEATURES",
            "valueFrom": {"configMapKeyRef": {"name": "realworld-settings", "key": "features.json"}},
        },
    ]
    assert backend["envFrom"] == [
        {"configMapRef": {"name": "realworld-settings"}},
        {"secretRef": {"name": "realworld-api-keys"}},
    ]
    # the entry's amounts over the service version's, amount by amount
    assert backend["resources"] == {
        "requests": {"cpu": "1", "memory": "512Mi"},
        "limits": {"memory": "1Gi", "ephemeral-storage": "2Gi", "cpu": "2"},
    }
    validator = deployment(spec, VALIDATOR, Settings(workload_image_pull_secrets="shared,ustmico-registry"))
    assert validator["spec"]["template"]["spec"]["imagePullSecrets"] == [
        {"name": "ustmico-registry"},
        {"name": "shared"},
    ]
    connector = container(deployment(spec, "kafka-faas-connector"))
    assert connector["env"][-1] == {
        "name": "TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "gateway-token", "key": "token"}},
    }
    assert connector["resources"] == {"limits": {"memory": "256Mi"}}
    for obj in render(spec, Settings(workload_image_pull_secrets="shared")):
        kubernetes_validate.validate(obj, "1.36", strict=True)


def test_without_them_nothing_is_added() -> None:
    frontend = container(deployment(load_data(example_data()), "react-redux"))
    assert not {"envFrom", "resources"} & frontend.keys()
    assert (
        "imagePullSecrets" not in deployment(load_data(example_data()), VALIDATOR)["spec"]["template"]["spec"]
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda d: definition(d, BACKEND).update(resources={"requests": {"cpu": "half a core"}}),
            "services[0].resources.requests.cpu: 'half a core' is not a Kubernetes quantity such as 500m",
        ),
        (
            lambda d: entry(d, "realworld", BACKEND).update(resources={"limits": {"gpu": "1"}}),
            "applications[0].services[1].resources.limits.gpu: unknown field 'gpu'",
        ),
        (
            lambda d: entry(d, "realworld", BACKEND).update(
                envRefs={"DB": {"secret": "db", "configMap": "db", "key": "k"}}
            ),
            "applications[0].services[1].envRefs.DB: give exactly one of 'secret' and 'configMap'",
        ),
        (
            lambda d: entry(d, "realworld", BACKEND).update(
                envRefs={"DB": {"secret": "Bad_Name", "key": "k"}}
            ),
            "applications[0].services[1].envRefs.DB.secret: 'Bad_Name' is not a Kubernetes object name",
        ),
        (
            lambda d: entry(d, "realworld", BACKEND).update(envRefs={"DB": {"secret": "db", "key": "a/b"}}),
            "applications[0].services[1].envRefs.DB.key: 'a/b' is not a Secret or ConfigMap key",
        ),
        (
            lambda d: entry(d, "realworld", BACKEND).update(envFrom=[{}]),
            "applications[0].services[1].envFrom[0]: give exactly one of 'secret' and 'configMap'",
        ),
        (
            lambda d: entry(d, "realworld", BACKEND).update(
                env={"DB": "plain"}, envRefs={"DB": {"secret": "db", "key": "k"}}
            ),
            "applications[0].services[1].envRefs.DB: variable 'DB' is already set by env.DB",
        ),
        (
            lambda d: entry(d, "messaging-example", "msg-validator").update(
                envRefs={"KAFKA_GROUP_ID": {"configMap": "c", "key": "k"}}
            ),
            "applications[1].services[1].envRefs.KAFKA_GROUP_ID: KAFKA_GROUP_ID is set by the reconciler",
        ),
        (
            lambda d: d["applications"][1]["kafkaFaasConnectors"][0].update(
                envRefs={"OPENFAAS_GATEWAY": {"secret": "s", "key": "k"}}
            ),
            "applications[1].kafkaFaasConnectors[0].envRefs.OPENFAAS_GATEWAY: OPENFAAS_GATEWAY is set by",
        ),
        (
            lambda d: definition(d, VALIDATOR).update(imagePullSecrets=["UPPER"]),
            "services[3].imagePullSecrets[0]: 'UPPER' is not a Kubernetes object name",
        ),
    ],
)
def test_wrong_values_are_problems_with_their_position(change: Any, problem: str) -> None:
    data = example_data()
    change(data)
    found = problems_of({"mico.yaml": dump(data)})
    assert any(problem in line for line in found), found
    assert all(line.startswith("mico.yaml:") and line.split(":")[1].isdigit() for line in found), found


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("resources", {"requests": {"cpu": "2"}}),
        ("envRefs", {"DB": {"secret": "other-db", "key": "password"}}),
        ("envFrom", [{"secret": "other"}]),
    ],
)
def test_entries_that_share_an_instance_must_agree(field: str, value: Any) -> None:
    data = example_data()
    shared = dict(entry(data, "realworld", BACKEND), replicas=1)
    data["applications"].append(
        {"shortName": "admin", "version": "v1.0.0", "name": "Admin", "services": [shared | {field: value}]}
    )
    found = problems_of({"mico.yaml": dump(data)})
    assert len(found) == 1, found
    assert (
        f"applications[2].services[0].{field}: '{BACKEND}' is shared with application 'realworld'" in found[0]
    )
    assert "(mico.yaml:" in found[0]  # where the other entry is
    data["applications"][2]["services"][0] = shared | {field: value}
    entry(data, "realworld", BACKEND)[field] = value
    assert problems_of({"mico.yaml": dump(data)}) == []


def test_probes_are_rendered_on_the_interface_s_target_port_with_their_timings() -> None:
    data = example_data()
    definition(data, BACKEND).update(
        readinessProbe={
            "http": {"interface": "backend", "path": "/actuator/health?full=1"},
            "periodSeconds": 5,
        },
        livenessProbe={"tcp": {"port": 8081}, "initialDelaySeconds": 30, "failureThreshold": 5},
    )
    definition(data, VALIDATOR)["readinessProbe"] = {"exec": {"command": ["sh", "-c", "test -f /tmp/ready"]}}
    spec = load_data(data)
    backend = container(deployment(spec, BACKEND))
    assert backend["readinessProbe"] == {
        "httpGet": {"path": "/actuator/health?full=1", "port": 8080},  # the interface's targetPort
        "periodSeconds": 5,  # no initialDelaySeconds: a 0 is not stored, and would be drift
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    assert backend["livenessProbe"] == {
        "tcpSocket": {"port": 8081},
        "initialDelaySeconds": 30,
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 5,
    }
    validator = container(deployment(spec, VALIDATOR))
    assert validator["readinessProbe"]["exec"] == {"command": ["sh", "-c", "test -f /tmp/ready"]}
    assert "livenessProbe" not in validator
    for obj in render(spec, Settings()):
        kubernetes_validate.validate(obj, "1.36", strict=True)


PROBE = "services[0].readinessProbe"


@pytest.mark.parametrize(
    ("probe", "problem"),
    [
        ({"http": {"interface": "nope"}}, f"{PROBE}.http.interface: the service has no interface 'nope'"),
        ({"tcp": {"interface": "backend", "port": 80}}, f"{PROBE}.tcp: give exactly one of 'interface'"),
        ({"http": {"port": 80}, "exec": {"command": ["true"]}}, f"{PROBE}: give exactly one of 'http'"),
        ({"http": {"port": 80, "path": "no-slash"}}, f"{PROBE}.http.path: 'no-slash' is not a URL path"),
        ({"exec": {"command": []}}, f"{PROBE}.exec.command: "),
        (
            {"exec": {"command": ["sh", "-c", "a\nb"]}},
            f"{PROBE}.exec.command[2]: 'a\\nb' is not text without",
        ),
        ({"tcp": {"port": 80}, "periodSeconds": 0}, f"{PROBE}.periodSeconds: "),
    ],
)
def test_wrong_probes_are_problems_with_their_position(probe: dict[str, Any], problem: str) -> None:
    data = example_data()
    definition(data, BACKEND)["readinessProbe"] = probe
    found = problems_of({"mico.yaml": dump(data)})
    assert any(problem in line for line in found), found


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("100m", "100m"), ("0.1", "100m"), ("1000m", "1"), ("1.5", "1500m"), ("2000", "2k"),
        ("1500", "1500"), ("0.0001", "1m"), ("0", "0"), ("1G", "1G"), ("1000M", "1G"),
        ("500Mi", "500Mi"), ("1024Mi", "1Gi"), ("1.5Gi", "1536Mi"), ("0.5Ki", "512"),
        ("1048576Ki", "1Gi"),
    ],
)  # fmt: skip
def test_quantities_are_rendered_as_the_apiserver_stores_them(written: str, stored: str) -> None:
    """Else a rendered `1000m` never equals the live `1`: drift on every run (the platform test
    applies these and finds no drift)."""
    assert canonical(written) == stored


def test_the_namespace_defaults_come_first_and_are_overridden_amount_by_amount() -> None:
    defaults = Settings(
        workload_cpu_request="0.1", workload_memory_request="128Mi", workload_memory_limit="512Mi"
    )
    spec = load_data(production())
    assert container(deployment(load_data(example_data()), "react-redux", defaults))["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert container(deployment(spec, BACKEND, defaults))["resources"] == {
        "requests": {"cpu": "1", "memory": "512Mi"},  # the entry's cpu, the version's memory
        "limits": {"memory": "1Gi", "ephemeral-storage": "2Gi", "cpu": "2"},
    }
    assert container(deployment(spec, "kafka-faas-connector", defaults))["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }
