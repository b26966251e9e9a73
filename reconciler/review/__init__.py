"""The review stage: what a change to the config does, for a pull request. Pure.

Compares two validated specs and their rendered objects: which applications and services
were added, removed or changed, and a unified diff of every rendered object that changed.
Labels (revision names as the user typed them) are made one-line and credential-free here,
so no output format can be broken by a name with a newline in it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from reconciler.redact import redact
from reconciler.render import Manifest
from reconciler.render.labels import applications_of
from reconciler.render.manifest import to_yaml
from reconciler.spec import Spec
from reconciler.spec.model import Application, Service
from reconciler.spec.problems import one_line

Change = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class ElementChange:
    kind: Literal["application", "service"]
    short_name: str
    version: str
    change: Change


@dataclass(frozen=True)
class ObjectChange:
    kind: str
    namespace: str
    name: str
    change: Change
    diff: str


@dataclass(frozen=True)
class Review:
    base: str
    head: str
    elements: tuple[ElementChange, ...]
    objects: tuple[ObjectChange, ...]

    @property
    def has_changes(self) -> bool:
        return bool(self.elements or self.objects)


def compare(
    base: Spec,
    head: Spec,
    base_objects: Sequence[Manifest],
    head_objects: Sequence[Manifest],
    *,
    base_label: str,
    head_label: str,
) -> Review:
    base_label, head_label = one_line(redact(base_label)), one_line(redact(head_label))
    elements = _element_changes("application", base.applications, head.applications)
    elements += _element_changes("service", base.services, head.services)
    return Review(
        base=base_label,
        head=head_label,
        elements=tuple(elements),
        objects=tuple(_object_changes(base_objects, head_objects, base_label, head_label)),
    )


def _element_changes(
    kind: Literal["application", "service"],
    before: Sequence[Application | Service],
    after: Sequence[Application | Service],
) -> list[ElementChange]:
    old = {(e.short_name, e.version): e for e in before}
    new = {(e.short_name, e.version): e for e in after}
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if key not in new:
            changes.append(ElementChange(kind, *key, "removed"))
        elif key not in old:
            changes.append(ElementChange(kind, *key, "added"))
        elif old[key] != new[key]:
            changes.append(ElementChange(kind, *key, "changed"))
    return changes


def _identity(obj: Manifest) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def _object_changes(
    before: Sequence[Manifest], after: Sequence[Manifest], base_label: str, head_label: str
) -> list[ObjectChange]:
    old = {_identity(o): to_yaml(o) for o in before}
    new = {_identity(o): to_yaml(o) for o in after}
    changes = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, ""), new.get(key, "")
        if a == b:
            continue
        change: Change = "added" if not a else "removed" if not b else "changed"
        label = "/".join(part for part in key if part)
        diff = "".join(
            difflib.unified_diff(
                a.splitlines(keepends=True),
                b.splitlines(keepends=True),
                fromfile=f"{base_label}/{label}",
                tofile=f"{head_label}/{label}",
            )
        )
        changes.append(ObjectChange(*key, change, diff))
    return changes


def touched(review: Review, head: Spec, head_objects: Sequence[Manifest]) -> tuple[list[str], set[str]]:
    """The applications of `head` a change touches (changed or added, or serving an object that
    differs), and the names to mark in their graphs: those applications and the objects that
    differ (instances and connectors are named as their Deployments)."""
    differs = {(o.kind, o.name) for o in review.objects}
    keys = {f"{e.short_name}@{e.version}" for e in review.elements if e.kind == "application"}
    for obj in head_objects:
        if (obj["kind"], obj["metadata"]["name"]) in differs:
            keys |= applications_of(obj)
    present = [a.key for a in head.applications if a.key in keys]
    return present, keys | {name for _, name in differs}
