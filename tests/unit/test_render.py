from __future__ import annotations

import random
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from reconciler import __version__
from reconciler.render import Settings, render
from reconciler.render.manifest import to_documents, to_yaml
from reconciler.spec import load
from reconciler.spec.yamldoc import reads_as_string
from tests.helpers import ROOT, dump, example_data, load_data, sharing_entry

BACK = "spring-boot-realworld-example-app"
GOLDEN = ROOT / "tests" / "golden" / "example-objects.yaml"


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def env_of(deployment: dict[str, Any]) -> list[tuple[str, str]]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return [(e["name"], e["value"]) for e in container.get("env", [])]


def test_example_matches_golden_file() -> None:
    """After an intended change: `make golden` rewrites the file."""
    rendered = to_documents(render(load_data(example_data()), Settings()))
    assert rendered == GOLDEN.read_text()


def test_example_objects() -> None:
    objects = render(load_data(example_data()), Settings())
    assert [o["kind"] for o in objects] == ["Job"] + ["Deployment"] * 5 + ["Service"] * 3
    front = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].startswith("react-redux"))
    backend_service = next(s for s in by_kind(objects, "Service") if "spring-boot" in s["metadata"]["name"])
    assert env_of(front) == [
        ("BACKEND_REST_API", f"{backend_service['metadata']['name']}.mico-workspace.svc.cluster.local:80")
    ]
    assert backend_service["spec"]["ports"] == [
        {"name": "tcp-80", "port": 80, "targetPort": 8080, "protocol": "TCP"}
    ]
    assert backend_service["spec"]["type"] == "LoadBalancer"
    job = by_kind(objects, "Job")[0]
    assert job["metadata"]["name"] == "build-spring-boot-realworld-example-app-v1-0-0"
    assert job["metadata"]["namespace"] == "mico-build-bot"
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--destination=docker.io/ustmico/spring-boot-realworld-example-app:v1.0.0" in args
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "mico-reconciler"
        assert labels["ust.mico/instance"] == labels["app.kubernetes.io/instance"]


def test_settings_reach_the_objects() -> None:
    settings = Settings(
        namespace="apps",
        build_namespace="builds",
        registry="registry.local:5000/team",
        kafka_bootstrap_servers="kafka.local:9092",
        dead_letter_topic="dlq",
    )
    objects = render(load_data(example_data()), settings)
    assert {o["metadata"]["namespace"] for o in objects} == {"apps", "builds"}
    generator = next(
        d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].startswith("test-message")
    )
    env = dict(env_of(generator))
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka.local:9092"
    assert env["KAFKA_TOPIC_DEAD_LETTER"] == "dlq"
    backend = next(
        d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].startswith("spring-boot")
    )
    assert backend["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.local:5000/team/spring-boot-realworld-example-app:v1.0.0"
    )


def test_environment_order_for_kafka_services_and_connectors() -> None:
    data = example_data()
    data["applications"][1]["services"][0]["env"] = {"LOG_LEVEL": "debug"}
    data["applications"][1]["kafkaFaasConnectors"][0]["function"] = "faas-transformer"
    objects = render(load_data(data), Settings())
    generator = next(
        d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].startswith("test-message")
    )
    names = [name for name, _ in env_of(generator)]
    assert names == [
        "LOG_LEVEL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_GROUP_ID",
        "KAFKA_TOPIC_OUTPUT",
        "KAFKA_TOPIC_INVALID_MESSAGE",
        "KAFKA_TOPIC_DEAD_LETTER",
        "KAFKA_TOPIC_TEST_MESSAGE_OUTPUT",
    ]
    assert dict(env_of(generator))["KAFKA_GROUP_ID"] == generator["metadata"]["name"]
    connector = next(
        d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].startswith("kafka-faas")
    )
    env = env_of(connector)
    assert env[-2:] == [
        ("OPENFAAS_GATEWAY", "http://gateway.openfaas:8080"),
        ("OPENFAAS_FUNCTION_NAME", "faas-transformer"),
    ]
    assert ("KAFKA_TOPIC_INPUT", "transform-request") in env


