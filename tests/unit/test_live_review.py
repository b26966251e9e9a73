"""The live diff's report: which fields a reviewer sees change, and its three formats."""

from __future__ import annotations

import copy
import json

from reconciler.review.live import LiveChange, LiveReview, as_json, field_changes, markdown, text

LIVE = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "backend",
        "namespace": "team",
        "resourceVersion": "41",
        "uid": "u-1",
        "generation": 3,
        "creationTimestamp": "2026-11-26T10:00:00Z",
        "managedFields": [{"manager": "mico-reconciler"}],
        "annotations": {"deployment.kubernetes.io/revision": "3", "ust.mico/desired-hash": "aaaa"},
    },
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}},
    "status": {"replicas": 2, "readyReplicas": 2},
}


def test_only_what_the_apiserver_would_store_differently_is_shown() -> None:
    stored = copy.deepcopy(LIVE)
    stored["metadata"].update(resourceVersion="42", generation=4, managedFields=[])
    stored["metadata"]["annotations"] = {
        "deployment.kubernetes.io/revision": "4",
        "ust.mico/desired-hash": "bbbb",
    }
    stored["spec"]["replicas"] = 3
    stored["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    stored["status"] = {}
    assert field_changes(LIVE, stored) == (
        'metadata.annotations.ust.mico/desired-hash: "aaaa" -> "bbbb"',
        "spec.replicas: 2 -> 3",
        'spec.template.spec.containers[0].env[0].name: absent -> "A"',
        'spec.template.spec.containers[0].env[0].value: absent -> "1"',
    )


def test_a_new_object_shows_every_field_it_would_have() -> None:
    fields = field_changes(None, LIVE)
    assert "spec.replicas: absent -> 2" in fields
    assert not [f for f in fields if f.startswith(("status", "metadata.uid", "metadata.managedFields"))]


def test_long_values_and_credentials_are_cut_and_redacted() -> None:
    stored = copy.deepcopy(LIVE)
    stored["spec"]["template"]["spec"]["containers"][0]["image"] = (
        "https://user:hunter2@registry/" + "x" * 200
    )
    (line,) = field_changes(LIVE, stored)
    assert "hunter2" not in line
    assert line.endswith('..."') or line.endswith("...")
    assert len(line.split(" -> ", 1)[1]) <= 80


REVIEW = LiveReview(
    head="main@abc1234",
    namespace="team",
    changes=(
        LiveChange(
            "Deployment",
            "team",
            "backend",
            "drift",
            "changed outside the reconciler",
            ("spec.replicas: 5 -> 2",),
        ),
        LiveChange(
            "Service", "team", "a</code><img src=x onerror=alert(1)>", "prune", "no longer in the config"
        ),
    ),
    builds=("api v1.2.0",),
    topics=("orders",),
)


def test_text_lists_each_change_with_its_fields() -> None:
    out = text(REVIEW)
    assert out.splitlines()[1:4] == [
        "* drift Deployment/backend: changed outside the reconciler",
        "    spec.replicas: 5 -> 2",
        "- prune Service/a</code><img src=x onerror=alert(1)>: no longer in the config",
    ]
    assert "+ build api v1.2.0 would start" in out
    assert out.rstrip().endswith("0 to create, 0 to change, 1 to prune, 1 drifted; 1 builds, 1 new topics")


def test_markdown_escapes_names() -> None:
    out = markdown(REVIEW)
    assert "<img" not in out
    assert "&lt;img src=x onerror=alert(1)&gt;" in out
    assert "<details><summary>* drift Deployment <code>backend</code>" in out


def test_no_change() -> None:
    quiet = LiveReview(head="working tree", namespace="team", changes=())
    assert text(quiet).endswith("No changes: the cluster matches the config.\n")
    assert json.loads(as_json(quiet))["hasChanges"] is False
