"""Objects as multi-document YAML, byte-stable: sorted keys, fixed style.

PyYAML's representer and serializer took longer than rendering the objects: these plain trees
are turned into emitter events here directly, and libyaml's emitter still decides how each
scalar is written, as it would for PyYAML's own nodes.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable
from typing import Any

import yaml

from reconciler.spec.yamldoc import reads_as_string

_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_RESOLVER = yaml.resolver.Resolver()
_STR, _INT, _BOOL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool"
_SEQ, _MAP = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


@functools.lru_cache(maxsize=8192)
def _plain_implicit(tag: str, value: str) -> tuple[bool, bool]:
    """Whether a YAML 1.1 reader reads the scalar back with its tag when it is written plain,
    and when quoted: the emitter writes the tag where it would not (PyYAML's serializer asks
    the same). Names, labels and numbers repeat."""
    resolve = _RESOLVER.resolve
    return (
        resolve(yaml.ScalarNode, value, (True, False)) == tag,  # type: ignore[no-untyped-call]
        resolve(yaml.ScalarNode, value, (False, True)) == tag,  # type: ignore[no-untyped-call]
    )


@functools.lru_cache(maxsize=8192)
def _string(value: str) -> tuple[tuple[bool, bool], str | None]:
    """How a string is written: quoted when a YAML 1.2 reader would take it for something else
    (PyYAML, reading YAML 1.1, writes `1e3` plain, and kubectl reads a number there)."""
    return _plain_implicit(_STR, value), None if reads_as_string(value) else "'"


class _Dumper(_Base):  # type: ignore[misc,valid-type]
    def ignore_aliases(self, data: Any) -> bool:
        """Shared sub-objects are written out in full: anchors and aliases surprise kubectl users."""
        return True

    def events(self, value: Any, out: list[yaml.Event]) -> None:
        """Types other than mappings, lists, strings, integers and booleans go through PyYAML's
        representer."""
        kind = type(value)
        if kind is str:
            implicit, style = _string(value)
            out.append(yaml.ScalarEvent(None, _STR, implicit, value, style=style))
        elif kind is dict:
            out.append(yaml.MappingStartEvent(None, _MAP, True, flow_style=False))
            for key, item in sorted(value.items()):
                if type(key) is str:  # always, in an object: written without a call
                    implicit, style = _string(key)
                    out.append(yaml.ScalarEvent(None, _STR, implicit, key, style=style))
                else:
                    self.events(key, out)
                self.events(item, out)
            out.append(yaml.MappingEndEvent())
        elif kind is list:
            out.append(yaml.SequenceStartEvent(None, _SEQ, True, flow_style=False))
            for item in value:
                self.events(item, out)
            out.append(yaml.SequenceEndEvent())
        elif kind is bool or kind is int:
            tag, text = (_BOOL, "true" if value else "false") if kind is bool else (_INT, str(value))
            out.append(yaml.ScalarEvent(None, tag, _plain_implicit(tag, text), text))
        else:
            self._node_events(self.represent_data(value), out)

    def _node_events(self, node: yaml.Node, out: list[yaml.Event]) -> None:
        if isinstance(node, yaml.ScalarNode):
            implicit = _plain_implicit(node.tag, node.value)
            out.append(yaml.ScalarEvent(None, node.tag, implicit, node.value, style=node.style))
        elif isinstance(node, yaml.SequenceNode):
            out.append(yaml.SequenceStartEvent(None, node.tag, node.tag == _SEQ, flow_style=node.flow_style))
            for item in node.value:
                self._node_events(item, out)
            out.append(yaml.SequenceEndEvent())
        else:
            assert isinstance(node, yaml.MappingNode)
            out.append(yaml.MappingStartEvent(None, node.tag, node.tag == _MAP, flow_style=node.flow_style))
            for key, item in node.value:
                self._node_events(key, out)
                self._node_events(item, out)
            out.append(yaml.MappingEndEvent())


def _dump(objects: Iterable[Any], *, explicit_start: bool) -> str:
    stream = io.StringIO()
    dumper = _Dumper(stream, default_flow_style=False, allow_unicode=True, width=120, sort_keys=True)
    dumper.open()
    for obj in objects:
        events: list[yaml.Event] = [yaml.DocumentStartEvent(explicit=explicit_start)]
        dumper.events(obj, events)
        events.append(yaml.DocumentEndEvent(explicit=False))
        for event in events:
            dumper.emit(event)
    dumper.close()
    return stream.getvalue()


def to_yaml(obj: Any) -> str:
    return _dump([obj], explicit_start=False)


def to_documents(objects: Iterable[Any]) -> str:
    return _dump(objects, explicit_start=True)