def test_connector_deployment_info_as_mico_had_it() -> None:
    data = example_data()
    data["applications"][1]["kafkaFaasConnectors"][0].update(
        labels={"team": "messaging"},
        env={"LOG_LEVEL": "debug"},
        imagePullPolicy="IfNotPresent",
        replicas=3,
    )
    java = Settings(connector_image="docker.io/ustmico/kafka-faas-connector:v1.0.2", connector_command="")
    connector = _connector(render(load_data(data), java))
    assert connector["spec"]["replicas"] == 3
    for labels in (connector["metadata"]["labels"], connector["spec"]["template"]["metadata"]["labels"]):
        assert labels["team"] == "messaging"
        assert labels["ust.mico/version"] == "v1.0.2"
    (container,) = connector["spec"]["template"]["spec"]["containers"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["image"] == "docker.io/ustmico/kafka-faas-connector:v1.0.2"
    assert "command" not in container  # the Java image's own entrypoint
    assert env_of(connector)[0] == ("LOG_LEVEL", "debug")


def test_the_connector_runs_from_this_products_image_by_default() -> None:
    connector = _connector(render(load_data(example_data()), Settings()))
    (container,) = connector["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"localhost/mico-reconciler:{__version__}"
    assert container["command"] == ["mico-kafka-faas-connector"]
    assert connector["metadata"]["labels"]["app.kubernetes.io/version"] == __version__


def _connector(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (connector,) = [
        d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].startswith("kafka-faas")
    ]
    return connector


def _share_backend(data: dict[str, Any], replicas: int, **entry: Any) -> None:
    data["applications"].append(
        {
            "shortName": "second",
            "version": "v1.0.0",
            "name": "Second",
            "services": [
                sharing_entry(data, BACK, replicas=replicas, **entry),
            ],
        }
    )


def _backend_deployments(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        d
        for d in by_kind(render(load_data(data), Settings()), "Deployment")
        if d["metadata"]["name"].startswith("spring")
    ]


def test_shared_instance_sums_replicas_and_lists_applications() -> None:
    data = example_data()
    _share_backend(data, 3)
    (deployment,) = _backend_deployments(data)
    assert deployment["spec"]["replicas"] == 2 + 3
    assert deployment["metadata"]["annotations"]["ust.mico/applications"] == "realworld@v1.0.0,second@v1.0.0"


def test_instance_key_separates_deployments() -> None:
    data = example_data()
    _share_backend(data, 3, instance="own")
    assert sorted(d["spec"]["replicas"] for d in _backend_deployments(data)) == [2, 3]


def test_undeployed_application_contributes_nothing() -> None:
    data = example_data()
    _share_backend(data, 3)
    data["applications"][-1]["deploy"] = False
    (deployment,) = _backend_deployments(data)
    assert deployment["spec"]["replicas"] == 2
    data["applications"][0]["deploy"] = False
    data["applications"][1]["deploy"] = False
    assert render(load_data(data), Settings()) == []


def test_built_images_are_pinned_by_digest() -> None:
    digest = "docker.io/ustmico/spring-boot-realworld-example-app@sha256:" + "a" * 64
    objects = render(load_data(example_data()), Settings(), built={(BACK, "v1.0.0"): digest})
    backend = next(
        d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].startswith("spring-boot")
    )
    assert backend["spec"]["template"]["spec"]["containers"][0]["image"] == digest


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    names = [f"svc-{i}" for i in range(draw(st.integers(1, 6)))]
    services = []
    for i, name in enumerate(names):
        kafka = draw(st.booleans())
        service: dict[str, Any] = {
            "shortName": name,
            "version": f"v1.{draw(st.integers(0, 2))}.0",
            "name": name,
            "kafkaEnabled": kafka,
            "interfaces": [
                {
                    "name": "web",
                    "public": draw(st.booleans()),
                    "ports": [{"port": 80 + i, "targetPort": 8000 + i}],
                }
            ],
        }
        if draw(st.booleans()):
            service["source"] = {"git": f"https://git.example/{name}.git"}
        else:
            service["image"] = f"registry.example/{name}:1"
        services.append(service)
    applications = []
    for a in range(draw(st.integers(1, 4))):
        chosen = draw(
            st.lists(st.sampled_from(services), unique_by=lambda s: s["shortName"], max_size=len(services))
        )
        entries = []
        for service in chosen:
            key = draw(st.sampled_from(["", "blue", "green"]))
            entry: dict[str, Any] = {
                "shortName": service["shortName"],
                "version": service["version"],
                "replicas": draw(st.integers(1, 5)),
                "env": {"KEY": f"{service['shortName']}-{key}"},
            }
            if key:
                entry["instance"] = key
            entries.append(entry)
        connectors = [
            {"instance": f"c{c}", "inputTopic": "in", "outputTopic": "out"}
            for c in range(draw(st.integers(0, 2)))
        ]
        applications.append(
            {
                "shortName": f"app-{a}",
                "version": "v1.0.0",
                "name": f"App {a}",
                "deploy": draw(st.booleans()),
                "services": entries,
                "kafkaFaasConnectors": connectors,
            }
        )
    return {"apiVersion": "ust.mico/v1", "services": services, "applications": applications}


@given(configs(), st.randoms(use_true_random=False))
def test_render_is_deterministic_whatever_the_file_layout(config: dict[str, Any], rng: random.Random) -> None:
    first = to_documents(render(load({"mico.yaml": dump(config)}), Settings()))
    assert first == to_documents(render(load({"mico.yaml": dump(config)}), Settings()))
    services, applications = list(config["services"]), list(config["applications"])
    rng.shuffle(services)
    rng.shuffle(applications)
    split = {
        f"part-{i}.mico.yaml": dump({"apiVersion": "ust.mico/v1", "services": [s]})
        for i, s in enumerate(services)
    }
    split["apps/mico.yaml"] = dump({"apiVersion": "ust.mico/v1", "applications": applications})
    assert to_documents(render(load(split), Settings())) == first


@given(configs())
def test_replicas_are_summed_over_deployed_entries(config: dict[str, Any]) -> None:
    objects = render(load({"mico.yaml": dump(config)}), Settings())
    deployments = [
        d
        for d in by_kind(objects, "Deployment")
        if d["metadata"]["labels"]["ust.mico/name"] != "kafka-faas-connector"
    ]
    deployed = [a for a in config["applications"] if a["deploy"]]
    assert sum(d["spec"]["replicas"] for d in deployments) == sum(
        e["replicas"] for a in deployed for e in a["services"]
    )
    keys = {(e["shortName"], e.get("instance", "")) for a in deployed for e in a["services"]}
    assert len(deployments) == len(keys)
    connectors = [d for d in by_kind(objects, "Deployment") if d not in deployments]
    assert len(connectors) == sum(len(a["kafkaFaasConnectors"]) for a in deployed)


def test_strings_a_yaml_1_2_reader_would_type_are_written_quoted() -> None:
    """PyYAML writes `1e3` or `123e4567` (a desired-hash can look so) plain, and kubectl, reading
    YAML 1.2, takes them for numbers and refuses the object."""
    text = to_yaml({"env": ["1e3", "123e4567", "0x1F", "on", "12", "hello", ""]})
    assert text == "env:\n- '1e3'\n- '123e4567'\n- '0x1F'\n- 'on'\n- '12'\n- hello\n- ''\n"


class _GenericDumper(yaml.CSafeDumper):  # type: ignore[misc,name-defined]
    """PyYAML's own representer with the quoting rule, and the same (libyaml) emitter: what
    `to_documents` must write, byte for byte."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_GenericDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style=None if reads_as_string(value) else "'"
    ),
)

object_values: st.SearchStrategy[Any] = st.recursive(
    st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.sampled_from(["1e3", "on", "0x1F", "012", "~", "", "- x", "a: b"])
    | st.none()
    | st.floats(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)


@given(st.lists(st.dictionaries(st.text(max_size=12), object_values, max_size=5), max_size=3))
def test_objects_are_written_as_pyyamls_representer_writes_them(objects: list[dict[str, Any]]) -> None:
    shared = {"shared": ["x"]}  # the same sub-object twice: written out in full, never an alias
    objects = [*objects, {"a": shared, "b": shared}]
    expected = yaml.dump_all(
        objects,
        Dumper=_GenericDumper,
        explicit_start=True,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=120,
    )
    assert to_documents(objects) == expected
    assert list(yaml.safe_load_all(expected)) == objects
