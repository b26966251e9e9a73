"""Validation problems and where they point.

A `Problem` is one line of user-facing output, `FILE:LINE:COL: field.path: message`. `Origin`
ties a spec element to its file and YAML path so rules can point at the exact node.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PathKey = str | int
YamlPath = tuple[PathKey, ...]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.field}: {self.message}"

    def as_dict(self) -> dict[str, str | int]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
        }


class SpecError(Exception):
    """The config is invalid; carries every problem found, sorted by position."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


def field_path(path: YamlPath) -> str:
    """Render ('services', 0, 'env', 'A.B') as services[0].env["A.B"]."""
    text = ""
    for key in path:
        if isinstance(key, int):
            text += f"[{key}]"
        elif _IDENTIFIER.match(key):
            text += f".{key}" if text else key
        else:
            text += f"[{key!r}]".replace("'", '"')
    return text or "(document)"


@dataclass(frozen=True)
class Marks:
    """1-based line/column of every node of one YAML document, by path."""

    file: str
    positions: Mapping[YamlPath, tuple[int, int]]

    def locate(self, path: YamlPath) -> tuple[int, int]:
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return (1, 1)


@dataclass(frozen=True)
class Origin:
    """Where one element (a service, an application, ...) was written."""

    marks: Marks
    path: YamlPath

    def problem(self, message: str, *sub: PathKey) -> Problem:
        full = self.path + sub
        line, column = self.marks.locate(full)
        return Problem(self.marks.file, line, column, field_path(full), message)

    def describe(self, *sub: PathKey) -> str:
        line, column = self.marks.locate(self.path + sub)
        return f"{self.marks.file}:{line}:{column}"
