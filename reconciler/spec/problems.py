"""Validation problems and where they point.

A `Problem` is one line of user-facing output, `FILE:LINE:COL: field.path: message`. `Origin`
ties a spec element to its file and YAML path so rules can point at the exact node. Every
problem is cleaned when it is made (credentials redacted, control characters escaped), so no
code path can print a token or break the one-problem-per-line output.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.redact import redact

PathKey = str | int
YamlPath = tuple[PathKey, ...]

#: At most this many problems are kept; a last one says how many more were found.
MAX_PROBLEMS = 200
#: Values quoted in messages are cut to this many characters.
MAX_QUOTED = 80

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def one_line(text: str) -> str:
    """Escape what would break a line (newlines, CR, U+2028, control characters)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shorten(text: str, limit: int = MAX_QUOTED) -> str:
    """Redacted, then cut to `limit` characters (in this order: a cut could hide the '@')."""
    text = redact(text)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def quote(value: str) -> str:
    """A user's value as shown in a message: redacted, quoted on one line, cut when long."""
    return repr(shorten(value))


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    column: int
    field: str
    message: str

    def __post_init__(self) -> None:
        for name in ("file", "field", "message"):
            text = getattr(self, name)
            if "@" in text or not text.isprintable():
                object.__setattr__(self, name, one_line(redact(text)))

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
    """The config is invalid; carries the problems found, sorted by position.

    A hostile file can hold hundreds of thousands of problems: the first MAX_PROBLEMS are
    kept and a last one counts the rest; `total` is the full count."""

    def __init__(self, problems: list[Problem]) -> None:
        unique = set(problems)
        self.total = len(unique)
        ordered = heapq.nsmallest(MAX_PROBLEMS + 1, unique, key=_position_key)
        if len(ordered) > MAX_PROBLEMS:
            first_hidden = ordered[MAX_PROBLEMS]
            hidden = self.total - MAX_PROBLEMS
            more = f"... and {hidden:,} more problems not shown"
            at = (first_hidden.file, first_hidden.line, first_hidden.column)
            ordered = [*ordered[:MAX_PROBLEMS], Problem(*at, "(more)", more)]
        self.problems = ordered
        super().__init__("\n".join(str(p) for p in self.problems))


def _position_key(problem: Problem) -> tuple[str, int, int, str, str]:
    return (problem.file, problem.line, problem.column, problem.field, problem.message)


def field_path(path: YamlPath) -> str:
    """Render ('services', 0, 'env', 'A.B') as services[0].env["A.B"]; long keys are cut."""
    text = ""
    for key in path:
        if isinstance(key, str):
            key = shorten(key)
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


def github_annotation(problem: Problem) -> str:
    """The problem as a GitHub Actions workflow command, which shows it on its line of the pull
    request: `::error file=F,line=L,col=C,title=FIELD::MESSAGE`, escaped as the Actions toolkit
    does, so no value can end the command or start another."""

    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    return (
        f"::error file={prop(problem.file)},line={problem.line},col={problem.column},"
        f"title={prop(problem.field)}::{data(problem.message)}"
    )
