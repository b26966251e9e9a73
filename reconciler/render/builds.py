"""Kaniko build Jobs for services built from source.

The Job is named as MICO named its build runs (`build-<shortName>-<version>`) and pushes
`<registry>/<shortName>:<version>`. Kaniko writes the pushed digest to the termination
message, where the reconciler reads it to pin the Deployment's image.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from reconciler.render.labels import mico_labels
from reconciler.render.settings import Settings
from reconciler.render.workloads import pushed_image
from reconciler.spec.model import GitSource, Service
from reconciler.spec.names import build_job_name

SOURCE_ANNOTATION = "ust.mico/source"
#: The applications (`shortName@version`) whose rollout waits for this build.
GATES_ANNOTATION = "ust.mico/gates"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def kaniko_context(source: GitSource, version: str) -> str:
    """Kaniko's git context: `git://<host>/<path>#<ref>`; a full commit id goes after a second '#'."""
    revision = source.revision or version
    location = re.sub(r"^(https|git|ssh)://([^@/]+@)?", "", source.git)
    location = re.sub(r"^[^@/]+@([^:/]+):", r"\1/", location)
    if _COMMIT.match(revision):
        return f"git://{location}##{revision}"
    ref = revision if revision.startswith("refs/") else f"refs/tags/{revision}"
    return f"git://{location}#{ref}"


def source_fingerprint(source: GitSource, version: str) -> str:
    """What identifies one build's input; a changed fingerprint for the same version rebuilds."""
    return f"{source.git}#{source.revision or version}:{source.context}/{source.dockerfile}"


def build_job(service: Service, settings: Settings, gates: Iterable[str]) -> dict[str, Any]:
    assert service.source is not None
    source = service.source
    name = build_job_name(service.short_name, service.version)
    labels = mico_labels(service.short_name, service.version, name)
    labels["app.kubernetes.io/component"] = "build"
    args = [
        f"--context={kaniko_context(source, service.version)}",
        f"--dockerfile={source.dockerfile}",
        f"--destination={pushed_image(service, settings)}",
        "--digest-file=/dev/termination-log",
    ]
    if source.context != ".":
        args.insert(1, f"--context-sub-path={source.context}")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": settings.build_namespace,
            "labels": labels,
            "annotations": {
                SOURCE_ANNOTATION: source_fingerprint(source, service.version),
                GATES_ANNOTATION: ",".join(gates),
            },
        },
        "spec": {
            "backoffLimit": settings.build_backoff_limit,
            "activeDeadlineSeconds": settings.build_deadline_seconds,
            "ttlSecondsAfterFinished": settings.build_ttl_seconds,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "kaniko",
                            "image": settings.kaniko_image,
                            "args": args,
                            "resources": {
                                "requests": {
                                    "cpu": settings.build_cpu_request,
                                    "memory": settings.build_memory_request,
                                },
                                "limits": {
                                    "cpu": settings.build_cpu_limit,
                                    "memory": settings.build_memory_limit,
                                },
                            },
                            "volumeMounts": [{"name": "docker-config", "mountPath": "/kaniko/.docker"}],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "docker-config",
                            "secret": {
                                "secretName": settings.registry_secret,
                                "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                                "optional": True,
                            },
                        }
                    ],
                },
            },
        },
    }
