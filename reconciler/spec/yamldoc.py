"""YAML documents with the position of every node, read as YAML 1.2.

PyYAML's composer keeps a mark on each node; one walk of the node tree checks it and builds the
data, so any later error can point at FILE:LINE:COL. Duplicate keys, non-string keys, alias
bombs and recursive aliases are rejected here, because PyYAML silently accepts them.

Scalars are resolved by the YAML 1.2 core schema, as the editors that check files against the
JSON Schema (yaml-language-server) read them, not by PyYAML's YAML 1.1: a plain scalar that the
two read differently (`off`, `yes`, `0120`, `2:13:20`, `1_000`, `1e3`) is a problem asking to
write it unambiguously. Plain dates are strings, as in YAML 1.2 (no field of the contract is a
date). Only the core tags are constructed, and only from text that matches them, so
construction cannot fail; every other tag is a problem at its node.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.spec.problems import Marks, Problem, YamlPath, field_path, quote

MAX_EXPANDED_NODES = 1_000_000
#: Scalar characters a document may expand to through aliases: whichever is larger.
MAX_EXPANDED_CHARS = 8_000_000
EXPANSION_FACTOR = 4
#: Longer integers are refused (Python's int() itself refuses more than 4,300 digits).
MAX_INT_DIGITS = 100

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"
#: What the resolver returns for a plain scalar that needs a closer look (and a problem).
_SUSPECT = "tag:ust.mico,2026:suspect"

#: The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), plus `<<`.
_CORE: tuple[tuple[str, re.Pattern[str]], ...] = (
    (_NULL, re.compile(r"(?:~|null|Null|NULL|)\Z")),
    (_BOOL, re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")),
    (_INT, re.compile(r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z")),
    (
        _FLOAT,
        re.compile(
            r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"
        ),
    ),
    (_MERGE, re.compile(r"<<\Z")),
)
_CORE_BY_TAG = dict(_CORE)
#: First characters of a plain scalar that a YAML 1.1 or 1.2 resolver may type.
_TYPED_START = frozenset("~nNtTfFyYoO-+0123456789.<")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]")
#: Scalars up to this length have their resolution cached (ports, booleans, numbers repeat).
_CACHED_LENGTH = 64
_KINDS = {_NULL: "null", _BOOL: "a boolean", _INT: "a number", _FLOAT: "a number", _STR: "a string"}


def _core_tag(value: str) -> str:
    if value[:1] in _TYPED_START or not value:
        for tag, pattern in _CORE:
            if pattern.match(value):
                return tag
    return _STR


#: First characters of a plain scalar that a YAML 1.1 resolver may type ('' for the empty one).
_YAML11_TYPED_START = frozenset(yaml.resolver.Resolver.yaml_implicit_resolvers)


def reads_as_string(value: str) -> bool:
    """Whether a plain scalar is a string to YAML 1.1 and 1.2 readers alike (PyYAML, kubectl)."""
    first = value[:1]
    if first not in _TYPED_START and first not in _YAML11_TYPED_START:
        return True  # most names and labels: no resolver looks further
    return _core_tag(value) == _STR and _yaml11_tag(value) in (_STR, "tag:yaml.org,2002:timestamp")


def _yaml11_tag(value: str) -> str:
    for tag, pattern in yaml.resolver.Resolver.yaml_implicit_resolvers.get(value[:1], []):
        if pattern.match(value):
            return str(tag)
    return _STR


def _ambiguity(value: str) -> str | None:
    """Why a plain scalar reads differently in YAML 1.1 (PyYAML) and YAML 1.2, if it does."""
    new, old = _core_tag(value), _yaml11_tag(value)
    if old in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"):
        old = _STR  # dates and '=' stay strings: nothing in this contract wants either type
    if new != old:
        return f"YAML 1.1 reads it as {_KINDS.get(old, old)}, YAML 1.2 as {_KINDS[new]}"
    if new == _INT and _LEADING_ZERO.match(value):
        return "YAML 1.1 reads a leading 0 as octal, YAML 1.2 as decimal"
    return None


@functools.lru_cache(maxsize=4096)
def _typed_tag(value: str) -> str:
    tag = _core_tag(value)
    if _ambiguity(value) or (tag == _INT and len(value) > MAX_INT_DIGITS):
        return _SUSPECT
    return tag


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser and composer with YAML 1.2 core-schema resolution."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            if not implicit[0] or (value and value[0] not in _TYPED_START):
                return _STR  # quoted, or a plain scalar no resolver types: most of a file
            return _typed_tag(value) if len(value) <= _CACHED_LENGTH else _typed_tag.__wrapped__(value)
        return _SEQ if kind is yaml.SequenceNode else _MAP


def _int(text: str) -> int:
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text)


def _float(text: str) -> float:
    text = text.lower()
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    return math.nan if text == ".nan" else float(text)


#: The value of a scalar by its tag, once the walk has checked that its text matches the tag.
_CONSTRUCT: dict[str, Callable[[str], Any]] = {
    _NULL: lambda text: None,
    _BOOL: lambda text: text.lower() == "true",
    _INT: _int,
    _FLOAT: _float,
    _STR: str,
}


@functools.lru_cache(maxsize=4096)
def _scalar_problem(tag: str, value: str) -> str | None:
    """Why a scalar cannot be taken as written (its tag is then set to str), or None."""
    if tag == _STR:
        return None
    if tag == _SUSPECT:
        reason = _ambiguity(value)
        if reason:
            fix = "write true or false" if _yaml11_tag(value) == _BOOL else "write it as YAML 1.2 means it"
            return f"ambiguous YAML value {quote(value)}: {reason}; {fix}, or quote it as a string"
        return f"a number of {len(value)} digits is out of range (at most {MAX_INT_DIGITS} digits)"
    pattern = _CORE_BY_TAG.get(tag)
    if pattern is None or tag == _MERGE:
        return _unsupported(tag)
    if not pattern.match(value) or (tag == _INT and len(value) > MAX_INT_DIGITS):
        return f"{quote(value)} is not {_KINDS[tag]} as its tag {_tag_name(tag)} says"
    return None


def _tag_name(tag: str) -> str:
    return quote(tag.replace("tag:yaml.org,2002:", "!!", 1))


def _unsupported(tag: str) -> str:
    return f"YAML tag {_tag_name(tag)} is not supported: only strings, numbers, booleans, lists and mappings"


@dataclass(frozen=True)
class Document:
    data: Any
    marks: Marks
    index: int
    #: Paths already reported here, so later stages do not report them a second time.
    reported: frozenset[YamlPath] = frozenset()


class _Walker:
    """Checks each node and builds its value in the same pass: PyYAML's own constructor would
    walk the tree a second time, slower than libyaml took to parse it."""

    def __init__(self, file: str, *, keep_positions: bool) -> None:
        self.file = file
        self.positions: dict[YamlPath, tuple[int, int]] | None = {} if keep_positions else None
        self.problems: list[Problem] = []
        self.reported: set[YamlPath] = set()
        self._sizes: dict[int, tuple[int, int]] = {}
        self._open: set[int] = set()

    def expanded_size(self, node: yaml.Node) -> tuple[int, int]:
        """Nodes and scalar characters with aliases expanded; raises on a recursive alias."""
        key = id(node)
        if key in self._sizes:
            return self._sizes[key]
        if key in self._open:
            raise _RecursiveAliasError(node)
        self._open.add(key)
        nodes, chars = 1, 0
        if isinstance(node, yaml.ScalarNode):
            chars = len(node.value)
        else:
            children = (
                (c for pair in node.value for c in pair) if isinstance(node, yaml.MappingNode) else node.value
            )
            for child in children:
                child_nodes, child_chars = self.expanded_size(child)
                nodes += child_nodes
                chars += child_chars
        self._open.discard(key)
        self._sizes[key] = (nodes, chars)
        return nodes, chars

    def report(self, node: yaml.Node, path: YamlPath, message: str) -> None:
        line, column = _position(node)
        self.problems.append(Problem(self.file, line, column, field_path(path), message))
        self.reported.add(path)

    def walk(self, node: yaml.Node, path: YamlPath) -> Any:
        """The node's value; an alias is built again at each place it is used."""
        if isinstance(node, yaml.ScalarNode):
            tag = node.tag
            if tag == _STR:
                return node.value
            self._check_scalar(node, path)
            return _CONSTRUCT[node.tag](node.value)
        if isinstance(node, yaml.SequenceNode):
            self._check_collection(node, path, _SEQ)
            items = []
            for index, item in enumerate(node.value):
                child = (*path, index)
                if self.positions is not None:
                    self.positions.setdefault(child, _position(item))
                items.append(self.walk(item, child))
            return items
        assert isinstance(node, yaml.MappingNode)  # the composer makes no other kind
        self._check_collection(node, path, _MAP)
        return self._walk_mapping(node, path)

    def _check_scalar(self, node: yaml.ScalarNode, path: YamlPath) -> None:
        tag, value = node.tag, node.value
        short = len(value) <= _CACHED_LENGTH
        message = _scalar_problem(tag, value) if short else _scalar_problem.__wrapped__(tag, value)
        if message:
            self.report(node, path, message)
            node.tag = _STR

    def _check_collection(self, node: yaml.Node, path: YamlPath, tag: str) -> None:
        if node.tag != tag:
            self.report(node, path, _unsupported(node.tag))
            node.tag = tag

    def _walk_mapping(self, node: yaml.MappingNode, path: YamlPath) -> dict[str, Any]:
        """Keys written here win over merged ones ('<<'), and an earlier merged mapping over a
        later one, as YAML's merge key says."""
        data: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        seen: dict[str, yaml.Node] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            if key_node.tag == _MERGE:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                if all(isinstance(source, yaml.MappingNode) for source in sources):
                    for source in sources:
                        for key, value in self._walk_mapping(source, path).items():
                            merged.setdefault(key, value)
                    continue
                self.report(value_node, (*path, "<<"), "a merge ('<<') takes a mapping or a list of mappings")
                key_node = yaml.ScalarNode(_STR, "<<", key_node.start_mark)
                node.value[index] = (key_node, value_node)
            if not isinstance(key_node, yaml.ScalarNode):
                # a list or mapping as a key: reported, then replaced so the rest can be read
                key_node = yaml.ScalarNode(
                    _STR, f"(key at line {_position(key_node)[0]})", key_node.start_mark
                )
                node.value[index] = (key_node, value_node)
                self.report(key_node, (*path, key_node.value), "keys must be strings, not lists or mappings")
            key = self._key(key_node, path)
            child = (*path, key)
            if key in seen:
                first_line, _ = _position(seen[key])
                self.report(key_node, child, f"duplicate key {quote(key)} (first at line {first_line})")
                continue
            seen[key] = key_node
            if self.positions is not None:
                self.positions.setdefault(child, _position(key_node))
            data[key] = self.walk(value_node, child)
        return {**merged, **data} if merged else data

    def _key(self, key_node: yaml.ScalarNode, path: YamlPath) -> str:
        """The key as written; a key that is not a string is reported and made one."""
        key = str(key_node.value)
        if key_node.tag == _SUSPECT and _core_tag(key) == _STR:
            key_node.tag = _STR  # `on:` is the string 'on' in YAML 1.2, the reading that matters for keys
        elif key_node.tag in (_NULL, _BOOL, _INT, _FLOAT, _SUSPECT):
            self.report(key_node, (*path, key), f"keys must be strings: write {quote(key)} in quotes")
            key_node.tag = _STR
        elif key_node.tag != _STR:
            self._check_scalar(key_node, (*path, key))
        return key


