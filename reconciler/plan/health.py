"""Per-application status from live objects: MICO's deployment status and a sync status. Pure.

Deployment status follows MICO: Undeployed (not deployed, or nothing to deploy), Incomplete (a
Deployment or Service is missing), Pending (everything exists, not all replicas available yet),
Deployed, Unknown (the cluster could not be read). Sync status is Synced when nothing the
application needs is left to apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.plan import Manifest, ObjectRef
from reconciler.plan.rollout import Held
from reconciler.render.labels import applications_of
from reconciler.spec.names import label_safe


class DeploymentStatus(StrEnum):
    DEPLOYED = "Deployed"
    PENDING = "Pending"
    INCOMPLETE = "Incomplete"
    UNDEPLOYED = "Undeployed"
    UNKNOWN = "Unknown"


class SyncStatus(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"


@dataclass(frozen=True)
class AppStatus:
    app: str
    version: str
    deployment: DeploymentStatus
    sync: SyncStatus
    detail: dict[str, Any] = field(default_factory=dict)


def assess(
    applications: Iterable[tuple[str, str, bool]],
    desired: Iterable[Manifest],
    live: Mapping[ObjectRef, Manifest] | None,
    pods: Iterable[Manifest],
    pending: Iterable[ObjectRef],
    held: Mapping[str, Held] | None = None,
) -> list[AppStatus]:
    """`applications` are (shortName, version, deploy); `live` is None when the cluster could not
    be read; `pending` are desired objects still not applied as desired (failed, refused, drift
    left alone); `held` are applications held back by a build: Incomplete once one failed,
    Pending while they run, and out of sync until they roll out."""
    held = held or {}
    by_application: dict[str, list[Manifest]] = {}
    for obj in desired:
        for member in applications_of(obj):
            by_application.setdefault(member, []).append(obj)
    not_synced = set(pending)
    pods_by_instance: dict[str, list[Manifest]] = {}
    for pod in pods:
        instance = pod["metadata"].get("labels", {}).get("ust.mico/instance", "")
        pods_by_instance.setdefault(instance, []).append(pod)
    statuses = []
    for short_name, version, deploy in applications:
        key = f"{short_name}@{version}"
        mine = by_application.get(key, [])
        sync = (
            SyncStatus.OUT_OF_SYNC if any(ObjectRef.of(o) in not_synced for o in mine) else SyncStatus.SYNCED
        )
        if live is None:
            statuses.append(AppStatus(short_name, version, DeploymentStatus.UNKNOWN, sync))
            continue
        services: dict[str, Any] = {}
        missing = False
        progressing = False
        for obj in mine:
            ref = ObjectRef.of(obj)
            current = live.get(ref)
            missing = missing or current is None
            if obj["kind"] == "Deployment":
                requested = obj["spec"]["replicas"]
                available = (current or {}).get("status", {}).get("availableReplicas", 0) or 0
                progressing = progressing or available < requested
                services[ref.name] = {
                    "service": obj["metadata"]["labels"].get("ust.mico/name"),
                    "version": obj["metadata"]["labels"].get("ust.mico/version"),
                    "applicationsUsingThisService": sorted(applications_of(obj)),
                    "requestedReplicas": requested,
                    "availableReplicas": available,
                    "pods": [
                        _pod(p)
                        for p in sorted(
                            pods_by_instance.get(ref.name, []), key=lambda p: p["metadata"]["name"]
                        )
                    ],
                    "interfaces": {},
                }
        for obj in mine:
            if obj["kind"] == "Service":
                instance = obj["spec"]["selector"]["ust.mico/instance"]
                current = live.get(ObjectRef.of(obj)) or {}
                ingress = current.get("status", {}).get("loadBalancer", {}).get("ingress", []) or []
                services.setdefault(instance, {"interfaces": {}})["interfaces"][
                    obj["metadata"]["labels"].get("ust.mico/interface", "")
                ] = {
                    "service": obj["metadata"]["name"],
                    "externalIPs": [i["ip"] for i in ingress if i.get("ip")],
                    "exists": bool(current),
                }
        hold = held.get(key)
        if hold is not None:
            failed = any(b["state"] == "failed" for b in hold.builds)
            status = DeploymentStatus.INCOMPLETE if failed else DeploymentStatus.PENDING
            sync = SyncStatus.OUT_OF_SYNC
        elif not deploy or not mine:
            status = DeploymentStatus.UNDEPLOYED
        elif missing:
            status = DeploymentStatus.INCOMPLETE
        elif progressing:
            status = DeploymentStatus.PENDING
        else:
            status = DeploymentStatus.DEPLOYED
        deployments = [i for i in services.values() if "requestedReplicas" in i]
        detail: dict[str, Any] = {
            "instances": services,
            "totals": {
                "pods": sum(len(i["pods"]) for i in deployments),
                "requestedReplicas": sum(i["requestedReplicas"] for i in deployments),
                "availableReplicas": sum(i["availableReplicas"] for i in deployments),
            },
        }
        if hold is not None:
            detail["builds"] = list(hold.builds)
            detail["heldAt"] = hold.status()
        statuses.append(AppStatus(short_name, version, status, sync, detail))
    return statuses


def _pod(pod: Manifest) -> dict[str, Any]:
    """A pod as status shows it: whether it is ready (its readiness probes pass), and why a
    container waits (e.g. CreateContainerConfigError for a Secret that does not exist: the
    kubelet's finding, read from the pod, never from the Secret)."""
    status = pod.get("status", {})
    containers = status.get("containerStatuses", []) or []
    return {
        "name": pod["metadata"]["name"],
        "phase": status.get("phase", "Unknown"),
        "ready": any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        ),
        "waiting": next(
            (
                waiting.get("reason")
                for c in containers
                if isinstance(waiting := (c.get("state") or {}).get("waiting"), dict)
            ),
            None,
        ),
        "node": pod.get("spec", {}).get("nodeName"),
        "hostIP": status.get("hostIP"),
        "startTime": status.get("startTime"),
        "restarts": sum(c.get("restartCount", 0) for c in containers),
    }


def service_view(
    statuses: Iterable[Mapping[str, Any]], short_name: str, version: str | None
) -> list[dict[str, Any]]:
    """MICO's view of one service: each of its instances (of one version, or all) as the latest
    application statuses report them; an instance shared by applications appears once."""
    found: dict[str, dict[str, Any]] = {}
    for status in statuses:
        for name, instance in status["detail"].get("instances", {}).items():
            if instance.get("service") == short_name and (
                version is None or instance.get("version") == label_safe(version)
            ):
                found.setdefault(name, {"instance": name, **instance})
    return [found[name] for name in sorted(found)]
