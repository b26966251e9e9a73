from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.plan import (
    HASH_ANNOTATION,
    TRACKING_ANNOTATION,
    ObjectRef,
    Verb,
    compute,
    contains,
    stamp,
    tracking_id,
)
from reconciler.plan.health import DeploymentStatus, SyncStatus, assess, service_view
from reconciler.render import Settings, render
from tests.helpers import example_data, load_data

TRACKING = tracking_id(repo="git://git.example/config.git", path="apps", namespace="mico-workspace")


def desired() -> list[dict[str, Any]]:
    return stamp(render(load_data(example_data()), Settings()), TRACKING)


def live_copy(objects: list[dict[str, Any]]) -> dict[ObjectRef, dict[str, Any]]:
    """What the apiserver returns after applying: our fields plus defaults and status."""
    live = {}
    for obj in copy.deepcopy(objects):
        obj["metadata"].update(resourceVersion="1", uid="u", managedFields=[{"manager": "mico-reconciler"}])
        obj["status"] = {"availableReplicas": obj["spec"].get("replicas", 0)}
        if obj["kind"] == "Service":
            obj["spec"].update(clusterIP="10.0.0.7", sessionAffinity="None")
        live[ObjectRef.of(obj)] = obj
    return live


def applied(objects: list[dict[str, Any]]) -> dict[ObjectRef, str]:
    return {ObjectRef.of(o): o["metadata"]["annotations"][HASH_ANNOTATION] for o in objects}


def test_stamp_adds_tracking_and_a_stable_hash() -> None:
    first, second = desired(), desired()
    assert first == second
    annotations = first[0]["metadata"]["annotations"]
    assert annotations[TRACKING_ANNOTATION] == "git://git.example/config.git//apps@mico-workspace"
    assert len(annotations[HASH_ANNOTATION]) == 16


def test_everything_is_created_on_an_empty_cluster() -> None:
    objects = desired()
    plan = compute(objects, {}, tracking=TRACKING, last_applied={})
    assert [a.verb for a in plan.actions] == [Verb.CREATE] * len(objects)
    assert {a.reason for a in plan.actions} == {"new in the config"}


def test_server_defaults_and_status_are_not_changes() -> None:
    objects = desired()
    plan = compute(objects, live_copy(objects), tracking=TRACKING, last_applied=applied(objects))
    assert plan.actions == ()
    assert len(plan.unchanged) == len(objects)


def test_a_config_change_is_an_update_with_its_reason() -> None:
    objects = desired()
    live = live_copy(objects)
    data = example_data()
    data["applications"][0]["services"][1]["replicas"] = 4
    changed = stamp(render(load_data(data), Settings()), TRACKING)
    plan = compute(changed, live, tracking=TRACKING, last_applied=applied(objects))
    (action,) = plan.actions
    assert action.verb == Verb.UPDATE
    assert action.reason == "changed in the config: spec.replicas: 2 -> 4"
    assert not action.drift


def test_changes_made_outside_are_drift() -> None:
    objects = desired()
    live = live_copy(objects)
    deployment = next(ref for ref in live if ref.kind == "Deployment")
    live[deployment]["spec"]["replicas"] = 9
    service = next(ref for ref in live if ref.kind == "Service")
    del live[service]
    plan = compute(objects, live, tracking=TRACKING, last_applied=applied(objects))
    assert {(a.ref, a.verb, a.reason) for a in plan.drift} == {
        (deployment, Verb.UPDATE, "changed outside the reconciler: spec.replicas: 9 -> 1"),
        (service, Verb.CREATE, "deleted outside the reconciler"),
    }
    assert plan.actions == plan.drift
    report_only = compute(objects, live, tracking=TRACKING, last_applied=applied(objects), self_heal=False)
    assert report_only.actions == ()
    assert len(report_only.drift) == 2


@pytest.mark.parametrize(
    "tamper",
    [
        lambda meta: meta["annotations"].pop(TRACKING_ANNOTATION),
        lambda meta: meta["annotations"].__setitem__(TRACKING_ANNOTATION, "someone-else"),
        lambda meta: meta["labels"].pop("app.kubernetes.io/managed-by"),
    ],
    ids=["no-tracking", "other-tracking", "no-managed-by"],
)
def test_objects_not_owned_are_never_updated_or_deleted(tamper: Any) -> None:
    objects = desired()
    live = live_copy(objects)
    victim = next(ref for ref in live if ref.kind == "Deployment")
    tamper(live[victim]["metadata"])
    live[victim]["spec"]["replicas"] = 9
    stranger = copy.deepcopy(live[victim])
    stranger["metadata"]["name"] = "not-in-the-config"
    live[ObjectRef.of(stranger)] = stranger
    plan = compute(objects, live, tracking=TRACKING, last_applied=applied(objects), max_prune_fraction=1.0)
    assert plan.foreign == (victim,)
    assert plan.actions == ()


def test_objects_dropped_from_the_config_are_pruned_in_reverse_order() -> None:
    objects = desired()
    live = live_copy(objects)
    data = example_data()
    del data["applications"][1]
    smaller = stamp(render(load_data(data), Settings()), TRACKING)
    plan = compute(smaller, live, tracking=TRACKING, last_applied=applied(objects))
    deletes = [a for a in plan.actions if a.verb == Verb.DELETE]
    assert [a.ref.kind for a in deletes] == ["Service", "Deployment", "Deployment", "Deployment"]
    assert {a.reason for a in deletes} == {"no longer in the config"}


