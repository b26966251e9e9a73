"""Objects as multi-document YAML, byte-stable: sorted keys, fixed style."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[misc,valid-type]
    """Writes shared sub-objects out in full: anchors and aliases surprise kubectl users."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(obj: Any) -> str:
    return yaml.dump(
        obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=120
    )


def to_documents(objects: Iterable[Any]) -> str:
    return "".join(f"---\n{to_yaml(obj)}" for obj in objects)
