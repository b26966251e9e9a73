"""Issue 10: every problem at once. An element that fails structural validation still has its
valid parts checked by the cross-element rules, without consequences of its own error; and an
unknown field that is a field of another object says where it belongs."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.spec import SpecError, load
from reconciler.spec.loader import _KNOWN_FIELDS, _Hints
from tests.helpers import dump, example_data, sharing_entry

Data = dict[str, Any]
FRONT, BACK = "react-redux-realworld-example-app", "spring-boot-realworld-example-app"
GEN, VALIDATOR = "test-message-generator", "msg-validator"


def _app(data: Data, short_name: str) -> Data:
    return next(a for a in data["applications"] if a["shortName"] == short_name)


def _entry(data: Data, app_name: str, short_name: str) -> Data:
    return next(e for e in _app(data, app_name)["services"] if e["shortName"] == short_name)


def _svc(data: Data, short_name: str) -> Data:
    return next(s for s in data["services"] if s["shortName"] == short_name)


def _problems(data: Data) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load({"mico.yaml": dump(data)})
    return [f"{p.field}: {p.message}" for p in caught.value.problems]


def test_reference_errors_of_an_application_with_a_schema_error() -> None:
    data = example_data()
    _app(data, "realworld")["lables"] = {"a": "b"}  # a schema error of the application itself
    _entry(data, "realworld", FRONT)["interfaceConnections"][0]["interface"] = "nope"
    assert _problems(data) == [
        f"applications[0].services[0].interfaceConnections[0].interface: service {BACK!r} has no "
        "interface 'nope'",
        "applications[0].lables: unknown field 'lables' (did you mean 'labels'?)",
    ]


def test_kafka_rules_of_an_application_with_an_invalid_connector() -> None:
    data = example_data()
    _app(data, "messaging-example")["kafkaFaasConnectors"][0]["function"] = "Not_DNS"
    _entry(data, "messaging-example", GEN)["env"] = {"KAFKA_GROUP_ID": "g"}
    assert _problems(data) == [
        "applications[1].services[0].env.KAFKA_GROUP_ID: KAFKA_GROUP_ID is set by the reconciler for "
        "Kafka-enabled services",
        "applications[1].kafkaFaasConnectors[0].function: 'Not_DNS' is not a DNS label: lowercase "
        "letters, digits and '-'",
    ]


def test_sharing_conflicts_of_an_application_with_a_schema_error() -> None:
    data = example_data()
    data["applications"].append(
        {
            "shortName": "second",
            "version": "v1.0.0",
            "name": "Second",
            "deploy": True,
            "services": [
                sharing_entry(data, BACK, replicas=2, env={"MODE": "other"}),
            ],
            "kafkaFaasConnectors": [{"instance": "Bad_Name", "inputTopic": "t", "outputTopic": "u"}],
        }
    )
    found = _problems(data)
    assert any(p.startswith("applications[2].services[0].env: ") and "is shared with" in p for p in found)
    assert any(p.startswith("applications[2].kafkaFaasConnectors[0].instance: ") for p in found)
    assert len(found) == 2


def test_problems_after_a_left_out_item_point_at_the_item_written() -> None:
    """services[0] is invalid and left out; the duplicate at YAML services[2] is still called
    services[2], and the first one it names is services[1]."""
    data = example_data()
    services = _app(data, "realworld")["services"]
    services.insert(0, {"shortName": GEN, "version": "v1.0.0", "replicas": 0})
    services.append(dict(services[1]))
    assert _problems(data) == [
        "applications[0].services[0].replicas: Input should be greater than or equal to 1",
        f"applications[0].services[3].shortName: service {FRONT!r} is included twice (only one "
        "version of a service per application; first at services[1])",
    ]


def test_a_left_out_entry_is_not_reported_as_missing_from_its_application() -> None:
    data = example_data()
    _entry(data, "realworld", BACK)["labels"] = {"tier": "-bad-"}
    found = _problems(data)
    assert len(found) == 1
    assert found[0].startswith('applications[0].services[1].labels["tier"]: ') or found[0].startswith(
        "applications[0].services[1].labels.tier: "
    )


def test_rules_still_run_on_a_service_with_a_schema_error() -> None:
    data = example_data()
    front = _svc(data, FRONT)
    front["interfaces"][0]["ports"][0]["port"] = 0
    front["dependencies"][0]["version"] = "^2.0.0"
    front["description"] = 7
    assert _problems(data) == [
        "services[1].description: Input should be a valid string, got number 7",
        "services[1].interfaces[0].ports[0].port: Input should be greater than or equal to 1",
        f"services[1].dependencies[0].version: no version of {BACK!r} satisfies '^2.0.0' (defined: v1.0.0)",
    ]


def test_a_service_that_lost_its_interfaces_is_still_defined_and_not_judged_on_them() -> None:
    """The only interface of the backend is invalid: the application's connection to it is
    not reported, nor the service as 'not defined' or as needing an interface."""
    data = example_data()
    _svc(data, BACK)["interfaces"][0]["name"] = "Back_End"
    _svc(data, BACK)["image"] = "nginx:1"  # also both source and image: a rule of the element
    found = _problems(data)
    assert [p.split(":")[0] for p in found] == ["services[0].interfaces[0].name"]


def test_a_service_with_invalid_kafka_enabled_gets_no_kafka_consequences() -> None:
    data = example_data()
    _svc(data, GEN)["kafkaEnabled"] = "yes"
    _entry(data, "messaging-example", GEN)["env"] = {"KAFKA_GROUP_ID": "g"}
    found = _problems(data)
    assert [p.split(":")[0] for p in found] == ["services[2].kafkaEnabled"]


def test_an_element_with_an_invalid_identity_is_only_broken() -> None:
    data = example_data()
    _svc(data, GEN)["version"] = "1.0"
    assert [p.split(":")[0] for p in _problems(data)] == ["services[2].version"]


def test_an_element_with_a_null_is_still_checked() -> None:
    data = example_data()
    _svc(data, FRONT)["description"] = None
    _svc(data, FRONT)["dependencies"][0]["version"] = "^2.0.0"
    assert _problems(data) == [
        "services[1]: null is not allowed for description: give a value or omit the key",
        f"services[1].dependencies[0].version: no version of {BACK!r} satisfies '^2.0.0' (defined: v1.0.0)",
    ]


def test_problems_are_sorted_by_position_and_unique() -> None:
    data = example_data()
    _app(data, "realworld")["lables"] = {}
    _entry(data, "realworld", FRONT)["interfaceConnections"][0]["interface"] = "nope"
    _app(data, "messaging-example")["kafkaFaasConnectors"].append(
        dict(_app(data, "messaging-example")["kafkaFaasConnectors"][0], replicas=0)
    )
    _entry(data, "messaging-example", VALIDATOR)["topics"].append({"name": "..", "role": "INPUT"})
    with pytest.raises(SpecError) as caught:
        load({"mico.yaml": dump(data)})
    problems = caught.value.problems
    positions = [(p.file, p.line, p.column) for p in problems]
    assert positions == sorted(positions)
    assert len(set(problems)) == len(problems) == 5


# -- the hint -------------------------------------------------------------------------------------


def test_a_field_of_another_object_says_where_it_belongs() -> None:
    data = example_data()
    _svc(data, GEN)["labels"] = {"tier": "x"}
    assert _problems(data) == [
        "services[2].labels: unknown field 'labels' here ('labels' belongs in an application's service "
        "entry or an application's kafkaFaasConnector)"
    ]


def test_a_field_of_several_objects_names_them_all() -> None:
    data = example_data()
    _entry(data, "realworld", BACK)["name"] = "backend"
    (found,) = _problems(data)
    assert found == (
        "applications[0].services[1].name: unknown field 'name' here ('name' belongs in a service, "
        "a service's interface, an application or a service entry's topic)"
    )


@pytest.mark.parametrize("key", _KNOWN_FIELDS)
def test_the_hint_never_suggests_the_rejected_field(key: str) -> None:
    hint = _Hints().hint(key)
    assert f"did you mean {key!r}" not in hint
    assert f"{key!r} belongs in " in hint


def test_a_typo_still_gets_a_suggestion() -> None:
    assert _Hints().hint("replcas") == " (did you mean 'replicas'?)"
    assert _Hints().hint("zzzzzz") == ""
