"""The JSON Schema of mico.yaml, generated from the models so the two cannot drift apart.

Editors pick it up through `# yaml-language-server: $schema=...`; `schemas/mico.schema.json`
is this function's output, and a test fails when the file is stale.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from reconciler.spec import yamldoc
from reconciler.spec.model import Document

SCHEMA_ID = "https://ust-mico.github.io/mico-reconciler/schemas/mico.schema.json"
#: What `mico-reconciler validate` checks beyond this schema, told to the people reading it.
RULES_BEYOND_SCHEMA = (
    "Beyond this schema, `mico-reconciler validate` reads YAML 1.2 and requires: no duplicate keys; "
    "every key a string (quote keys such as 1, null or true); no plain scalar that YAML 1.1 reads "
    "otherwise (quote or rewrite off, yes, 0120, 2:13:20, 1_000); only the tags !!str, !!int, "
    "!!float, !!bool, !!null, !!seq and !!map; aliases that expand a document to at most "
    f"{yamldoc.MAX_EXPANDED_NODES:,} "
    f"nodes and {yamldoc.MAX_EXPANDED_CHARS:,} characters (or {yamldoc.EXPANSION_FACTOR} times the file); "
    "and the rules across elements: "
    "references, uniqueness, sharing, Kafka, derived Kubernetes names and object sizes."
)


class _NoNulls(GenerateJsonSchema):
    """Optional fields may be omitted but never null (the models reject null too)."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        result = super().default_schema(schema)
        if result.get("default", 0) is None:
            del result["default"]
        return result

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        """Keys that miss the key pattern are errors, as in the models."""
        result = super().dict_schema(schema)
        patterns = result.pop("patternProperties", None)
        if patterns:
            ((pattern, values),) = patterns.items()
            result["propertyNames"] = {**result.get("propertyNames", {}), "pattern": pattern}
            result["additionalProperties"] = values
        return result

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def json_schema() -> dict[str, Any]:
    body = Document.model_json_schema(by_alias=True, schema_generator=_NoNulls, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "mico.yaml (ust.mico/v1)",
        "description": "Services and applications of MICO, reconciled into Kubernetes by mico-reconciler.",
        "$comment": RULES_BEYOND_SCHEMA,
        **{k: v for k, v in body.items() if k not in ("title", "description")},
    }
