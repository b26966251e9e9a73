"""The published JSON Schema and the models accept and reject the same documents."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from reconciler.spec.model import Document
from reconciler.spec.schema import json_schema
from tests.helpers import ROOT, example_data
from tests.unit.test_rules import CASES


def _ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    """JSON Schema patterns are ECMA-262, where '$' does not match before a final newline
    (Python's re does); editors and the models (Rust regex) agree on ECMA."""
    if validator.is_type(instance, "string") and not re.search(re.sub(r"\$$", r"\\Z", pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


SchemaValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})
VALIDATOR = SchemaValidator(json_schema())


def model_accepts(document: Any) -> bool:
    try:
        Document.model_validate(document)
    except ValidationError:
        return False
    return True


def schema_accepts(document: Any) -> bool:
    return VALIDATOR.is_valid(document)


def test_committed_schema_is_up_to_date() -> None:
    committed = json.loads((ROOT / "schemas" / "mico.schema.json").read_text())
    assert committed == json_schema(), "run: mico-reconciler schema > schemas/mico.schema.json"


def test_every_field_and_object_has_a_description_for_editors() -> None:
    """yaml-language-server shows `description` on hover and completion: without one a user
    typing a field sees no help."""
    schema = json_schema()
    undescribed = [
        f"{name}.{field}"
        for name, definition in [("(document)", schema), *schema["$defs"].items()]
        for field, spec in definition.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undescribed == []
    assert [name for name, d in schema["$defs"].items() if not d.get("description")] == []


def test_schema_is_valid_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_example_declares_the_schema_for_editors() -> None:
    first_line = (ROOT / "examples" / "mico.yaml").read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=../schemas/mico.schema.json"


def test_example_is_accepted_by_both() -> None:
    assert schema_accepts(example_data())
    assert model_accepts(example_data())


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rule_cases_agree(case: Any) -> None:
    """Structural cases are rejected by both; semantic ones are accepted by both."""
    data = example_data()
    case[1](data)
    assert schema_accepts(data) == model_accepts(data)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*path, index))


EXAMPLE_PATHS = [p for p in _paths(example_data()) if p]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.floats(allow_nan=False)
    | st.sampled_from(
        [
            "",
            "a",
            "abc",
            "TCP",
            "UDP",
            "v1.0.0",
            "1.0.0-rc.1",
            "x\n",
            "Always",
            "INPUT",
            "-x",
            "https://h.example/r.git",
            "nginx:1",
            "../x",
            "ust.mico/v1",
        ]
    )
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=2) | st.dictionaries(st.text(max_size=6), c, max_size=2),
    max_leaves=4,
)


@st.composite
def mutated_examples(draw: st.DrawFn) -> Any:
    data = example_data()
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(EXAMPLE_PATHS))
        target = data
        try:
            for key in path[:-1]:
                target = target[key]
            action = draw(st.sampled_from(["set", "delete", "add"]))
            if action == "set":
                target[path[-1]] = draw(values)
            elif action == "delete":
                del target[path[-1]]
            elif isinstance(target, dict):
                target[draw(st.text(max_size=8))] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue
    return copy.deepcopy(data)


@given(mutated_examples())
def test_schema_and_models_agree_on_mutated_documents(document: Any) -> None:
    assert schema_accepts(document) == model_accepts(document)
