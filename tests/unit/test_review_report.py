"""The pull-request comment cannot be broken out of: hostile names stay text.

The Markdown is rendered with a CommonMark parser (tables on, raw HTML allowed, as GitHub
does before its sanitizer), so a break-out shows as a tag or a table cell that should not be.
"""

from __future__ import annotations

import html
import json
import re

from markdown_it import MarkdownIt

from reconciler.review import ElementChange, ObjectChange, Review, compare, report
from reconciler.spec import Spec

BASE = "feat`x</code><img src=x onerror=alert(1)>@abc1234"
HEAD = "evil\n# injected\n<script>alert(1)</script>|x``y@def5678"
NAME = "n</code><img src=x>|a\nb"
DIFF = "--- a\n+++ b\n@@ -1 +1 @@\n-x: ```\n+x: ````\n</details><img src=y>\n"


def hostile() -> Review:
    return Review(
        base=BASE,
        head=HEAD,
        elements=(
            ElementChange("service", "a|b`c", "1.0.0-``x", "changed"),
            ElementChange("application", "<b>bold</b>", "`", "added"),
        ),
        objects=(ObjectChange("Deployment", "ns", NAME, "changed", DIFF),),
    )


def rendered() -> str:
    return MarkdownIt("commonmark").enable("table").render(report.markdown(hostile()))


def codes(page: str) -> list[str]:
    return [html.unescape(c) for c in re.findall(r"<code[^>]*>(.*?)</code>", page, flags=re.DOTALL)]


def test_markdown_injects_no_html() -> None:
    page = rendered()
    assert not re.search(r"<(img|script|b)\b", page), page
    assert page.count("<details>") == page.count("</details>") == 1
    assert page.count("<h3>") == 1
    assert "<h1>" not in page


def test_every_name_is_shown_verbatim_on_one_line() -> None:
    assert codes(rendered()) == [
        "feat`x</code><img src=x onerror=alert(1)>@abc1234",
        "evil\\n# injected\\n<script>alert(1)</script>|x``y@def5678",
        "a|b`c",
        "1.0.0-``x",
        "<b>bold</b>",
        "`",
        "ns/n</code><img src=x>|a\\nb",
        DIFF,
    ]


def test_table_rows_keep_their_five_cells() -> None:
    rows = re.findall(r"<tr>(.*?)</tr>", rendered(), flags=re.DOTALL)
    assert len(rows) == 3
    assert all(len(re.findall(r"<t[hd]\b", row)) == 5 for row in rows)


def test_text_is_one_line_per_item() -> None:
    lines = report.text(hostile()).splitlines()
    assert lines[0] == f"Comparing {BASE}..{HEAD.replace(chr(10), chr(92) + 'n')}"
    assert lines[1:3] == ["~ service a|b`c 1.0.0-``x (changed)", "+ application <b>bold</b> ` (added)"]


def test_json_round_trips() -> None:
    data = json.loads(report.as_json(hostile()))
    assert (data["base"], data["head"], data["objects"][0]["name"]) == (BASE, HEAD, NAME)


def test_compare_makes_labels_one_line_and_credential_free() -> None:
    empty = Spec(services=(), applications=())
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns"}}
    review = compare(
        empty,
        empty,
        [obj],
        [{**obj, "spec": {"type": "ClusterIP"}}],
        base_label="https://user:hunter2@example.com/x\n+++ fake",
        head_label="HEAD",
    )
    assert review.base == "https://***@example.com/x\\n+++ fake"
    headers = [line for line in review.objects[0].diff.splitlines() if line.startswith(("---", "+++"))]
    assert headers == ["--- https://***@example.com/x\\n+++ fake/Service/ns/s", "+++ HEAD/Service/ns/s"]
