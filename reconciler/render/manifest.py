"""Objects as multi-document YAML, byte-stable: sorted keys, fixed style."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from reconciler.spec.yamldoc import reads_as_string

_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[misc,valid-type]
    """Writes shared sub-objects out in full: anchors and aliases surprise kubectl users."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Quoted when a YAML 1.2 reader would take it for something else: PyYAML (YAML 1.1) writes
    `1e3` plain, and kubectl reads a number there."""
    style = None if reads_as_string(value) else "'"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def to_yaml(obj: Any) -> str:
    return yaml.dump(
        obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=120
    )


def to_documents(objects: Iterable[Any]) -> str:
    return "".join(f"---\n{to_yaml(obj)}" for obj in objects)
