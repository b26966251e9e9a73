"""What the watch cache keeps of an object: no managedFields, a Pod's status only, and each
string once across objects (the daemon's memory at thousands of objects)."""

from __future__ import annotations

import orjson

from reconciler.cluster.cache import slim
from reconciler.plan import health

TRACKING = "git://example.com/config.git//config@team"


def decoded(name: str) -> dict:
    """An object as a LIST or watch event decodes it: every string a fresh copy."""
    return orjson.loads(
        orjson.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": name,
                    "labels": {"app.kubernetes.io/managed-by": "mico-reconciler"},
                    "annotations": {"ust.mico/tracking-id": TRACKING},
                    "managedFields": [{"manager": "mico-reconciler", "fieldsV1": {"f:spec": {}}}],
                },
                "spec": {"template": {"spec": {"containers": [{"imagePullPolicy": "IfNotPresent"}]}}},
            }
        )
    )


def test_managed_fields_are_dropped_and_the_rest_kept() -> None:
    obj = slim(decoded("a"))
    assert "managedFields" not in obj["metadata"]
    assert obj["metadata"]["annotations"]["ust.mico/tracking-id"] == TRACKING
    assert obj["spec"]["template"]["spec"]["containers"] == [{"imagePullPolicy": "IfNotPresent"}]


def test_equal_strings_of_different_objects_are_one_object() -> None:
    first, second = decoded("a"), decoded("b")
    assert (
        first["metadata"]["annotations"]["ust.mico/tracking-id"]
        is not (second["metadata"]["annotations"]["ust.mico/tracking-id"])
    )
    first, second = slim(first), slim(second)
    assert (
        first["metadata"]["annotations"]["ust.mico/tracking-id"]
        is (second["metadata"]["annotations"]["ust.mico/tracking-id"])
    )
    policy = [o["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] for o in (first, second)]
    assert policy[0] is policy[1]


def test_a_pod_keeps_only_what_its_status_needs() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "team", "labels": {"a": "b"}, "uid": "u"},
        "spec": {"nodeName": "kwok-node-0", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "containerStatuses": [{"restartCount": 2, "image": "i"}]},
    }
    kept = slim(orjson.loads(orjson.dumps(pod)))
    assert kept["metadata"] == {"name": "p", "namespace": "team", "labels": {"a": "b"}}
    assert kept["spec"] == {"nodeName": "kwok-node-0"}
    assert kept["status"]["phase"] == "Running"
    assert kept["status"]["containerStatuses"] == [{"restartCount": 2}]
    assert kept["status"]["conditions"] == []


def test_a_slim_pod_reports_the_same_status_as_the_whole_one() -> None:
    """Readiness and a container's waiting reason survive the slimming: the daemon's status (from
    the watch cache) must say what a `sync --once` (from a LIST) says."""
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{n}", "namespace": "team", "labels": {"ust.mico/instance": "i"}},
            "spec": {"nodeName": "kwok-node-0"},
            "status": {
                "phase": phase,
                "hostIP": "10.0.0.1",
                "startTime": "2026-11-27T00:00:00Z",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": ready, "reason": "ContainersNotReady"},
                ],
                "containerStatuses": [
                    {"restartCount": 3, "image": "x", "ready": False, "state": state},
                ],
            },
        }
        for n, (phase, ready, state) in enumerate(
            [
                ("Running", "True", {"running": {"startedAt": "2026-11-27T00:00:00Z"}}),
                ("Running", "False", {"running": {}}),
                ("Pending", "False", {"waiting": {"reason": "CreateContainerConfigError", "message": "m"}}),
            ]
        )
    ]
    whole = [health._pod(p) for p in pods]
    assert [(p["ready"], p["waiting"]) for p in whole] == [
        (True, None),
        (False, None),
        (False, "CreateContainerConfigError"),
    ]
    assert [health._pod(slim(orjson.loads(orjson.dumps(p)))) for p in pods] == whole
