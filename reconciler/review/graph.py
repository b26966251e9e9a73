"""Pictures of applications, as MICO's UI drew them: applications, the service instances they
deploy (shared ones marked, with their summed replicas), interfaces, interface connections,
dependencies, topics and Kafka-FaaS-connectors. Pure.

`build` makes one graph; `mermaid`, `dot` and `svg` write it. Every label is user input (names,
versions, dependency ranges), so each writer escapes it for its own format, and node ids are
generated (`n1`, `n2`, ...), never taken from names.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from reconciler.render.workloads import Instance, instances
from reconciler.spec import Spec
from reconciler.spec.model import Application
from reconciler.spec.names import connector_name
from reconciler.spec.rules import instance_key
from reconciler.spec.version import MicoVersion, VersionRange, VersionSet

NodeKind = Literal["application", "instance", "interface", "topic", "connector", "service"]
EdgeKind = Literal["deploys", "provides", "connects", "depends", "writes", "reads"]


@dataclass(frozen=True)
class Node:
    id: str
    kind: NodeKind
    lines: tuple[str, ...]
    shared: bool = False
    changed: bool = False


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind
    label: str = ""


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    _ids: dict[tuple[str, ...], str] = field(default_factory=dict)

    def node(self, key: tuple[str, ...], kind: NodeKind, lines: tuple[str, ...], **marks: bool) -> str:
        """The id of the node `key`, added the first time it is asked for."""
        if key not in self._ids:
            self._ids[key] = f"n{len(self._ids) + 1}"
            self.nodes.append(Node(self._ids[key], kind, lines, **marks))
        return self._ids[key]

    def edge(self, source: str, target: str, kind: EdgeKind, label: str = "") -> None:
        if Edge(source, target, kind, label) not in self.edges:
            self.edges.append(Edge(source, target, kind, label))


class UnknownApplicationError(LookupError):
    """`--app` names no application of the config."""


def build(spec: Spec, *, app: str | None = None, changed: Collection[str] = ()) -> Graph:
    """The graph of every application, or of `app` (`shortName` or `shortName@version`) and what
    it uses. `changed` names what a change touches: application keys (`shortName@version`) and
    Kubernetes object names (instances, connectors); those nodes are marked."""
    chosen = [a for a in spec.applications if app in (None, a.short_name, a.key)]
    if app is not None and not chosen:
        raise UnknownApplicationError(f"no application {app!r} in the config")
    keys = {a.key for a in chosen}
    graph = Graph()
    every = [i for i in instances(spec) if keys & {a.key for a in i.applications}]
    by_service: dict[str, list[Instance]] = {}
    for instance in every:
        by_service.setdefault(instance.service.short_name, []).append(instance)
    for application in chosen:
        state = "" if application.deploy else " (deploy: false)"
        graph.node(
            ("application", application.key),
            "application",
            (f"{application.short_name} {application.version}{state}",),
            changed=application.key in changed,
        )
    for instance in every:
        _instance_node(graph, instance, changed)
    for instance in every:
        _instance_edges(graph, instance, keys, by_service)
    for application in chosen:
        for connector in application.kafka_faas_connectors if application.deploy else ():
            name = connector_name(application.short_name, application.version, connector.instance)
            function = f"function {connector.function}" if connector.function else "no function: pass-through"
            node = graph.node(
                ("connector", name),
                "connector",
                (f"kafka-faas-connector {connector.instance}", function),
                changed=name in changed,
            )
            graph.edge(graph.node(("application", application.key), "application", ()), node, "deploys")
            graph.edge(_topic(graph, connector.input_topic), node, "reads")
            if connector.output_topic:
                graph.edge(node, _topic(graph, connector.output_topic), "writes")
    return graph


def _instance_node(graph: Graph, instance: Instance, changed: Collection[str]) -> None:
    """The instance and the interfaces it provides: drawn before any edge names them."""
    service, shared = instance.service, len(instance.applications) > 1
    lines = [f"{service.short_name} {service.version}", f"{instance.name} x{instance.replicas}"]
    if shared:
        lines.append(f"shared by {len(instance.applications)} applications")
    node = graph.node(
        ("instance", instance.name), "instance", tuple(lines), shared=shared, changed=instance.name in changed
    )
    for interface in service.interfaces:
        ports = ", ".join(str(p.port) for p in interface.ports)
        target = graph.node(
            ("interface", service.short_name, service.version, interface.name),
            "interface",
            (interface.name, f"port {ports}" + (" public" if interface.public else "")),
        )
        graph.edge(node, target, "provides")


def _instance_edges(
    graph: Graph, instance: Instance, keys: set[str], by_service: dict[str, list[Instance]]
) -> None:
    node = graph.node(("instance", instance.name), "instance", ())
    for application in instance.applications:
        if application.key in keys:
            app_node = graph.node(("application", application.key), "application", ())
            graph.edge(app_node, node, "deploys", _replicas_of(instance, application))
    for connection in instance.entry.interface_connections:
        for provider in by_service.get(connection.service, []):
            key = ("interface", provider.service.short_name, provider.service.version, connection.interface)
            graph.edge(
                node, graph.node(key, "interface", (connection.interface,)), "connects", connection.env
            )
    for dependency in instance.service.dependencies:
        met = [i for i in by_service.get(dependency.short_name, []) if _satisfies(i, dependency.version)]
        targets = [graph.node(("instance", i.name), "instance", ()) for i in met] or [
            graph.node(
                ("service", dependency.short_name, dependency.version),
                "service",
                (dependency.short_name, f"{dependency.version} (not deployed here)"),
            )
        ]
        for target in targets:
            graph.edge(node, target, "depends", dependency.version)
    for topic in instance.entry.topics:
        if topic.role == "INPUT":
            graph.edge(_topic(graph, topic.name), node, "reads")
        else:
            role = "" if topic.role == "OUTPUT" else topic.role
            graph.edge(node, _topic(graph, topic.name), "writes", role)


def _satisfies(instance: Instance, wanted: str) -> bool:
    """Whether the instance's version is in the dependency's range (validated already)."""
    try:
        version = VersionSet.of([MicoVersion.parse(instance.service.version)])
        return VersionRange.parse(wanted).satisfied_by_any(version)
    except ValueError:
        return False


def _replicas_of(instance: Instance, application: Application) -> str:
    """An application's own replicas of a shared instance (the instance runs their sum)."""
    if len(instance.applications) == 1:
        return ""
    service, key = instance.service, instance_key(instance.service, instance.entry)
    own = sum(
        e.replicas
        for e in application.services
        if e.short_name == service.short_name
        and MicoVersion.parse(e.version) == MicoVersion.parse(service.version)
        and instance_key(service, e) == key
    )
    return f"x{own} of {instance.replicas}"


