"""Pictures of applications (`mico-reconciler graph`, the Mermaid graphs of `diff`): what they
show, and that no name can break out of a label in any of the three formats."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from reconciler.review import graph
from reconciler.spec.problems import Problem, github_annotation
from tests.helpers import example_data, load_data, sharing_entry

SVG = "{http://www.w3.org/2000/svg}"


def example_graph(**options: object) -> graph.Graph:
    return graph.build(load_data(example_data()), **options)  # type: ignore[arg-type]


def node(drawn: graph.Graph, first_line: str) -> graph.Node:
    return next(n for n in drawn.nodes if n.lines and n.lines[0] == first_line)


def edges(drawn: graph.Graph, kind: str) -> set[tuple[str, str, str]]:
    """(source's first line, target's first line, label) of each edge of a kind."""
    first = {n.id: n.lines[0] for n in drawn.nodes}
    return {(first[e.source], first[e.target], e.label) for e in drawn.edges if e.kind == kind}


def test_the_example_shows_instances_interfaces_connections_dependencies_topics_and_connectors() -> None:
    drawn = example_graph()
    assert {n.kind for n in drawn.nodes} == {"application", "instance", "interface", "topic", "connector"}
    frontend, backend = "react-redux-realworld-example-app v1.0.0", "spring-boot-realworld-example-app v1.0.0"
    assert ("realworld v1.0.0", backend, "") in edges(drawn, "deploys")
    assert edges(drawn, "connects") == {(frontend, "backend", "BACKEND_REST_API")}
    assert edges(drawn, "depends") == {(frontend, backend, "^1.0.0")}
    assert edges(drawn, "writes") == {
        ("test-message-generator v1.0.0", "topic transform-request", ""),
        ("kafka-faas-connector transformer", "topic transform-result", ""),
    }
    assert edges(drawn, "reads") == {
        ("topic transform-request", "kafka-faas-connector transformer", ""),
        ("topic transform-result", "msg-validator v1.0.0", ""),
    }
    assert node(drawn, backend).lines[1].endswith(" x2")
    assert node(drawn, "backend").lines == ("backend", "port 80 public")


def shared_config() -> dict:
    data = example_data()
    data["applications"].append(
        {
            "shortName": "admin",
            "version": "v2.0.0",
            "name": "Admin",
            "services": [
                sharing_entry(data, "spring-boot-realworld-example-app", replicas=3),
            ],
        }
    )
    return data


def test_a_shared_instance_is_marked_with_its_summed_replicas_and_each_share() -> None:
    drawn = graph.build(load_data(shared_config()))
    backend = node(drawn, "spring-boot-realworld-example-app v1.0.0")
    assert backend.shared
    assert backend.lines[1].endswith(" x5")
    assert backend.lines[2] == "shared by 2 applications"
    deploys = {(a, label) for a, b, label in edges(drawn, "deploys") if b == backend.lines[0]}
    assert deploys == {("realworld v1.0.0", "x2 of 5"), ("admin v2.0.0", "x3 of 5")}
    assert "class " + backend.id + " shared" in graph.mermaid(drawn)


def test_one_application_and_what_it_uses() -> None:
    drawn = graph.build(load_data(shared_config()), app="admin")
    assert [n.lines[0] for n in drawn.nodes if n.kind in ("application", "instance")] == [
        "admin v2.0.0",
        "spring-boot-realworld-example-app v1.0.0",
    ]
    assert node(drawn, "spring-boot-realworld-example-app v1.0.0").shared  # with an application not drawn
    with pytest.raises(graph.UnknownApplicationError):
        graph.build(load_data(shared_config()), app="admin@v9.0.0")


def test_a_dependency_no_instance_meets_is_drawn_as_a_service_not_deployed() -> None:
    data = example_data()
    data["applications"][0]["services"].pop(1)  # realworld without its backend
    data["applications"][0]["services"][0]["interfaceConnections"] = []
    drawn = graph.build(load_data(data), app="realworld")
    missing = node(drawn, "spring-boot-realworld-example-app")
    assert missing.kind == "service"
    assert missing.lines[1] == "^1.0.0 (not deployed here)"


def test_changed_parts_are_marked_in_words_as_well_as_style() -> None:
    drawn = example_graph(changed={"realworld@v1.0.0"})
    marked = [n for n in drawn.nodes if n.changed]
    assert [n.lines[0] for n in marked] == ["realworld v1.0.0"]
    assert f"class {marked[0].id} changed" in graph.mermaid(drawn)
    assert "* changed" in graph.dot(drawn)
    root = ET.fromstring(graph.svg(drawn))
    group = next(g for g in root.iter(f"{SVG}g") if g.get("id") == marked[0].id)
    assert [t.text for t in group.iter(f"{SVG}text")] == ["realworld v1.0.0", "* changed"]


HOSTILE = 'x"]; click n1 href "javascript:alert(1)" %% </text><script>alert(1)</script>|\\\n{{'


def hostile_graph() -> graph.Graph:
    drawn = graph.Graph()
    a = drawn.node(("application", "a"), "application", (HOSTILE,))
    b = drawn.node(("topic", "b"), "topic", (HOSTILE, "second"))
    drawn.edge(a, b, "writes", HOSTILE)
    return drawn


def test_mermaid_labels_keep_names_text() -> None:
    drawn = graph.mermaid(hostile_graph())
    labels = re.findall(r'"([^"]*)"', drawn)
    assert len(labels) == 3  # two nodes and the edge: no quote inside a label ended it early
    for label in labels:
        plain = re.sub(r"#[0-9]+;", "", label.replace("<br/>", ""))  # entity codes and line breaks
        assert not set(plain) & set('"[]{}()<>|;%#\\\n`'), label
    assert "#60;script#62;" in drawn


def test_dot_labels_are_quoted_strings() -> None:
    drawn = graph.dot(hostile_graph())
    for line in drawn.splitlines()[3:-1]:  # two nodes and an edge, each with one label
        assert re.sub(r'\\[\\"]', "", line).count('"') == 2, line
    assert "\n  n1 [" in drawn
    assert "\n  n1 -> n2 [" in drawn


def test_svg_parses_and_holds_names_as_text() -> None:
    root = ET.fromstring(graph.svg(hostile_graph(), title=HOSTILE))
    assert root.tag == f"{SVG}svg"
    assert not list(root.iter(f"{SVG}script"))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts.count(HOSTILE) == 4  # the title, two node labels and the edge's
    assert len([g for g in root.iter(f"{SVG}g") if "node" in (g.get("class") or "")]) == 2


def test_svg_of_the_example_places_every_node_inside_the_picture() -> None:
    drawn = example_graph()
    root = ET.fromstring(graph.svg(drawn))
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    rects = list(root.iter(f"{SVG}rect"))
    assert len(rects) == len(drawn.nodes)
    for rect in rects:
        x, y = float(rect.get("x", -1)), float(rect.get("y", -1))
        assert x >= 0
        assert x + float(rect.get("width", 0)) <= width
        assert y >= 0
        assert y + float(rect.get("height", 0)) <= height
    assert len(root.findall(f"{SVG}path")) == len(drawn.edges)


def test_svg_boxes_do_not_overlap_and_labels_stay_in_the_picture() -> None:
    drawn = example_graph()
    root = ET.fromstring(graph.svg(drawn))
    width = float(root.get("width", 0))
    boxes = [
        tuple(float(r.get(k, 0)) for k in ("x", "y", "width", "height")) for r in root.iter(f"{SVG}rect")
    ]
    for index, (x, y, w, h) in enumerate(boxes):
        for ox, oy, ow, oh in boxes[index + 1 :]:
            assert x + w <= ox or ox + ow <= x or y + h <= oy or oy + oh <= y, "two boxes overlap"
    labels = [t for t in root.findall(f"{SVG}text") if t.get("font-size") == "10"]
    assert sorted(t.text or "" for t in labels) == ["BACKEND_REST_API", "^1.0.0"]
    for label in labels:
        assert 0 < float(label.get("x", -1)) < width


def test_github_annotations_escape_what_would_end_the_command() -> None:
    problem = Problem("dir,a:b/mico.yaml", 3, 5, "env.A", "100% wrong, see: here")
    assert github_annotation(problem) == (
        "::error file=dir%2Ca%3Ab/mico.yaml,line=3,col=5,title=env.A::100%25 wrong, see: here"
    )