class _RecursiveAliasError(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def _position(node: yaml.Node) -> tuple[int, int]:
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1)


def _expansion_problem(walker: _Walker, node: yaml.Node, text: str) -> str | None:
    """Why a document with anchors is refused: a recursive alias, or aliases that multiply it."""
    try:
        nodes, chars = walker.expanded_size(node)
    except _RecursiveAliasError as err:
        node = err.node
        message = "recursive YAML alias"
    else:
        max_chars = max(MAX_EXPANDED_CHARS, EXPANSION_FACTOR * len(text))
        if nodes > MAX_EXPANDED_NODES:
            message = f"document expands to more than {MAX_EXPANDED_NODES} nodes via aliases"
        elif chars > max_chars:
            message = f"document expands to more than {max_chars:,} characters via aliases"
        else:
            return None
    walker.report(node, (), message)
    return message


class _FoundAgain(Mapping[YamlPath, tuple[int, int]]):
    """The node positions of a document, found again by parsing its file once more when first
    asked (for a problem found in it, now or in a later load): a daemon holding a config of
    hundreds of files keeps their bytes, not a position for each of their nodes."""

    def __init__(self, file: str, content: bytes, index: int) -> None:
        self._source = (file, content, index)
        self._positions: Mapping[YamlPath, tuple[int, int]] | None = None

    def _found(self) -> Mapping[YamlPath, tuple[int, int]]:
        if self._positions is None:
            file, content, index = self._source
            documents, _ = parse(file, content, keep_positions=True)
            self._positions = documents[index].marks.positions
        return self._positions

    def __getitem__(self, path: YamlPath) -> tuple[int, int]:
        return self._found()[path]

    def __iter__(self) -> Iterator[YamlPath]:
        return iter(self._found())

    def __len__(self) -> int:
        return len(self._found())


