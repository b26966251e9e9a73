"""What a config would do to the live cluster (`diff --live`), as a reviewer reads it: objects
created, changed (field by field, as the apiserver would store them), pruned, and drift found;
builds the change would start and topics new to the config. Pure: the live objects and the
dry-run results come in (`reconciler.cluster.preview` fetches them).
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from reconciler.redact import redact
from reconciler.review.report import code_span, fenced
from reconciler.spec.problems import one_line

LiveChangeKind = Literal["create", "update", "prune", "prune refused", "drift"]
_SIGN = {"create": "+", "update": "~", "prune": "-", "prune refused": "!", "drift": "*"}
#: What the apiserver and controllers set on every object: no reviewer's business.
_NOISE_META = {"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink"}
_NOISE_ANNOTATIONS = {"deployment.kubernetes.io/revision"}
MAX_VALUE = 80


@dataclass(frozen=True)
class LiveChange:
    kind: str
    namespace: str
    name: str
    change: LiveChangeKind
    reason: str
    #: `path: before -> after` for each field the apiserver would store differently.
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveReview:
    head: str
    namespace: str
    changes: tuple[LiveChange, ...]
    #: Desired objects whose name an object this reconciler does not own holds.
    foreign: tuple[str, ...] = ()
    #: `shortName version` of each build the change would start.
    builds: tuple[str, ...] = ()
    #: Topics the config uses that no live object uses yet (created if missing).
    topics: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.changes or self.builds or self.topics or self.foreign)


def _flat(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(_flat(item, f"{path}[{index}]"))
        return out
    return {path: value}


def _stored(obj: dict[str, Any] | None) -> dict[str, Any]:
    """What of an object a reviewer compares: no status, no bookkeeping of the apiserver."""
    if obj is None:
        return {}
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in _NOISE_META}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _NOISE_ANNOTATIONS}
    meta = (
        {**meta, "annotations": annotations}
        if annotations
        else {k: v for k, v in meta.items() if k != "annotations"}
    )
    return {**{k: v for k, v in obj.items() if k not in ("status", "metadata")}, "metadata": meta}


def _shown(value: Any) -> str:
    text = one_line(redact(json.dumps(value, sort_keys=True)))
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def field_changes(live: dict[str, Any] | None, stored: dict[str, Any]) -> tuple[str, ...]:
    """Each field that differs between the live object (None: none yet) and what the apiserver
    answered a dry-run apply with, `path: before -> after` (`absent` for a missing field)."""
    before, after = _flat(_stored(live)), _flat(_stored(stored))
    lines = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path, _ABSENT), after.get(path, _ABSENT)
        if old != new:
            lines.append(f"{path}: {_shown_or_absent(old)} -> {_shown_or_absent(new)}")
    return tuple(lines)


_ABSENT = object()


def _shown_or_absent(value: Any) -> str:
    return "absent" if value is _ABSENT else _shown(value)


def text(review: LiveReview) -> str:
    lines = [f"Comparing {one_line(review.head)} with the cluster (namespace {one_line(review.namespace)})"]
    if not review.has_changes:
        return lines[0] + "\nNo changes: the cluster matches the config.\n"
    for change in review.changes:
        lines.append(
            f"{_SIGN[change.change]} {change.change} {one_line(f'{change.kind}/{change.name}')}: "
            f"{one_line(change.reason)}"
        )
        lines += [f"    {field}" for field in change.fields]
    lines += [
        f"! name taken by an object this reconciler does not own: {one_line(ref)}" for ref in review.foreign
    ]
    lines += [f"+ build {one_line(build)} would start" for build in review.builds]
    lines += [
        f"+ topic {one_line(topic)} is new to the config (created if missing)" for topic in review.topics
    ]
    lines.append(_summary(review))
    return "\n".join(lines) + "\n"


def _summary(review: LiveReview) -> str:
    counts = {kind: sum(1 for c in review.changes if c.change == kind) for kind in _SIGN}
    refused = f" ({counts['prune refused']} refused by the prune guard)" if counts["prune refused"] else ""
    return (
        f"{counts['create']} to create, {counts['update']} to change, {counts['prune']} to prune{refused}, "
        f"{counts['drift']} drifted; {len(review.builds)} builds, {len(review.topics)} new topics"
    )


def markdown(review: LiveReview) -> str:
    where = f"{code_span(review.head)} against namespace {code_span(review.namespace)}"
    title = f"### mico-reconciler diff --live {where}"
    if not review.has_changes:
        return f"{title}\n\nNo changes: the cluster matches the config.\n"
    parts = [title, "", f"**{_summary(review)}**", ""]
    for change in review.changes:
        summary = (
            f"{_SIGN[change.change]} {html.escape(change.change)} {html.escape(one_line(change.kind))} "
            f"<code>{html.escape(one_line(change.name))}</code>: {html.escape(one_line(change.reason))}"
        )
        if change.fields:
            parts += [
                f"<details><summary>{summary}</summary>",
                "",
                *fenced("\n".join(change.fields), "text"),
                "</details>",
                "",
            ]
        else:
            parts += [f"- {summary}", ""]
    parts += [
        f"- name taken by an object this reconciler does not own: {code_span(ref)}" for ref in review.foreign
    ]
    parts += [f"- build {code_span(build)} would start" for build in review.builds]
    parts += [
        f"- topic {code_span(topic)} is new to the config (created if missing)" for topic in review.topics
    ]
    return "\n".join(parts).rstrip("\n") + "\n"


def as_json(review: LiveReview) -> str:
    return json.dumps({**asdict(review), "hasChanges": review.has_changes}, indent=2, sort_keys=True) + "\n"
