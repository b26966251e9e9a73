"""A Review as text for a terminal, Markdown for a pull-request comment, or JSON for tools.

Every name in the Markdown is either in a code span whose backtick fence is longer than any
run of backticks in it, or HTML-escaped inside the <details> HTML block, and never holds a raw
newline: a branch called `x</code><img onerror=...>` or `a|b` stays text in the comment.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import asdict

from reconciler.review import Review
from reconciler.spec.problems import one_line

_SIGN = {"added": "+", "removed": "-", "changed": "~"}


def _summary(review: Review) -> str:
    counts = {c: sum(1 for o in review.objects if o.change == c) for c in _SIGN}
    total = len(review.objects)
    return (
        f"{total} Kubernetes {'object differs' if total == 1 else 'objects differ'} "
        f"({counts['added']} added, {counts['changed']} changed, {counts['removed']} removed)"
    )


def code_span(text: str, *, in_table: bool = False) -> str:
    """An inline code span that shows `text` verbatim, whatever backticks or pipes it holds."""
    text = one_line(text)
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    span = f"{fence}{padded}{fence}"
    return span.replace("|", "\\|") if in_table else span  # GFM splits cells even in code spans


def fenced(body: str, info: str) -> list[str]:
    """A fenced code block: its fence is longer than any backtick run in the body."""
    fence = "`" * max(3, max(map(len, re.findall("`+", body)), default=0) + 1)
    return [fence + info, body, fence]


def text(review: Review) -> str:
    lines = [f"Comparing {one_line(review.base)}..{one_line(review.head)}"]
    if not review.has_changes:
        return lines[0] + "\nNo changes.\n"
    for element in review.elements:
        lines.append(
            f"{_SIGN[element.change]} {element.kind} {one_line(element.short_name)} "
            f"{one_line(element.version)} ({element.change})"
        )
    lines.append(_summary(review))
    lines.extend(o.diff.rstrip("\n") for o in review.objects)
    return "\n".join(lines) + "\n"


def markdown(review: Review, graphs: Mapping[str, str] | None = None) -> str:
    """`graphs`: a Mermaid graph (`graph.mermaid`) per application the change touches, shown
    after the table of changed elements (GitHub and GitLab draw them in comments)."""
    title = f"### mico-reconciler diff {code_span(review.base)}..{code_span(review.head)}"
    if not review.has_changes:
        return f"{title}\n\nNo changes to applications, services or Kubernetes objects.\n"
    parts = [title, ""]
    if review.elements:
        parts += ["| | kind | name | version | change |", "|---|---|---|---|---|"]
        parts += [
            f"| {_SIGN[e.change]} | {e.kind} | {code_span(e.short_name, in_table=True)} | "
            f"{code_span(e.version, in_table=True)} | {e.change} |"
            for e in review.elements
        ]
        parts.append("")
    for application, drawn in (graphs or {}).items():
        parts += [
            f"Application {code_span(application)} after the change (changed parts marked):",
            "",
            *fenced(drawn.rstrip("\n"), "mermaid"),
            "",
        ]
    parts += [f"**{_summary(review)}**", ""]
    for obj in review.objects:
        where = html.escape(one_line(f"{obj.namespace}/{obj.name}" if obj.namespace else obj.name))
        summary = f"{_SIGN[obj.change]} {html.escape(one_line(obj.kind))} <code>{where}</code> ({obj.change})"
        parts += [
            f"<details><summary>{summary}</summary>",
            "",
            *fenced(obj.diff.rstrip("\n"), "diff"),
            "</details>",
            "",
        ]
    return "\n".join(parts)


def as_json(review: Review) -> str:
    return json.dumps({**asdict(review), "hasChanges": review.has_changes}, indent=2, sort_keys=True) + "\n"
