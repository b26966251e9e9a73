"""How to list, apply and delete each kind the reconciler manages, over raw JSON."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import orjson
from kubernetes import client

from reconciler.plan import Manifest


@dataclass(frozen=True)
class Resource:
    api_version: str
    kind: str
    plural: str

    def path(self, namespace: str, name: str | None = None) -> str:
        group = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        base = f"{group}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{name}" if name else base


DEPLOYMENT = Resource("apps/v1", "Deployment", "deployments")
SERVICE = Resource("v1", "Service", "services")
JOB = Resource("batch/v1", "Job", "jobs")
POD = Resource("v1", "Pod", "pods")
KAFKA_TOPIC = Resource("kafka.strimzi.io/v1beta2", "KafkaTopic", "kafkatopics")
MANAGED = {r.kind: r for r in (DEPLOYMENT, SERVICE, JOB, KAFKA_TOPIC)}


def call(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    query: list[tuple[str, Any]] | None = None,
    content_type: str = "application/json",
    timeout: float = 60,
) -> Any:
    """One raw API call; returns the decoded JSON body, raises ApiException on an error status."""
    verb, url, headers, payload, _ = api.param_serialize(
        method,
        path,
        query_params=query or [],
        body=body,
        auth_settings=["BearerToken"],
        header_params={"Accept": "application/json", "Content-Type": content_type},
    )
    response = api.call_api(verb, url, header_params=headers, body=payload, _request_timeout=timeout)
    data = response.read()
    if not 200 <= response.status < 300:
        raise client.ApiException(http_resp=response)
    if not data:
        return None
    gc.disable()  # a large LIST allocates many small objects; collecting midway only costs time
    try:
        return orjson.loads(data)
    finally:
        gc.enable()


def list_objects(api: client.ApiClient, resource: Resource, namespace: str, selector: str) -> list[Manifest]:
    result = call(api, "GET", resource.path(namespace), query=[("labelSelector", selector)])
    items: list[Manifest] = result.get("items", [])
    for item in items:  # list items carry no apiVersion/kind
        item.setdefault("apiVersion", resource.api_version)
        item.setdefault("kind", resource.kind)
    return items


def apply(
    api: client.ApiClient, obj: Manifest, *, field_manager: str, force: bool, dry_run: bool = False
) -> Manifest:
    """A server-side apply; `dry_run`: validated, defaulted and admitted as the write would be,
    and answered with what would be stored, but not stored."""
    resource = MANAGED[obj["kind"]]
    meta = obj["metadata"]
    result: Manifest = call(
        api,
        "PATCH",
        resource.path(meta["namespace"], meta["name"]),
        body=orjson.dumps(obj),  # bytes go out as they are: the client's own serializer is slow
        query=[("fieldManager", field_manager), ("force", "true" if force else "false")]
        + ([("dryRun", "All")] if dry_run else []),
        content_type="application/apply-patch+yaml",
    )
    return result


def delete(api: client.ApiClient, kind: str, namespace: str, name: str) -> None:
    call(
        api,
        "DELETE",
        MANAGED[kind].path(namespace, name),
        body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
    )