def test_the_prune_guard_holds_back_mass_deletion() -> None:
    objects = desired()
    live = live_copy(objects)
    plan = compute([], live, tracking=TRACKING, last_applied=applied(objects))
    assert plan.actions == ()
    assert len(plan.prune_refused) == len(objects)
    forced = compute([], live, tracking=TRACKING, last_applied=applied(objects), force_prune=True)
    assert len(forced.actions) == len(objects)
    lenient = compute([], live, tracking=TRACKING, last_applied=applied(objects), max_prune_fraction=1.0)
    assert len(lenient.actions) == len(objects)


@pytest.mark.parametrize(
    ("live", "wanted", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"l": [{"x": 1, "y": 2}]}, {"l": [{"x": 1}]}, True),
        ({"l": [{"x": 1}, {"x": 2}]}, {"l": [{"x": 1}]}, False),
        ({"l": [1, 2]}, {"l": [2, 1]}, False),
        ({"v": "1"}, {"v": 1}, False),
    ],
)
def test_contains(live: Any, wanted: Any, expected: bool) -> None:
    assert contains(live, wanted) is expected


def test_health_of_the_example() -> None:
    spec = load_data(example_data())
    objects = desired()
    apps = [(a.short_name, a.version, a.deploy) for a in spec.applications]
    live = live_copy(objects)
    statuses = {s.app: s for s in assess(apps, objects, live, [], [])}
    assert statuses["realworld"].deployment == DeploymentStatus.DEPLOYED
    assert statuses["realworld"].sync == SyncStatus.SYNCED
    backend = next(ref for ref in live if ref.name.startswith("spring-boot") and ref.kind == "Deployment")
    live[backend]["status"]["availableReplicas"] = 1
    assert {s.app: s.deployment for s in assess(apps, objects, live, [], [])}[
        "realworld"
    ] == DeploymentStatus.PENDING
    service = next(ref for ref in live if ref.kind == "Service" and ref.name.startswith("react"))
    del live[service]
    statuses = {s.app: s for s in assess(apps, objects, live, [], [service])}
    assert statuses["realworld"].deployment == DeploymentStatus.INCOMPLETE
    assert statuses["realworld"].sync == SyncStatus.OUT_OF_SYNC
    assert statuses["messaging-example"].sync == SyncStatus.SYNCED
    assert {s.deployment for s in assess(apps, objects, None, [], [])} == {DeploymentStatus.UNKNOWN}
    assert {s.deployment for s in assess([("x", "v1.0.0", False)], [], {}, [], [])} == {
        DeploymentStatus.UNDEPLOYED
    }


def test_a_verified_object_at_the_same_version_is_not_compared_again() -> None:
    objects = desired()
    live = live_copy(objects)
    ref = next(r for r in live if r.kind == "Deployment")
    digest = live[ref]["metadata"]["annotations"][HASH_ANNOTATION]
    live[ref]["spec"]["replicas"] = 9  # would be drift, but the memo says version "1" was verified
    memo = {ref: (digest, "1")}
    plain = compute(objects, live, tracking=TRACKING, last_applied=applied(objects), verified=memo)
    assert plain.actions == ()
    live[ref]["metadata"]["resourceVersion"] = "2"  # any change moves the version: compared again
    plan = compute(objects, live, tracking=TRACKING, last_applied=applied(objects), verified=memo)
    assert [a.ref for a in plan.drift] == [ref]


def test_status_as_mico_reported_it() -> None:
    spec = load_data(example_data())
    objects = desired()
    apps = [(a.short_name, a.version, a.deploy) for a in spec.applications]
    backend = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("spring")
    )
    pod = {
        "metadata": {"name": "backend-pod", "labels": {"ust.mico/instance": backend["metadata"]["name"]}},
        "spec": {"nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "hostIP": "10.0.0.7",
            "startTime": "2026-11-26T03:00:00Z",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {"restartCount": 2, "state": {"waiting": {"reason": "CreateContainerConfigError"}}}
            ],
        },
    }
    statuses = {s.app: s for s in assess(apps, objects, live_copy(objects), [pod], [])}
    realworld = statuses["realworld"].detail
    instance = realworld["instances"][backend["metadata"]["name"]]
    assert instance["applicationsUsingThisService"] == ["realworld@v1.0.0"]
    assert instance["version"] == "v1.0.0"
    assert instance["pods"] == [
        {
            "name": "backend-pod",
            "phase": "Running",
            "ready": False,
            "waiting": "CreateContainerConfigError",  # e.g. a Secret named in envRefs is missing
            "node": "node-1",
            "hostIP": "10.0.0.7",
            "startTime": "2026-11-26T03:00:00Z",
            "restarts": 2,
        }
    ]
    assert realworld["totals"] == {"pods": 1, "requestedReplicas": 3, "availableReplicas": 3}
    stored = [{"detail": s.detail} for s in statuses.values()]
    (view,) = service_view(stored, "spring-boot-realworld-example-app", "v1.0.0")
    assert view == {"instance": backend["metadata"]["name"], **instance}
    assert service_view(stored, "spring-boot-realworld-example-app", None) == [view]
    assert service_view(stored, "spring-boot-realworld-example-app", "v2.0.0") == []
