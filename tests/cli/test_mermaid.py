"""The Mermaid graphs (`graph`, and those `diff --output markdown` puts in a comment) parsed by
Mermaid's own parser, the one GitHub and GitLab draw them with: a label that ends early or a
character Mermaid reads as syntax makes the comment show an error box instead of the picture.

hack/mermaid/ pins mermaid (and jsdom, which it needs outside a browser)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.review import graph
from tests.helpers import ROOT, example_data, load_data, node_tool
from tests.unit.test_graph import hostile_graph, shared_config

CHECKER = ROOT / "hack" / "mermaid"


@pytest.fixture(scope="module")
def mermaid_parser() -> Path:
    home = node_tool("mermaid")
    shutil.copy(CHECKER / "check.mjs", home / "check.mjs")
    return home


def parse(home: Path, texts: dict[str, str], tmp_path: Path) -> dict[str, dict]:
    files = []
    for name, text in texts.items():
        (tmp_path / f"{name}.mmd").write_text(text)
        files.append(str(tmp_path / f"{name}.mmd"))
    ran = subprocess.run(
        ["node", str(home / "check.mjs"), *files], capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    return {Path(v["file"]).stem: v for v in map(json.loads, ran.stdout.splitlines())}


def test_mermaid_reads_every_graph_we_write_and_refuses_a_broken_one(
    mermaid_parser: Path, tmp_path: Path
) -> None:
    texts = {
        "example": graph.mermaid(graph.build(load_data(example_data()), changed={"realworld@v1.0.0"})),
        "shared": graph.mermaid(graph.build(load_data(shared_config()))),
        "hostile": graph.mermaid(hostile_graph()),
        "broken": 'flowchart LR\n  n1["a"b"] --> n2\n',
    }
    verdicts = parse(mermaid_parser, texts, tmp_path)
    assert {name: v["ok"] for name, v in verdicts.items()} == {
        "example": True,
        "shared": True,
        "hostile": True,
        "broken": False,  # the parser does refuse what would show as an error box
    }
    assert {v.get("type") for name, v in verdicts.items() if name != "broken"} == {"flowchart-v2"}
