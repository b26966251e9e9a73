"""One failing case per validation rule, each checked for file, line, field and message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reconciler.spec import SpecError, load, names
from tests.helpers import dump, example_data

Data = dict[str, Any]


def svc(data: Data, short_name: str) -> Data:
    return next(s for s in data["services"] if s["shortName"] == short_name)


def app(data: Data, short_name: str) -> Data:
    return next(a for a in data["applications"] if a["shortName"] == short_name)


def entry(data: Data, app_name: str, short_name: str) -> Data:
    return next(e for e in app(data, app_name)["services"] if e["shortName"] == short_name)


FRONT, BACK = "react-redux-realworld-example-app", "spring-boot-realworld-example-app"
GEN, VALIDATOR = "test-message-generator", "msg-validator"


def _set(path: list[Any], value: Any) -> Callable[[Data], None]:
    def mutate(data: Data) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _extra_app(data: Data, name: str = "second", **overrides: Any) -> Data:
    new = {"shortName": name, "version": "v1.0.0", "name": "Second", "services": []}
    new.update(overrides)
    data["applications"].append(new)
    return new


def _sharing_conflict(data: Data) -> None:
    _extra_app(data, services=[{"shortName": BACK, "version": "v1.0.0", "env": {"MODE": "other"}}])


def _long_service_name(data: Data) -> None:
    service = svc(data, FRONT)
    service["interfaces"][0]["name"] = "an-interface-name-that-is-long-enough-to-overflow-it"


def _job_collision(data: Data) -> None:
    base = svc(data, BACK)
    for version in ("1.0.0-a.b", "1.0.0-a-b"):
        data["services"].append({**base, "version": version})


def _long_job_name(data: Data) -> None:
    base = svc(data, BACK)
    data["services"].append({**base, "version": "1.0.0-prerelease.with.a.really.long.tail"})


def _two_versions_in_app(data: Data) -> None:
    data["services"].append({**svc(data, BACK), "version": "v1.1.0"})
    app(data, "realworld")["services"].append({"shortName": BACK, "version": "v1.1.0"})


def _prefix_duplicate(data: Data) -> None:
    data["services"].append({**svc(data, GEN), "version": "1.0.0"})


# (id, mutation, expected field path, message fragment, text expected on the reported line)
CASES: list[tuple[str, Callable[[Data], None], str, str, str]] = [
    (
        "unknown-field",
        _set(["applications", 0, "services", 1, "replcas"], 3),
        "applications[0].services[1].replcas",
        "did you mean 'replicas'",
        "replcas",
    ),
    ("api-version", _set(["apiVersion"], "ust.mico/v2"), "apiVersion", "ust.mico/v1", "apiVersion"),
    (
        "env-ref-two-sources",
        _set(
            ["applications", 0, "services", 1, "envRefs"],
            {"DB": {"secret": "a", "configMap": "b", "key": "k"}},
        ),
        "applications[0].services[1].envRefs.DB",
        "exactly one of 'secret' and 'configMap'",
        "DB:",
    ),
    (
        "resource-quantity",
        _set(["services", 0, "resources"], {"requests": {"cpu": "lots"}}),
        "services[0].resources.requests.cpu",
        "Kubernetes quantity",
        "cpu: lots",
    ),
    (
        "probe-two-checks",
        _set(["services", 0, "readinessProbe"], {"http": {"port": 80}, "tcp": {"port": 80}}),
        "services[0].readinessProbe",
        "exactly one of 'http', 'tcp' and 'exec'",
        "readinessProbe:",
    ),
    (
        "probe-unknown-interface",
        _set(["services", 0, "livenessProbe"], {"tcp": {"interface": "nope"}}),
        "services[0].livenessProbe.tcp.interface",
        "no interface 'nope'",
        "interface: nope",
    ),
    (
        "pull-secret-name",
        _set(["services", 3, "imagePullSecrets"], ["Bad"]),
        "services[3].imagePullSecrets[0]",
        "Kubernetes object name",
        "Bad",
    ),
    ("missing-name", lambda d: svc(d, GEN).pop("name"), "services[2].name", "required field 'name'", GEN),
    (
        "short-name-pattern",
        _set(["services", 2, "shortName"], "Test_Generator"),
        "services[2].shortName",
        "lowercase letters",
        "Test_Generator",
    ),
    (
        "short-name-length",
        _set(["services", 2, "shortName"], "ab"),
        "services[2].shortName",
        "at least 3 characters",
        "shortName: ab",
    ),
    (
        "version-pattern",
        _set(["services", 2, "version"], "1.0"),
        "services[2].version",
        "SemVer 2.0",
        "version: '1.0'",
    ),
    (
        "null-value",
        _set(["services", 2, "description"], None),
        "services[2]",
        "null is not allowed for description",
        GEN,
    ),
    (
        "source-and-image",
        lambda d: svc(d, BACK).__setitem__("image", "nginx:1"),
        "services[0]",
        "exactly one of 'source'",
        BACK,
    ),
    (
        "neither-source-nor-image",
        lambda d: svc(d, GEN).pop("image"),
        "services[2]",
        "exactly one of 'source'",
        GEN,
    ),
    (
        "port-range",
        _set(["services", 0, "interfaces", 0, "ports", 0, "port"], 70000),
        "services[0].interfaces[0].ports[0].port",
        "less than or equal to 65535",
        "70000",
    ),
    (
        "port-type",
        _set(["services", 0, "interfaces", 0, "ports", 0, "type"], "SCTP"),
        "services[0].interfaces[0].ports[0].type",
        "'TCP' or 'UDP'",
        "SCTP",
    ),
    (
        "no-ports",
        _set(["services", 0, "interfaces", 0, "ports"], []),
        "services[0].interfaces[0].ports",
        "at least 1 item",
        "ports",
    ),
    (
        "env-name",
        lambda d: entry(d, "realworld", BACK).__setitem__("env", {"1BAD": "x"}),
        'applications[0].services[1].env["1BAD"]',
        "environment variable name",
        "1BAD",
    ),
    (
        "env-value-type",
        lambda d: entry(d, "realworld", BACK).__setitem__("env", {"PORT": 8080}),
        "applications[0].services[1].env.PORT",
        "valid string, got number 8080",
        "PORT",
    ),
    (
        "label-value",
        lambda d: entry(d, "realworld", BACK)["labels"].__setitem__("tier", "-bad-"),
        "applications[0].services[1].labels.tier",
        "label value",
        "tier",
    ),
    (
        "label-reserved",
        lambda d: entry(d, "realworld", BACK)["labels"].__setitem__("ust.mico/name", "x"),
        'applications[0].services[1].labels["ust.mico/name"]',
        "reserved",
        "ust.mico/name",
    ),
    (
        "label-key-length",
        lambda d: entry(d, "realworld", BACK)["labels"].__setitem__("a" * 64, "x"),
        f"applications[0].services[1].labels.{'a' * 64}",
        "at most 63 characters",
        "a" * 64,
    ),
    (
        "pull-policy",
        lambda d: entry(d, "realworld", BACK).__setitem__("imagePullPolicy", "Sometimes"),
        "applications[0].services[1].imagePullPolicy",
        "'Always', 'IfNotPresent' or 'Never'",
        "Sometimes",
    ),
    (
        "replicas-zero",
        lambda d: entry(d, "realworld", BACK).__setitem__("replicas", 0),
        "applications[0].services[1].replicas",
        "greater than or equal to 1",
        "replicas: 0",
    ),
    (
        "topic-name",
        lambda d: entry(d, "messaging-example", GEN)["topics"][0].__setitem__("name", "bad topic"),
        "applications[1].services[0].topics[0].name",
        "Kafka topic name",
        "bad topic",
    ),
    (
        "topic-dot",
        lambda d: entry(d, "messaging-example", GEN)["topics"][0].__setitem__("name", ".."),
        "applications[1].services[0].topics[0].name",
        "not a valid Kafka topic name",
        "name: ..",
    ),
    (
        "topic-role",
        lambda d: entry(d, "messaging-example", GEN)["topics"][0].__setitem__("role", "SIDEWAYS"),
        "applications[1].services[0].topics[0].role",
        "'INPUT'",
        "SIDEWAYS",
    ),
    (
        "git-metacharacters",
        lambda d: svc(d, BACK)["source"].__setitem__("git", "https://h.example/x;rm -rf"),
        "services[0].source.git",
        "shell metacharacters",
        "rm -rf",
    ),
    (
        "git-credentials",
        lambda d: svc(d, BACK)["source"].__setitem__("git", "https://me:token@h.example/x.git"),
        "services[0].source.git",
        "'https://***@h.example/x.git' is not",
        "token",
    ),
    (
        "git-option-injection",
        lambda d: svc(d, BACK)["source"].__setitem__("git", "--upload-pack=touch"),
        "services[0].source.git",
        "https, git or ssh URL",
        "upload-pack",
    ),
    (
        "dockerfile-escape",
        lambda d: svc(d, BACK)["source"].__setitem__("dockerfile", "../../etc/Dockerfile"),
        "services[0].source.dockerfile",
        "no '..'",
        "dockerfile",
    ),
    (
        "context-absolute",
        lambda d: svc(d, BACK)["source"].__setitem__("context", "/etc"),
        "services[0].source.context",
        "relative path",
        "/etc",
    ),
    (
        "revision-dots",
        lambda d: svc(d, BACK)["source"].__setitem__("revision", "main..evil"),
        "services[0].source.revision",
        "not a valid git revision",
        "main..evil",
    ),
    (
        "revision-option",
        lambda d: svc(d, BACK)["source"].__setitem__("revision", "-c"),
        "services[0].source.revision",
        "git tag, branch or commit",
        "revision",
    ),
    (
        "image-reference",
        _set(["services", 2, "image"], "Not An Image"),
        "services[2].image",
        "image reference",
        "Not An Image",
    ),
    (
        "duplicate-application",
        lambda d: d["applications"].append(dict(d["applications"][0])),
        "applications[2].version",
        "defined twice; also at mico.yaml:",
        "version",
    ),
    (
        "duplicate-version-ignoring-prefix",
        _prefix_duplicate,
        "services[4].version",
        "defined twice",
        "version: 1.0.0",
    ),
    (
        "no-interface",
        lambda d: svc(d, FRONT).pop("interfaces"),
        "services[1].interfaces",
        "needs at least one interface",
        FRONT,
    ),
    (
        "duplicate-interface",
        lambda d: svc(d, FRONT)["interfaces"].append(dict(svc(d, FRONT)["interfaces"][0])),
        "services[1].interfaces[1].name",
        "defined twice",
        "name: frontend",
    ),
    (
        "duplicate-port",
        lambda d: svc(d, FRONT)["interfaces"][0]["ports"].append({"port": 80, "targetPort": 81}),
        "services[1].interfaces[0].ports[1].port",
        "declared twice",
        "port: 80",
    ),
    (
        "dependency-undefined",
        lambda d: svc(d, FRONT)["dependencies"][0].__setitem__("shortName", "nobody-here"),
        "services[1].dependencies[0].shortName",
        "not defined",
        "nobody-here",
    ),
    (
        "dependency-unsatisfiable",
        lambda d: svc(d, FRONT)["dependencies"][0].__setitem__("version", "^2.0.0"),
        "services[1].dependencies[0].version",
        "no version of",
        "^2.0.0",
    ),
    (
        "dependency-range-invalid",
        lambda d: svc(d, FRONT)["dependencies"][0].__setitem__("version", "banana"),
        "services[1].dependencies[0].version",
        "not a semver range",
        "banana",
    ),
    (
        "undefined-service-version",
        lambda d: entry(d, "realworld", BACK).__setitem__("version", "v9.9.9"),
        "applications[0].services[1].version",
        "is not defined",
        "v9.9.9",
    ),
    (
        "two-versions-in-app",
        _two_versions_in_app,
        "applications[0].services[2].shortName",
        "only one version of a service",
        BACK,
    ),
    (
        "connection-outside-app",
        lambda d: entry(d, "realworld", FRONT)["interfaceConnections"][0].__setitem__("service", VALIDATOR),
        "applications[0].services[0].interfaceConnections[0].service",
        "not part of this application",
        VALIDATOR,
    ),
    (
        "connection-interface",
        lambda d: entry(d, "realworld", FRONT)["interfaceConnections"][0].__setitem__("interface", "nope"),
        "applications[0].services[0].interfaceConnections[0].interface",
        "has no interface 'nope'",
        "nope",
    ),
    (
        "connection-env-clash",
        lambda d: entry(d, "realworld", FRONT).__setitem__("env", {"BACKEND_REST_API": "x"}),
        "applications[0].services[0].interfaceConnections[0].env",
        "already set by env",
        "BACKEND_REST_API",
    ),
    (
        "topics-without-kafka",
        lambda d: entry(d, "realworld", BACK).__setitem__("topics", [{"name": "t", "role": "INPUT"}]),
        "applications[0].services[1].topics",
        "need a kafkaEnabled service",
        "topics",
    ),
    (
        "topic-role-twice",
        lambda d: entry(d, "messaging-example", GEN)["topics"].append({"name": "o2", "role": "OUTPUT"}),
        "applications[1].services[0].topics[1].role",
        "more than one topic",
        "role: OUTPUT",
    ),
    (
        "kafka-variable-reserved",
        lambda d: entry(d, "messaging-example", GEN).__setitem__("env", {"KAFKA_GROUP_ID": "g"}),
        "applications[1].services[0].env.KAFKA_GROUP_ID",
        "set by the reconciler",
        "KAFKA_GROUP_ID",
    ),
    (
        "connector-duplicate",
        lambda d: app(d, "messaging-example")["kafkaFaasConnectors"].append(
            dict(app(d, "messaging-example")["kafkaFaasConnectors"][0])
        ),
        "applications[1].kafkaFaasConnectors[1].instance",
        "defined twice",
        "instance: transformer",
    ),
    (
        "connector-output",
        lambda d: app(d, "messaging-example")["kafkaFaasConnectors"][0].pop("outputTopic"),
        "applications[1].kafkaFaasConnectors[0]",
        "needs an outputTopic unless",
        "instance: transformer",
    ),
    (
        "connector-input",
        lambda d: app(d, "messaging-example")["kafkaFaasConnectors"][0].pop("inputTopic"),
        "applications[1].kafkaFaasConnectors[0].inputTopic",
        "required field 'inputTopic'",
        "instance: transformer",
    ),
    (
        "connector-function-name",
        lambda d: app(d, "messaging-example")["kafkaFaasConnectors"][0].__setitem__("function", "Not_DNS"),
        "applications[1].kafkaFaasConnectors[0].function",
        "DNS label",
        "Not_DNS",
    ),
    (
        "sharing-conflict",
        _sharing_conflict,
        "applications[2].services[0].env",
        "shared with application 'realworld'",
        "env:",
    ),
    (
        "service-name-length",
        _long_service_name,
        "services[1].interfaces[0].name",
        "Kubernetes Service name",
        "an-interface-name",
    ),
    ("build-job-name-length", _long_job_name, "services[4].version", "build Job name", "really.long.tail"),
    (
        "build-job-name-collision",
        _job_collision,
        "services[5].version",
        "also derived from service",
        "1.0.0-a-b",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "field", "fragment", "on_line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_rule_reports_file_line_and_field(
    mutate: Callable[[Data], None], field: str, fragment: str, on_line: str
) -> None:
    data = example_data()
    mutate(data)
    text = dump(data)
    with pytest.raises(SpecError) as caught:
        load({"mico.yaml": text})
    matching = [p for p in caught.value.problems if p.field == field and fragment in p.message]
    assert matching, f"no problem at {field} with {fragment!r}; got:\n{caught.value}"
    problem = matching[0]
    assert problem.file == "mico.yaml"
    line = text.decode().splitlines()[problem.line - 1]
    assert on_line in line, f"line {problem.line} is {line!r}"
    assert str(problem).startswith(f"mico.yaml:{problem.line}:{problem.column}: {field}: ")


def test_example_is_valid() -> None:
    spec = load({"mico.yaml": dump(example_data())})
    assert [a.short_name for a in spec.applications] == ["messaging-example", "realworld"]
    assert len(spec.services) == 4


def test_duplicates_across_files_name_both_places() -> None:
    data = example_data()
    other = {"apiVersion": "ust.mico/v1", "services": [svc(data, GEN)]}
    with pytest.raises(SpecError) as caught:
        load({"a/mico.yaml": dump(data), "b/extra.mico.yaml": dump(other)})
    (problem,) = caught.value.problems
    assert problem.file == "b/extra.mico.yaml"
    assert "also at a/mico.yaml:" in problem.message


def test_all_errors_are_reported_at_once() -> None:
    data = example_data()
    svc(data, GEN)["shortName"] = "X"  # also leaves messaging-example pointing at nothing
    entry(data, "realworld", BACK)["replicas"] = 0
    svc(data, FRONT)["dependencies"][0]["version"] = "^7"
    broken_yaml = b"apiVersion: ust.mico/v1\nservices: [\n"
    with pytest.raises(SpecError) as caught:
        load({"mico.yaml": dump(data), "z.mico.yaml": broken_yaml})
    fields = [p.field for p in caught.value.problems]
    assert fields == [
        "services[1].dependencies[0].version",
        "services[2].shortName",
        "applications[0].services[1].replicas",
        "applications[1].services[0].version",
        "(yaml)",
    ]


def test_reference_to_broken_service_is_not_reported_twice() -> None:
    data = example_data()
    svc(data, BACK)["interfaces"][0]["ports"][0]["port"] = 0
    with pytest.raises(SpecError) as caught:
        load({"mico.yaml": dump(data)})
    assert [p.field for p in caught.value.problems] == ["services[0].interfaces[0].ports[0].port"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "holds no YAML document"),
        (b"- a\n- b\n", "must be a mapping"),
        (b"\xff\xfe", "not UTF-8"),
        (b"apiVersion: ust.mico/v1\nservices:\n  - {}\n  - {}\nservices: []\n", "duplicate key 'services'"),
    ],
)
def test_file_level_problems(content: bytes, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load({"mico.yaml": content})
    assert any(message in p.message for p in caught.value.problems), str(caught.value)


def test_undeployed_applications_may_disagree_with_shared_ones() -> None:
    data = example_data()
    _extra_app(data, deploy=False, services=[{"shortName": BACK, "version": "v1.0.0", "env": {"MODE": "x"}}])
    load({"mico.yaml": dump(data)})


def test_services_of_two_instances_may_not_share_a_name() -> None:
    """`abc` + interface `xxx-<hash>-yyy` and `abc-<hash>-xxx` + interface `yyy` both name
    their Service `abc-<hash>-xxx-<hash>-yyy`."""
    data = example_data()
    suffix = names.instance_name("abc-x7lsfoeq-xxx", "1.0.0", None).removeprefix("abc-x7lsfoeq-xxx-")
    assert names.instance_name("abc", "1.0.0", None) == "abc-x7lsfoeq"
    ports = [{"port": 80, "targetPort": 80}]
    data["services"] += [
        {
            "shortName": short_name,
            "version": "1.0.0",
            "name": short_name,
            "image": "docker.io/library/nginx:1",
            "interfaces": [{"name": interface, "ports": ports}],
        }
        for short_name, interface in (("abc", f"xxx-{suffix}-yyy"), ("abc-x7lsfoeq-xxx", "yyy"))
    ]
    app(data, "realworld")["services"] += [
        {"shortName": "abc", "version": "1.0.0"},
        {"shortName": "abc-x7lsfoeq-xxx", "version": "1.0.0"},
    ]
    with pytest.raises(SpecError) as caught:
        load({"mico.yaml": dump(data)})
    (problem,) = caught.value.problems
    assert problem.field == "applications[0].services[3]"
    assert f"the Service name 'abc-x7lsfoeq-xxx-{suffix}-yyy' of interface 'yyy'" in problem.message
    assert "is also the name of a Service of 'abc' 1.0.0 (mico.yaml:" in problem.message


def test_a_shared_instance_must_reach_the_same_services_in_every_application() -> None:
    """The frontend is shared; its connection `service: backend` names realworld's backend
    there and another instance of it in realworld-2: its one Deployment cannot point at both."""
    data = example_data()
    second = {**app(data, "realworld"), "shortName": "realworld-2", "name": "RealWorld 2"}
    second["services"] = [dict(e) for e in second["services"]]
    second["services"][1]["instance"] = "second"
    data["applications"].append(second)
    with pytest.raises(SpecError) as caught:
        load({"mico.yaml": dump(data)})
    (problem,) = caught.value.problems
    assert problem.field == "applications[2].services[0].interfaceConnections[0]"
    assert f"{FRONT!r} is shared with application 'realworld' v1.0.0, where this connection (mico.yaml:" in (
        problem.message
    )
    backend = names.instance_name(BACK, "v1.0.0", None)
    other = names.instance_name(BACK, "v1.0.0", "second")
    assert f"reaches instance {backend!r}; here it would reach {other!r}" in problem.message
    second["services"][0]["instance"] = "own"  # its own frontend: no conflict
    load({"mico.yaml": dump(data)})


def test_connector_labels_and_env_leave_the_reconciler_s_own_alone() -> None:
    data = example_data()
    app(data, "messaging-example")["kafkaFaasConnectors"][0].update(
        labels={"ust.mico/name": "x", "team": "ok"},
        env={"OPENFAAS_GATEWAY": "http://elsewhere", "KAFKA_GROUP_ID": "g", "LOG_LEVEL": "debug"},
    )
    with pytest.raises(SpecError) as caught:
        load({"mico.yaml": dump(data)})
    assert [(p.field, p.message) for p in caught.value.problems] == [
        (
            'applications[1].kafkaFaasConnectors[0].labels["ust.mico/name"]',
            "label 'ust.mico/name' is reserved for the reconciler",
        ),
        (
            "applications[1].kafkaFaasConnectors[0].env.OPENFAAS_GATEWAY",
            "OPENFAAS_GATEWAY is set by the reconciler for connectors",
        ),
        (
            "applications[1].kafkaFaasConnectors[0].env.KAFKA_GROUP_ID",
            "KAFKA_GROUP_ID is set by the reconciler for connectors",
        ),
    ]
