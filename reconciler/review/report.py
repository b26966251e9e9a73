"""A Review as text for a terminal, Markdown for a pull-request comment, or JSON for tools."""

from __future__ import annotations

import json
from dataclasses import asdict

from reconciler.review import Review

_SIGN = {"added": "+", "removed": "-", "changed": "~"}


def _summary(review: Review) -> str:
    counts = {c: sum(1 for o in review.objects if o.change == c) for c in _SIGN}
    total = len(review.objects)
    return (
        f"{total} Kubernetes {'object differs' if total == 1 else 'objects differ'} "
        f"({counts['added']} added, {counts['changed']} changed, {counts['removed']} removed)"
    )


def text(review: Review) -> str:
    lines = [f"Comparing {review.base}..{review.head}"]
    if not review.has_changes:
        return lines[0] + "\nNo changes.\n"
    for element in review.elements:
        lines.append(
            f"{_SIGN[element.change]} {element.kind} {element.short_name} "
            f"{element.version} ({element.change})"
        )
    lines.append(_summary(review))
    lines.extend(o.diff.rstrip("\n") for o in review.objects)
    return "\n".join(lines) + "\n"


def markdown(review: Review) -> str:
    title = f"### mico-reconciler diff `{review.base}`..`{review.head}`"
    if not review.has_changes:
        return f"{title}\n\nNo changes to applications, services or Kubernetes objects.\n"
    parts = [title, ""]
    if review.elements:
        parts += ["| | kind | name | version | change |", "|---|---|---|---|---|"]
        parts += [
            f"| {_SIGN[e.change]} | {e.kind} | `{e.short_name}` | `{e.version}` | {e.change} |"
            for e in review.elements
        ]
        parts.append("")
    parts += [f"**{_summary(review)}**", ""]
    for obj in review.objects:
        where = f"{obj.namespace}/{obj.name}" if obj.namespace else obj.name
        parts += [
            f"<details><summary>{_SIGN[obj.change]} {obj.kind} <code>{where}</code> ({obj.change})</summary>",
            "",
            "```diff",
            obj.diff.rstrip("\n").replace("```", "`\u200b``"),
            "```",
            "</details>",
            "",
        ]
    return "\n".join(parts)


def as_json(review: Review) -> str:
    return json.dumps({**asdict(review), "hasChanges": review.has_changes}, indent=2, sort_keys=True) + "\n"