def _text(node: Node) -> list[str]:
    """A node's lines as drawn: its mark of change in words too, not only in colour."""
    return [*node.lines, *(["* changed"] if node.changed else [])]


def _topic(graph: Graph, name: str) -> str:
    return graph.node(("topic", name), "topic", (f"topic {name}",))


# -- Mermaid ------------------------------------------------------------------------------------

_MERMAID_SHAPES: dict[NodeKind, tuple[str, str]] = {
    "application": ('(["', '"])'),
    "instance": ('["', '"]'),
    "interface": ('{{"', '"}}'),
    "topic": ('[("', '")]'),
    "connector": ('[["', '"]]'),
    "service": ('["', '"]'),
}
_MERMAID_ARROWS: dict[EdgeKind, str] = {
    "deploys": "-->",
    "provides": "---",
    "connects": "==>",
    "depends": "-.->",
    "writes": "-->",
    "reads": "-->",
}


def _mermaid_text(text: str) -> str:
    """Anything but plain name characters as an entity code (`#35;`): quotes, brackets, pipes
    and HTML cannot end the label or reach the renderer as markup."""
    return re.sub(r"[^A-Za-z0-9 ._@/:^~+=-]", lambda m: f"#{ord(m.group())};", text)


def mermaid(graph: Graph) -> str:
    lines = ["flowchart LR"]
    for node in graph.nodes:
        opening, closing = _MERMAID_SHAPES[node.kind]
        label = "<br/>".join(_mermaid_text(line) for line in _text(node))
        lines.append(f"  {node.id}{opening}{label}{closing}")
    for edge in graph.edges:
        arrow = _MERMAID_ARROWS[edge.kind]
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"  {edge.source} {arrow}{label} {edge.target}")
    lines += [
        "  classDef shared stroke-dasharray: 6 3,stroke-width:2px",
        "  classDef changed stroke:#d97706,stroke-width:4px",
    ]
    for mark in ("shared", "changed"):
        marked = [n.id for n in graph.nodes if getattr(n, mark)]
        if marked:
            lines.append(f"  class {','.join(marked)} {mark}")
    return "\n".join(lines) + "\n"


