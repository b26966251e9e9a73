"""What the watch cache keeps of an object: no managedFields, a Pod's status only, and each
string once across objects (the daemon's memory at thousands of objects)."""

from __future__ import annotations

import orjson

from reconciler.cluster.cache import slim

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
