"""Request attributes as the apiserver's RBAC sees them, and the rules that grant them."""

from __future__ import annotations

import pytest

from reconciler.cluster.permissions import RULES, Request, Scope, attributes, granted

SERVER = "https://127.0.0.1:6443"
NAMESPACES = {Scope.WORKLOAD: "apps", Scope.BUILD: "builds", Scope.LEASE: "system"}


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        (
            "GET",
            "/apis/apps/v1/namespaces/apps/deployments?labelSelector=x",
            ("list", "apps", "deployments", "apps"),
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/apps/deployments?watch=true&rv=1",
            ("watch", "apps", "deployments", "apps"),
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/apps/deployments?watch=false",
            ("list", "apps", "deployments", "apps"),
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/apps/deployments/web?force=true",
            ("patch", "apps", "deployments", "apps"),
        ),
        ("DELETE", "/api/v1/namespaces/apps/services/web", ("delete", "", "services", "apps")),
        ("DELETE", "/api/v1/namespaces/apps/services", ("deletecollection", "", "services", "apps")),
        ("POST", "/apis/batch/v1/namespaces/builds/jobs", ("create", "batch", "jobs", "builds")),
        ("GET", "/api/v1/namespaces/builds/pods/p-1/log?tailLines=20", ("get", "", "pods/log", "builds")),
        (
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/system/leases/l",
            ("update", "coordination.k8s.io", "leases", "system"),
        ),
        ("GET", "/api/v1/namespaces/apps", ("get", "", "namespaces", "")),
        ("GET", "/api/v1/namespaces", ("list", "", "namespaces", "")),
        ("GET", "/api/v1/nodes", ("list", "", "nodes", "")),
    ],
)
def test_attributes_of_a_request(method: str, path: str, expected: tuple[str, str, str, str]) -> None:
    assert attributes(method, SERVER + path) == Request(*expected)


@pytest.mark.parametrize("path", ["/version", "/healthz", "/api", "/apis/apps"])
def test_non_resource_urls_have_no_resource_attributes(path: str) -> None:
    assert attributes("GET", SERVER + path) is None


def test_what_the_rules_grant() -> None:
    assert granted(Request("patch", "apps", "deployments", "apps"), NAMESPACES, strimzi=False)
    assert granted(Request("get", "", "pods/log", "builds"), NAMESPACES, strimzi=False)
    assert granted(Request("update", "coordination.k8s.io", "leases", "system"), NAMESPACES, strimzi=False)
    assert not granted(Request("patch", "apps", "deployments", "builds"), NAMESPACES, strimzi=False)
    assert not granted(Request("get", "", "secrets", "apps"), NAMESPACES, strimzi=False)
    assert not granted(Request("get", "apps", "deployments", "apps"), NAMESPACES, strimzi=False)
    topic = Request("patch", "kafka.strimzi.io", "kafkatopics", "apps")
    assert (granted(topic, NAMESPACES, strimzi=False), granted(topic, NAMESPACES, strimzi=True)) == (
        False,
        True,
    )


def test_no_rule_reaches_secrets_or_escalates() -> None:
    for rule in RULES:
        assert rule.resource.split("/")[0] not in {"secrets", "roles", "rolebindings", "serviceaccounts"}
        assert not {"*", "escalate", "bind", "impersonate"} & set(rule.verbs)
