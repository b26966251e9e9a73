"""YAML documents with the position of every node.

PyYAML's composer keeps a mark on each node; we walk the node tree once beside the constructed
data so any later error can point at FILE:LINE:COL. Duplicate keys, alias bombs and recursive
aliases are rejected here, because PyYAML silently accepts the first and expands the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.spec.problems import Marks, Problem, YamlPath, field_path

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_EXPANDED_NODES = 1_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Document:
    data: Any
    marks: Marks
    index: int


class _Walker:
    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[YamlPath, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._sizes: dict[int, int] = {}
        self._open: set[int] = set()

    def expanded_size(self, node: yaml.Node) -> int:
        """Node count with aliases expanded; raises on a recursive alias."""
        key = id(node)
        if key in self._sizes:
            return self._sizes[key]
        if key in self._open:
            raise _RecursiveAliasError(node)
        self._open.add(key)
        size = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                size += self.expanded_size(k) + self.expanded_size(v)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                size += self.expanded_size(item)
        self._open.discard(key)
        self._sizes[key] = size
        return size

    def walk(self, node: yaml.Node, path: YamlPath) -> None:
        self.positions.setdefault(path, _position(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))
        elif isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, path)

    def _walk_mapping(self, node: yaml.MappingNode, path: YamlPath) -> None:
        seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in merged:
                    if isinstance(source, yaml.MappingNode):
                        self._walk_mapping(source, path)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            if key in seen:
                line, column = _position(key_node)
                first_line, _ = _position(seen[key])
                self.problems.append(
                    Problem(
                        self.file,
                        line,
                        column,
                        field_path((*path, key)),
                        f"duplicate key {key!r} (first at line {first_line})",
                    )
                )
                continue
            seen[key] = key_node
            child = (*path, key)
            self.positions.setdefault(child, _position(key_node))
            if isinstance(value_node, yaml.SequenceNode | yaml.MappingNode):
                self.walk(value_node, child)


class _RecursiveAliasError(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def _position(node: yaml.Node) -> tuple[int, int]:
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1)


def parse(file: str, content: bytes) -> tuple[list[Document], list[Problem]]:
    """Every document of one file, or the problems that stop it from being read."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        return [], [Problem(file, 1, 1, "(file)", f"not UTF-8 text: {err.reason} at byte {err.start}")]
    documents: list[Document] = []
    problems: list[Problem] = []
    has_anchors = "&" in text
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            walker = _Walker(file)
            try:
                # an alias needs an anchor ('&'); without one the size is bounded by the file's
                size = walker.expanded_size(node) if has_anchors else 0
            except _RecursiveAliasError as err:
                line, column = _position(err.node)
                problems.append(Problem(file, line, column, "(document)", "recursive YAML alias"))
                continue
            if size > MAX_EXPANDED_NODES:
                line, column = _position(node)
                problems.append(
                    Problem(
                        file,
                        line,
                        column,
                        "(document)",
                        f"document expands to more than {MAX_EXPANDED_NODES} nodes via aliases",
                    )
                )
                continue
            walker.walk(node, ())
            problems.extend(walker.problems)
            data = loader.construct_document(node)
            documents.append(Document(data, Marks(file, walker.positions), len(documents)))
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