# -- Graphviz DOT ---------------------------------------------------------------------------------

_DOT_SHAPES: dict[NodeKind, str] = {
    "application": "box, style=rounded",
    "instance": "box",
    "interface": "hexagon",
    "topic": "cylinder",
    "connector": "component",
    "service": "box, style=dotted",
}
_DOT_STYLES: dict[EdgeKind, str] = {
    "deploys": "solid",
    "provides": "solid, arrowhead=none",
    "connects": "bold",
    "depends": "dashed",
    "writes": "solid",
    "reads": "solid",
}


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def dot(graph: Graph) -> str:
    lines = ["digraph mico {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=11];']
    for node in graph.nodes:
        label = "\\n".join(_dot_text(line) for line in _text(node))
        style = _DOT_SHAPES[node.kind]
        if node.shared:
            style += ", peripheries=2"
        if node.changed:
            style += ", penwidth=3, color=darkorange"
        lines.append(f'  {node.id} [label="{label}", shape={style}];')
    for edge in graph.edges:
        label = f', label="{_dot_text(edge.label)}"' if edge.label else ""
        lines.append(f"  {edge.source} -> {edge.target} [style={_DOT_STYLES[edge.kind]}{label}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- SVG ----------------------------------------------------------------------------------------

_COLUMN: dict[NodeKind, int] = {
    "application": 0,
    "instance": 1,
    "connector": 1,
    "service": 2,
    "interface": 2,
    "topic": 2,
}
#: width of a character at 12 px (bold, regular), line height, padding, gaps between boxes
_BOLD, _CHAR, _LINE, _PAD, _GAP_X, _GAP_Y = 8.0, 7.2, 16, 8, 150, 18


def _size(node: Node) -> tuple[float, float]:
    lines = _text(node)
    widest = max([len(lines[0]) * _BOLD, *(len(line) * _CHAR for line in lines[1:])])
    return widest + 2 * _PAD, len(lines) * _LINE + 2 * _PAD


def svg(graph: Graph, *, title: str = "MICO applications") -> str:
    """A layered drawing, applications left, instances and connectors in the middle, what they
    provide, use and talk through right, each right-hand node beside the middle ones it is
    joined to (fewer crossings); no layout program needed. ElementTree escapes every label and
    attribute."""
    columns: dict[int, list[Node]] = {}
    for node in graph.nodes:
        columns.setdefault(_COLUMN[node.kind], []).append(node)
    sizes = {n.id: _size(n) for n in graph.nodes}
    boxes: dict[str, tuple[float, float, float, float]] = {}
    x = 20.0
    for column in sorted(columns):
        nodes = _by_neighbours(columns[column], graph.edges, boxes)
        width = max(sizes[n.id][0] for n in nodes)
        y = 50.0
        for node in nodes:
            boxes[node.id] = (x, y, width, sizes[node.id][1])
            y += sizes[node.id][1] + _GAP_Y
        x += width + _GAP_X
    width_total = x - _GAP_X + 20 + _ARC
    height = max((b[1] + b[3] for b in boxes.values()), default=50) + 30
    root = ET.Element(
        "svg",
        xmlns="http://www.w3.org/2000/svg",
        width=f"{width_total:.0f}",
        height=f"{height:.0f}",
        viewBox=f"0 0 {width_total:.0f} {height:.0f}",
        role="img",
        attrib={"font-family": "Helvetica, Arial, sans-serif", "font-size": "12"},
    )
    ET.SubElement(root, "title").text = title
    defs = ET.SubElement(root, "defs")
    marker = ET.SubElement(
        defs,
        "marker",
        id="arrow",
        markerWidth="10",
        markerHeight="8",
        refX="9",
        refY="4",
        orient="auto",
        markerUnits="userSpaceOnUse",  # the same head on a thick edge as on a thin one
    )
    ET.SubElement(marker, "path", d="M0,0 L10,4 L0,8 z", fill="#444")
    ET.SubElement(
        root, "text", x="20", y="28", attrib={"font-size": "15", "font-weight": "bold"}
    ).text = title
    for edge in graph.edges:
        _svg_edge(root, edge, boxes[edge.source], boxes[edge.target])
    for node in graph.nodes:
        _svg_node(root, node, boxes[node.id])
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _by_neighbours(
    nodes: list[Node], edges: list[Edge], placed: dict[str, tuple[float, float, float, float]]
) -> list[Node]:
    """`nodes` ordered by the mean height of the nodes already placed that they are joined to
    (those joined to none keep their place at the end): one barycentre pass."""

    def height(node: Node) -> float:
        joined = [
            placed[other][1] + placed[other][3] / 2
            for edge in edges
            for mine, other in ((edge.source, edge.target), (edge.target, edge.source))
            if mine == node.id and other in placed
        ]
        return sum(joined) / len(joined) if joined else float("inf")

    return sorted(nodes, key=height)


_FILL: dict[NodeKind, str] = {
    "application": "#dbeafe",
    "instance": "#f1f5f9",
    "interface": "#ecfdf5",
    "topic": "#fef9c3",
    "connector": "#ede9fe",
    "service": "#ffffff",
}


def _svg_node(root: ET.Element, node: Node, box: tuple[float, float, float, float]) -> None:
    x, y, width, height = box
    group = ET.SubElement(root, "g", attrib={"class": f"node {node.kind}", "id": node.id})
    ET.SubElement(group, "title").text = " ".join(node.lines) + (" (changed)" if node.changed else "")
    ET.SubElement(
        group,
        "rect",
        x=f"{x:.1f}",
        y=f"{y:.1f}",
        width=f"{width:.1f}",
        height=f"{height:.1f}",
        rx="12" if node.kind in ("application", "topic") else "3",
        fill=_FILL[node.kind],
        stroke="#d97706" if node.changed else "#334155",
        attrib={
            "stroke-width": "3" if node.changed else "1.2",
            **({"stroke-dasharray": "6 3"} if node.shared or node.kind == "service" else {}),
        },
    )
    for index, line in enumerate(_text(node)):
        ET.SubElement(
            group,
            "text",
            x=f"{x + _PAD:.1f}",
            y=f"{y + _PAD + (index + 0.8) * _LINE:.1f}",
            attrib={"font-weight": "bold"} if index == 0 else {},
        ).text = line


#: how far an edge between two nodes of one column bows out to the right of it
_ARC = 60


def _svg_edge(
    root: ET.Element,
    edge: Edge,
    source: tuple[float, float, float, float],
    target: tuple[float, float, float, float],
) -> None:
    """Forward edges leave a box on its right and enter the next on its left; backward ones (a
    topic read) leave on the left and enter on the right; within a column they bow out to the
    right, their label beside the bow, away from the labels between columns."""
    if target[0] > source[0]:
        start = (source[0] + source[2], source[1] + source[3] / 2)
        end = (target[0], target[1] + target[3] / 2)
        bend = (end[0] - start[0]) / 2
        controls = ((start[0] + bend, start[1]), (end[0] - bend, end[1]))
        label, anchor = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 - 6), "middle"
    elif target[0] < source[0]:
        start = (source[0], source[1] + source[3] / 2)
        end = (target[0] + target[2], target[1] + target[3] / 2)
        bend = (start[0] - end[0]) / 2
        controls = ((start[0] - bend, start[1]), (end[0] + bend, end[1]))
        label, anchor = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 - 6), "middle"
    else:
        start = (source[0] + source[2], source[1] + source[3] / 2)
        end = (target[0] + target[2], target[1] + target[3] / 2)
        controls = ((start[0] + _ARC, start[1]), (end[0] + _ARC, end[1]))
        label, anchor = (start[0] + 0.75 * _ARC + 4, (start[1] + end[1]) / 2 + 4), "start"
    points = " ".join(f"{px:.1f},{py:.1f}" for px, py in (*controls, end))
    path = f"M{start[0]:.1f},{start[1]:.1f} C{points}"
    attributes = {"class": f"edge {edge.kind}", "marker-end": "url(#arrow)", "stroke-width": "1.2"}
    if edge.kind == "depends":
        attributes["stroke-dasharray"] = "4 3"
    if edge.kind == "connects":
        attributes["stroke-width"] = "2.4"
    if edge.kind == "provides":
        del attributes["marker-end"]
    ET.SubElement(root, "path", d=path, fill="none", stroke="#444", attrib=attributes)
    if edge.label:
        ET.SubElement(
            root,
            "text",
            x=f"{label[0]:.1f}",
            y=f"{label[1]:.1f}",
            attrib={
                "text-anchor": anchor,
                "font-size": "10",
                "fill": "#1e293b",
            },
        ).text = edge.label
