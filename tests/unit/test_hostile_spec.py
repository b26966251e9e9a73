"""Hostile specs: each class of input gets a positioned problem, never a traceback, a hang,
an unbounded output or a printed credential; every valid spec renders objects Kubernetes accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.redact import redact
from reconciler.render import Settings, render
from reconciler.render.topics import resource_name
from reconciler.spec import SpecError, load
from reconciler.spec.model import LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, TOPIC_PATTERN, VERSION_PATTERN
from reconciler.spec.problems import MAX_PROBLEMS, Problem
from reconciler.spec.schema import json_schema
from tests.helpers import ROOT, dump, example_data, problems_of

CORPUS = ROOT / "tests" / "hostile" / "specs"
SECRETS = ("hunter2", "s3cr3t-TOKEN")


def problems(text: str | bytes, name: str = "mico.yaml") -> list[str]:
    return problems_of({name: text.encode() if isinstance(text, str) else text})


def corpus(case: str) -> list[str]:
    path = CORPUS / f"{case}.yaml"
    return [line.removeprefix(f"{path.name}:") for line in problems(path.read_bytes(), path.name)]


def example_with(change: Any) -> bytes:
    data = example_data()
    change(data)
    return dump(data)


# -- every corpus file: problems only, one line each, no credential -------------------------------


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.yaml")), ids=lambda p: p.stem)
def test_corpus_files_are_answered_with_clean_problems(path: Path) -> None:
    found = problems(path.read_bytes(), path.name)
    for line in found:
        assert len(line.splitlines()) == 1, line
        assert "\x1b" not in line
        assert not any(secret in line for secret in SECRETS), line
    assert len(found) <= MAX_PROBLEMS + 1


# -- unconstructable scalars -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "unconstructable--bang-int",
            "21:19: applications[0].services[0].replicas: 'abc' is not a number as its tag '!!int' says",
        ),
        (
            "unconstructable--binary",
            "6:18: services[0].description: YAML tag '!!binary' is not supported: "
            "only strings, numbers, booleans, lists and mappings",
        ),
        (
            "unconstructable--unknown-tag",
            "5:11: services[0].name: YAML tag '!foo' is not supported: "
            "only strings, numbers, booleans, lists and mappings",
        ),
        (
            "unconstructable--long-integer",
            "21:19: applications[0].services[0].replicas: "
            "a number of 5001 digits is out of range (at most 100 digits)",
        ),
        (
            "unconstructable--bad-date",
            "21:9: applications[0].services[0].replicas: Input should be a valid integer, "
            "got string '2020-13-45'",
        ),
        (
            "unconstructable--list-as-key",
            '24:13: applications[0].services[0].labels["(key at line 24)"]: '
            "keys must be strings, not lists or mappings",
        ),
        (
            "unconstructable--merge-of-scalar",
            '24:15: applications[0].services[0].labels["<<"]: '
            "a merge ('<<') takes a mapping or a list of mappings",
        ),
    ],
)
def test_unconstructable_scalars_are_positioned_problems(case: str, expected: str) -> None:
    assert corpus(case) == [expected]


# -- YAML 1.1 surprises ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reading", "fix"),
    [
        ("off", "YAML 1.1 reads it as a boolean, YAML 1.2 as a string", "write true or false"),
        ("yes", "YAML 1.1 reads it as a boolean, YAML 1.2 as a string", "write true or false"),
        ("0120", "YAML 1.1 reads a leading 0 as octal, YAML 1.2 as decimal", "write it as YAML 1.2 means it"),
        ("2:13:20", "YAML 1.1 reads it as a number, YAML 1.2 as a string", "write it as YAML 1.2 means it"),
        ("1_000", "YAML 1.1 reads it as a number, YAML 1.2 as a string", "write it as YAML 1.2 means it"),
        ("1e3", "YAML 1.1 reads it as a string, YAML 1.2 as a number", "write it as YAML 1.2 means it"),
    ],
)
def test_yaml11_readings_are_problems(value: str, reading: str, fix: str) -> None:
    text = f"apiVersion: ust.mico/v1\nservices:\n  - replicas: {value}\n"
    assert [p for p in problems(text) if "ambiguous" in p] == [
        f"mico.yaml:3:15: services[0].replicas: ambiguous YAML value {value!r}: {reading}; "
        f"{fix}, or quote it as a string"
    ]


def test_one_problem_per_ambiguous_value() -> None:
    """The YAML stage reports it; the models do not add 'expected a boolean' on top."""
    assert corpus("yaml11--off") == [
        "10:17: services[0].interfaces[0].public: ambiguous YAML value 'off': YAML 1.1 reads it as "
        "a boolean, YAML 1.2 as a string; write true or false, or quote it as a string"
    ]


def test_dates_and_quoted_values_are_strings() -> None:
    assert corpus("yaml11--plain-date-is-a-string") == []
    data = load({"mico.yaml": example_with(lambda d: d["services"][0].update(description="2020-01-01"))})
    assert next(s for s in data.services if s.short_name.startswith("spring")).description == "2020-01-01"
    assert problems("apiVersion: ust.mico/v1\nservices: []\nx-a: 'off'\n") == [
        "mico.yaml:3:1: [\"x-a\"]: unknown field 'x-a'"
    ]


def test_keys_are_read_as_yaml12_strings_and_must_be_strings() -> None:
    assert corpus("labels--null-key") == [
        "24:11: applications[0].services[0].labels.null: keys must be strings: write 'null' in quotes"
    ]
    assert corpus("labels--int-key") == [
        "24:11: applications[0].services[0].labels[\"1\"]: keys must be strings: write '1' in quotes"
    ]
    # `on:` is the string 'on' in YAML 1.2: only an unknown field here
    assert problems("apiVersion: ust.mico/v1\non: 1\n") == ["mico.yaml:2:1: on: unknown field 'on'"]


# -- empty files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "---\n", "~\n", "null\n", "--- ~\n--- null\n---\n", "# only\n"])
def test_null_documents_are_as_empty_as_an_empty_file(text: str) -> None:
    assert problems(text) == ["mico.yaml:1:1: (file): the file holds no YAML document (or only null)"]


def test_a_trailing_empty_document_is_fine() -> None:
    assert problems(EXAMPLE_BYTES + b"---\n") == []


EXAMPLE_BYTES = (ROOT / "examples" / "mico.yaml").read_bytes()


# -- bounded cost ----------------------------------------------------------------------------------


def test_alias_bombs_are_refused_by_expanded_characters() -> None:
    assert corpus("size--alias-bomb-characters") == [
        "1:1: (document): document expands to more than 8,000,000 characters via aliases"
    ]


def test_a_deployment_over_the_apiserver_limit_is_an_error_at_its_entry() -> None:
    found = corpus("size--deployment-over-apiserver-limit")
    assert found[-1].startswith("20:9: applications[0].services[0]: the Deployment would be about 1,297,")
    assert "over the 1,048,576 Kubernetes can store" in found[-1]


def test_an_instance_shared_by_too_many_applications_is_an_error() -> None:
    def share(data: dict[str, Any]) -> None:
        entry = {"shortName": "test-message-generator", "version": "v1.0.0"}
        data["applications"] = [
            {
                "shortName": f"app-{i:04d}-" + "a" * 40,
                "version": "v1.0.0-" + "b" * 50,
                "name": "A",
                "services": [entry],
            }
            for i in range(2500)
        ]

    (found,) = problems(example_with(share))
    assert "this instance is shared by 2500 applications; listing them takes 269,999 bytes" in found


def test_backtracking_ranges_are_refused_before_node_semver() -> None:
    assert corpus("size--range-backtracking") == [
        "16:9: services[0].dependencies[0].version: '1.0.0"
        + " " * 55
        + "'... is not a semver range (e.g. '^1.2', '>=1.0.0 <2.0.0')"
    ]


def test_problems_are_capped_and_counted() -> None:
    text = "apiVersion: ust.mico/v1\n" + "".join(f"unknown{i}: 1\n" for i in range(1000))
    with pytest.raises(SpecError) as caught:
        load({"mico.yaml": text.encode()})
    error = caught.value
    assert error.total == 1000
    assert len(error.problems) == MAX_PROBLEMS + 1
    assert str(error.problems[-1]) == "mico.yaml:202:1: (more): ... and 800 more problems not shown"
    hinted = [p.message for p in error.problems if "did you mean" in p.message]
    assert len(hinted) <= 20


# -- labels and names ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0.0--", "1.0.0+b-", "v2.0.0-rc-"])
def test_versions_that_cannot_be_label_values_are_problems(version: str) -> None:
    text = example_with(lambda d: d["services"][2].update(version=version))
    lines = text.decode().splitlines()
    entry = lines.index("- shortName: test-message-generator")
    line = entry + 1 + [n.strip() for n in lines[entry:]].index(f"version: {version}")  # its version's key
    found = problems(text)
    assert found[0] == (
        f"mico.yaml:{line}:3: services[2].version: version {version!r} cannot be a Kubernetes label "
        "value (it must end with a letter or digit)"
    )


@given(st.from_regex(TOPIC_PATTERN, fullmatch=True).filter(lambda t: len(t) <= 249))
def test_kafka_topic_resource_names_are_dns_subdomains(topic: str) -> None:
    name = resource_name(topic)
    assert DNS_SUBDOMAIN.fullmatch(name), name
    assert len(name) <= 253


DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
K8S_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
K8S_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
K8S_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def _valid_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return bool(
        K8S_QUALIFIED_NAME.fullmatch(name)
        and len(name) <= 63
        and (not prefix or (DNS_SUBDOMAIN.fullmatch(prefix) and len(prefix) <= 253))
    )


def assert_kubernetes_accepts(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    name_pattern = DNS_1035 if obj["kind"] == "Service" else DNS_SUBDOMAIN
    limit = 253 if obj["kind"] == "Deployment" else 63
    assert name_pattern.fullmatch(meta["name"]), meta["name"]
    assert len(meta["name"]) <= limit
    assert DNS_LABEL.fullmatch(meta["namespace"]), meta["namespace"]
    label_sets = [meta["labels"], obj["spec"].get("template", {}).get("metadata", {}).get("labels", {})]
    for labels in label_sets:
        for key, value in labels.items():
            assert _valid_key(key), key
            assert K8S_LABEL_VALUE.fullmatch(value), (key, value)
            assert len(value) <= 63
    annotations = meta.get("annotations", {})
    assert all(_valid_key(k) for k in annotations)
    assert sum(len(k) + len(v) for k, v in annotations.items()) <= 256 * 1024
    for container in obj["spec"].get("template", {}).get("spec", {}).get("containers", []):
        assert DNS_LABEL.fullmatch(container["name"])
        assert len(container["name"]) <= 63
        for variable in container.get("env", []):
            assert K8S_ENV_NAME.fullmatch(variable["name"]), variable["name"]
    for port in obj["spec"].get("ports", []):
        assert PORT_NAME.fullmatch(port["name"]), port["name"]
        assert len(port["name"]) <= 15


versions = st.from_regex(VERSION_PATTERN, fullmatch=True).filter(lambda v: len(v) <= 63 and "\n" not in v)
label_keys = st.from_regex(LABEL_KEY_PATTERN, fullmatch=True).filter(lambda k: "\n" not in k and len(k) < 100)
label_values = st.from_regex(LABEL_VALUE_PATTERN, fullmatch=True).filter(
    lambda v: "\n" not in v and len(v) <= 63
)


@st.composite
def hostile_valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    """The example with generated versions, labels, env names and instance keys."""
    data = example_data()
    version = draw(versions)
    backend = data["services"][0]
    backend["version"] = version
    backend["source"]["revision"] = "main"
    data["services"][1]["dependencies"] = []
    for app in data["applications"]:
        app["version"] = draw(versions)
        for entry in app["services"]:
            if entry["shortName"] == backend["shortName"]:
                entry["version"] = version
            entry["labels"] = draw(st.dictionaries(label_keys, label_values, max_size=3))
            entry["env"] = draw(
                st.dictionaries(
                    st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True), st.text(max_size=20), max_size=3
                )
            )
            if draw(st.booleans()):
                entry["instance"] = draw(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True))
    return data


@given(hostile_valid_specs())
def test_every_rendered_name_label_and_annotation_is_valid_for_kubernetes(data: dict[str, Any]) -> None:
    try:
        spec = load({"mico.yaml": dump(data)})
    except SpecError:
        return  # rejected with problems (reserved label prefixes, trailing '-', ...): nothing renders
    for obj in render(spec, Settings()):
        assert_kubernetes_accepts(obj)


# -- credentials and one-line messages -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:hunter2@h.example/x", "https://***@h.example/x"),
        ("https://u:pa ss@h/x", "https://***@h/x"),
        ("https://u:pa\nss@h", "https://***@h"),
        ("https://u:p@ss@h/x", "https://***@h/x"),
        ("git+ssh://s3cr3t-TOKEN@h/x", "git+ssh://***@h/x"),
        ("user:hunter2@github.com:org/repo.git", "***@github.com:org/repo.git"),
        ('labels["u:hunter2@h:p"]', 'labels["***@h:p"]'),
        ("docker.io/team/x-user:hunter2@h:p", "docker.io/team/***@h:p"),
        ("809https://u:hunter2@h0", "809https://***@h0"),
        ("https://u:hunter2/x@github.com/x.git", "https://***@github.com/x.git"),
        ("https://u:hunter2?x@h/x", "https://***@h/x"),
        ("https://u:hunter2#x@h", "https://***@h"),
        ("https://u:hunter2`x@h/x", "https://***@h/x"),
        ("https://u:hunter2<x@h/x", "https://***@h/x"),
        ("https:/u:hunter2@h/x", "https:/***@h/x"),  # a path normalisation ate a slash
        ("'u:hunter2 x@h:p': no such revision", "'***@h:p': no such revision"),
        ("u:pw/hunter2@h:p", "***@h:p"),
        ("u:hunter2@-h:path", "***@-h:path"),
        ("u:hunter2@h", "***@h"),
        ("https://github.com/x.git?token=hunter2&ref=main", "https://github.com/x.git?token=***&ref=main"),
        ("repo: git@github.com:org/repo.git", "repo: git@github.com:org/repo.git"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("mail bob@example.com", "mail bob@example.com"),
        ("https://host is down, ask bob@corp", "https://host is down, ask bob@corp"),
        (
            "'https://u:pa ss@h' is not a URL (or user@host:path)",
            "'https://***@h' is not a URL (or user@host:path)",
        ),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_problems_redact_and_escape_every_field() -> None:
    problem = Problem(
        "f\n.yaml", 1, 2, 'x["https://u:hunter2@h"]', "bad\r\nvalue 'u:pw 1@h:p'\u2028 \x1b[31m"
    )
    assert str(problem) == "f\\n.yaml:1:2: x[\"https://***@h\"]: bad\\r\\nvalue '***@h:p'\\u2028 \\x1b[31m"
    assert problem.as_dict()["field"] == 'x["https://***@h"]'


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "credentials--url-in-unknown-key",
            "26:1: [\"https://***@git.example.com/x.git\"]: unknown field 'https://***@git.example.com/x.git'",
        ),
        (
            "credentials--url-in-yaml-tag",
            "5:11: services[0].name: YAML tag 'https://***@h.example/t' is not supported: "
            "only strings, numbers, booleans, lists and mappings",
        ),
        (
            "credentials--git-url-password-with-newline",
            "8:7: services[0].source.git: 'https://***@github.com/org/repo.git' is not an https, git or "
            "ssh URL (or user@host:path) without credentials, spaces or shell metacharacters",
        ),
        ("oneline--newline-in-key", "26:1: [\"line one\\nline two\"]: unknown field 'line one\\nline two'"),
        (
            "oneline--line-separator-in-key",
            "26:1: [\"a\\u2028b\\u2029c\"]: unknown field 'a\\u2028b\\u2029c'",
        ),
    ],
)
def test_credentials_and_line_breaks_never_reach_a_problem(case: str, expected: str) -> None:
    assert corpus(case) == [expected]


def test_the_schema_states_the_rules_it_cannot_express() -> None:
    comment = json_schema()["$comment"]
    assert "no duplicate keys" in comment
    assert "every key a string" in comment