def parse(file: str, content: bytes, *, keep_positions: bool = False) -> tuple[list[Document], list[Problem]]:
    """Every document of one file, or the problems that stop it from being read. The positions
    of its nodes are kept only with `keep_positions`; else found again when asked for."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        return [], [Problem(file, 1, 1, "(file)", f"not UTF-8 text: {err.reason} at byte {err.start}")]
    documents: list[Document] = []
    problems: list[Problem] = []
    # an alias needs an anchor ('&'); without one the size is bounded by the file's
    has_anchors = "&" in text
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            walker = _Walker(file, keep_positions=keep_positions)
            if has_anchors and _expansion_problem(walker, node, text):
                problems.extend(walker.problems)
                continue
            if walker.positions is not None:
                walker.positions[()] = _position(node)
            data = walker.walk(node, ())
            problems.extend(walker.problems)
            positions: Mapping[YamlPath, tuple[int, int]] = (
                _FoundAgain(file, content, len(documents)) if walker.positions is None else walker.positions
            )
            marks = Marks(file, positions)
            documents.append(Document(data, marks, len(documents), frozenset(walker.reported)))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = " ".join(filter(None, [err.context, err.problem]))
        problems.append(Problem(file, line, column, "(yaml)", f"invalid YAML: {reason}"))
    except yaml.YAMLError as err:
        problems.append(Problem(file, 1, 1, "(yaml)", f"invalid YAML: {err}"))
    except RecursionError:
        problems.append(Problem(file, 1, 1, "(yaml)", "invalid YAML: nested too deeply"))
    finally:
        loader.dispose()
    return documents, problems
