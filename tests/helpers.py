"""Shared test helpers: the example config as data, and loading configs from dicts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from reconciler.spec import Spec, SpecError, load

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "mico.yaml"


def example_data() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))


def dump(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False).encode()


def load_data(*documents: Any, name: str = "mico.yaml") -> Spec:
    return load({name: b"---\n".join(dump(d) for d in documents)})


def problems_of(files: dict[str, bytes]) -> list[str]:
    try:
        load(files)
    except SpecError as err:
        return [str(p) for p in err.problems]
    return []
