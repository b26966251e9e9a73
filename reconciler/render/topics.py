"""KafkaTopic resources for clusters run by Strimzi (kafka.strimzi.io/v1beta2). Pure.

Instead of calling the Admin API, the reconciler then declares each topic as a KafkaTopic the
Strimzi topic operator creates. Kubernetes names are DNS subdomains and topic names are not
(`InvalidMessage`), so the resource is named after a normalised form plus a short hash and the
topic name goes to `spec.topicName`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from reconciler.render.labels import APPLICATIONS_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL

STRIMZI_API = "kafka.strimzi.io/v1beta2"


def resource_name(topic: str) -> str:
    """A DNS subdomain: every '.'-separated part starts and ends with a letter or digit."""
    base = re.sub(r"[^a-z0-9.-]+", "-", topic.lower())
    base = re.sub(r"[.-]*\.[.-]*", ".", base)[:52].strip("-.") or "topic"
    return f"{base}-{hashlib.sha256(topic.encode()).hexdigest()[:8]}"


def kafka_topics(
    users: Mapping[str, list[str]], *, namespace: str, cluster: str, partitions: int, replicas: int
) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": STRIMZI_API,
            "kind": "KafkaTopic",
            "metadata": {
                "name": resource_name(topic),
                "namespace": namespace,
                "labels": {
                    "strimzi.io/cluster": cluster,
                    MANAGED_BY_LABEL: MANAGED_BY,
                    "app.kubernetes.io/component": "kafka-topic",
                },
                # every usage reads `application@version: ...` (see plan.topics.needed)
                "annotations": {APPLICATIONS_ANNOTATION: ",".join(sorted({u.split(":")[0] for u in who}))},
            },
            "spec": {"topicName": topic, "partitions": partitions, "replicas": replicas},
        }
        for topic, who in sorted(users.items())
    ]
