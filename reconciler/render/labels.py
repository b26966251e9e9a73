"""Labels and annotations every rendered object carries.

`app.kubernetes.io/*` (recommended labels) sit beside MICO's `ust.mico/*`; the managed-by
label is what the reconciler later selects its own objects by.
"""

from __future__ import annotations

from typing import Any

from reconciler.spec.names import label_safe

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "mico-reconciler"
APPLICATIONS_ANNOTATION = "ust.mico/applications"


def mico_labels(short_name: str, version: str | None, instance: str) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": short_name,
        "app.kubernetes.io/instance": instance,
        MANAGED_BY_LABEL: MANAGED_BY,
        "ust.mico/name": short_name,
        "ust.mico/instance": instance,
    }
    if version is not None:
        labels["app.kubernetes.io/version"] = label_safe(version)
        labels["ust.mico/version"] = label_safe(version)
    return labels


def selector(instance: str) -> dict[str, str]:
    return {"ust.mico/instance": instance}


def applications_of(obj: dict[str, Any]) -> set[str]:
    """The `shortName@version` of every application an object serves (its annotation)."""
    text = obj["metadata"].get("annotations", {}).get(APPLICATIONS_ANNOTATION, "")
    return set(filter(None, text.split(",")))
