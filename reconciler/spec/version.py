"""MicoVersion (letters + SemVer 2.0) and dependency ranges.

Ordering and equality follow SemVer precedence and ignore the letter prefix, as MICO did.
Ranges use npm's grammar (`^1.2`, `>=1.0.0 <2.0.0`, `1.x || 2.x`) because python-semver has none.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import nodesemver
import semver

# ECMA-262-compatible (no \d, no lookaround) so the same text serves JSON Schema and pydantic.
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
VERSION_PATTERN = (
    rf"^[a-zA-Z]*{_NUM}\.{_NUM}\.{_NUM}"
    rf"(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)
_PREFIX = re.compile(r"^[a-zA-Z]*")
#: node-semver's regexes backtrack on long runs of spaces ("1.0.0" + 240 spaces + "<" took 8 s):
#: ranges are bounded, whitespace is collapsed and only the grammar's characters reach it.
MAX_RANGE_LENGTH = 256
_RANGE_CHARS = re.compile(r"[0-9A-Za-z.+<>=~^*| -]*")


@functools.total_ordering
@dataclass(frozen=True, eq=False)
class MicoVersion:
    prefix: str
    semver: semver.Version

    @classmethod
    def parse(cls, text: str) -> MicoVersion:
        """Parsed once per distinct text: every reference and lookup parses the same few."""
        return _parse_version(text)

    @classmethod
    def _parse(cls, text: str) -> MicoVersion:
        if not re.match(VERSION_PATTERN, text) or text.endswith("\n"):
            raise ValueError(f"{text!r} is not a version: letters, then SemVer 2.0 like v1.2.3")
        prefix = _PREFIX.match(text)
        assert prefix is not None  # the pattern above always matches a (possibly empty) prefix
        return cls(prefix.group(0), semver.Version.parse(text[prefix.end() :]))

    def __str__(self) -> str:
        return f"{self.prefix}{self.semver}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MicoVersion):
            return NotImplemented
        return self.semver.compare(other.semver) == 0

    def __lt__(self, other: MicoVersion) -> bool:
        return self.semver.compare(other.semver) < 0

    def __hash__(self) -> int:
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        v = self.semver
        return hash((v.major, v.minor, v.patch, v.prerelease))


@dataclass(frozen=True)
class VersionRange:
    """A semver range as written by the user; `normalized` is npm's canonical form."""

    text: str
    normalized: str

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        if len(text) > MAX_RANGE_LENGTH:
            raise ValueError(f"a version range is at most {MAX_RANGE_LENGTH} characters")
        collapsed = " ".join(text.split())
        normalized = _valid_range(collapsed) if _RANGE_CHARS.fullmatch(collapsed) else None
        if normalized is None or not collapsed:
            shown = repr(text) if len(text) <= 64 else f"{text[:60]!r}..."
            raise ValueError(f"{shown} is not a semver range (e.g. '^1.2', '>=1.0.0 <2.0.0')")
        return cls(text, normalized)

    def satisfied_by_any(self, versions: VersionSet) -> bool:
        """Whether a version satisfies the range, in log time per comparator set: a config may
        define thousands of versions and thousands of dependencies on them. Answered once per
        range and set of versions: a commit asks again about every dependency of the config."""
        return _satisfied(self.normalized, versions)


@functools.lru_cache(maxsize=65536)
def _satisfied(normalized: str, versions: VersionSet) -> bool:
    compiled = _compiled_range(normalized)
    for comparators in compiled.set:
        # the smallest release above every lower bound is the one candidate: if it breaks an
        # upper bound, every larger one does too
        start = 0
        for comparator in comparators:
            if comparator.operator in (">=", "", "="):
                start = max(start, bisect.bisect_left(versions.releases, _Ordered(comparator.semver)))
            elif comparator.operator == ">":
                start = max(start, bisect.bisect_right(versions.releases, _Ordered(comparator.semver)))
        if start < len(versions.releases) and compiled.test(versions.releases[start].semver):
            return True
    # a prerelease satisfies only comparators of its own major.minor.patch (npm's rule)
    return any(compiled.test(v) for v in versions.prereleases)


class _Ordered:
    """A node-semver version ordered by SemVer precedence (its own class has no `<`)."""

    __slots__ = ("semver",)

    def __init__(self, version: Any) -> None:
        self.semver = version

    def __lt__(self, other: _Ordered) -> bool:
        return bool(self.semver.compare(other.semver) < 0)


@dataclass(frozen=True, eq=False)
class VersionSet:
    """The versions of one service as node-semver reads them: releases sorted, prereleases apart.
    Equal, and equally hashed, when made of the same versions (`key`)."""

    releases: list[_Ordered]
    prereleases: list[Any]
    key: tuple[str, ...] = ()

    @classmethod
    def of(cls, versions: Iterable[MicoVersion]) -> VersionSet:
        return _version_set(tuple(sorted(str(v.semver) for v in versions)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VersionSet) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


@functools.lru_cache(maxsize=65536)
def _version_set(key: tuple[str, ...]) -> VersionSet:
    parsed = [nodesemver.make_semver(text, False) for text in key]
    return VersionSet(
        sorted(_Ordered(v) for v in parsed if not v.prerelease), [v for v in parsed if v.prerelease], key
    )


@functools.lru_cache(maxsize=65536)
def _parse_version(text: str) -> MicoVersion:
    return MicoVersion._parse(text)


@functools.lru_cache(maxsize=4096)
def _compiled_range(normalized: str) -> Any:
    return nodesemver.make_range(normalized, False)


@functools.lru_cache(maxsize=4096)
def _valid_range(text: str) -> str | None:
    try:
        result = nodesemver.valid_range(text, False)
    except (ValueError, TypeError, AttributeError, IndexError):
        return None
    return None if result is None else str(result)
