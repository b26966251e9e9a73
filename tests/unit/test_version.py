import re

import nodesemver
import pytest
import semver
from hypothesis import given
from hypothesis import strategies as st

from reconciler.spec.version import VERSION_PATTERN, MicoVersion, VersionRange, VersionSet

prefixes = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=3)
numbers = st.integers(min_value=0, max_value=10_000)
identifiers = st.one_of(numbers.map(str), st.from_regex(r"[0-9]*[a-zA-Z-][0-9a-zA-Z-]{0,5}", fullmatch=True))
prereleases = st.lists(identifiers, max_size=3).map(lambda ids: f"-{'.'.join(ids)}" if ids else "")
builds = st.lists(st.from_regex(r"[0-9a-zA-Z-]{1,5}", fullmatch=True), max_size=2).map(
    lambda ids: f"+{'.'.join(ids)}" if ids else ""
)
cores = st.tuples(numbers, numbers, numbers).map(lambda t: f"{t[0]}.{t[1]}.{t[2]}")
plain_versions = st.builds(lambda c, p, b: c + p + b, cores, prereleases, builds)


@given(prefixes, plain_versions)
def test_parse_round_trips_and_keeps_prefix(prefix: str, text: str) -> None:
    version = MicoVersion.parse(prefix + text)
    assert str(version) == prefix + text
    assert version.prefix == prefix


@given(prefixes, prefixes, plain_versions, plain_versions)
def test_ordering_is_semver_precedence_and_ignores_prefix(p1: str, p2: str, a: str, b: str) -> None:
    expected = semver.Version.parse(a).compare(semver.Version.parse(b))
    left, right = MicoVersion.parse(p1 + a), MicoVersion.parse(p2 + b)
    assert (left < right) == (expected < 0)
    assert (left == right) == (expected == 0)
    if left == right:
        assert hash(left) == hash(right)


@given(st.text(max_size=30))
def test_parse_accepts_exactly_the_contract_pattern(text: str) -> None:
    if re.fullmatch(VERSION_PATTERN, text):
        assert str(MicoVersion.parse(text)) == text
    else:
        with pytest.raises(ValueError, match="is not a version"):
            MicoVersion.parse(text)


@pytest.mark.parametrize("text", ["1.0", "v1", "01.0.0", "1.0.0-", "1.0.0+", "1.0.0\n", "-1.0.0", "v 1.0.0"])
def test_invalid_versions(text: str) -> None:
    with pytest.raises(ValueError, match="is not a version"):
        MicoVersion.parse(text)


@pytest.mark.parametrize(
    ("range_text", "version", "inside"),
    [
        ("^1.2", "v1.9.0", True),
        ("^1.2", "2.0.0", False),
        (">=1.0.0 <2.0.0", "1.5.3", True),
        (">=1.0.0 <2.0.0", "2.0.0", False),
        ("1.0.0", "v1.0.0", True),
        ("1.0.0", "1.0.1", False),
        ("~1.2.0", "1.2.9", True),
        ("1.x || 3.x", "3.1.0", True),
        ("1.x || 3.x", "2.1.0", False),
        ("^1.0.0", "1.1.0-rc.1", False),  # npm semantics: pre-releases only when named
    ],
)
def test_range_matching(range_text: str, version: str, inside: bool) -> None:
    versions = VersionSet.of([MicoVersion.parse(version)])
    assert VersionRange.parse(range_text).satisfied_by_any(versions) is inside


@pytest.mark.parametrize("text", ["", "  ", "banana", ">=1.0.0 <", "^^1"])
def test_invalid_ranges(text: str) -> None:
    with pytest.raises(ValueError, match="is not a semver range"):
        VersionRange.parse(text)


def test_whitespace_in_ranges_is_collapsed_before_node_semver() -> None:
    """node-semver backtracks on runs of spaces; the parser never hands it one."""
    assert VersionRange.parse(">=1.0.0    <2.0.0").satisfied_by_any(
        VersionSet.of([MicoVersion.parse("1.5.0")])
    )
    with pytest.raises(ValueError, match="is not a semver range"):
        VersionRange.parse("1.0.0" + " " * 240 + "<")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (">=1.0.0 " * 40, "a version range is at most 256 characters"),
        ("1.0.0; rm -rf /", "is not a semver range"),
        ("https://u:hunter2@h", "is not a semver range"),
    ],
)
def test_ranges_outside_the_grammar_never_reach_node_semver(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VersionRange.parse(text)


small_versions = st.builds(
    lambda c, p: c + p,
    st.tuples(*[st.integers(0, 3)] * 3).map(lambda t: f"{t[0]}.{t[1]}.{t[2]}"),
    st.sampled_from(["", "", "-rc.1", "-0"]),
)
ranges = st.sampled_from(
    [
        "*",
        "1.x",
        "^1.2",
        "~0.1.0",
        ">=1.0.0 <2.0.0",
        ">1.1.1",
        "<=2.0.0",
        "1.1.1",
        "0.x || >=3.0.0",
        ">=1.0.0-rc.1 <1.0.1",
        "2.3.3-0",
        ">2.0.0-rc.1",
        "1.2.3 - 2.0.0",
        "<0.0.1",
    ]
)


@given(st.lists(small_versions, max_size=12), ranges)
def test_satisfied_by_any_agrees_with_node_semver(versions: list[str], range_text: str) -> None:
    """The bisecting search gives npm's answer: some version satisfies iff max_satisfying finds one."""
    found = VersionRange.parse(range_text).satisfied_by_any(VersionSet.of(map(MicoVersion.parse, versions)))
    assert found is (nodesemver.max_satisfying(versions, range_text, False) is not None)
