"""API Priority and Fairness throttling the reconciler's ServiceAccount to almost nothing: the
apiserver answers 429 with Retry-After, the client waits and tries again, the run converges."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from reconciler.engine import Engine, RunOutcome
from tests.integration.conftest import ConfigRepo, Platform, deployments, grant, token_kubeconfig
from tests.integration.test_daemon import _many_services

SERVICES = 80
ACCOUNT = "throttled"


def throttled() -> float:
    return sum(
        REGISTRY.get_sample_value("rest_client_requests_total", {"method": method, "code": "429"}) or 0.0
        for method in ("GET", "PATCH", "POST", "DELETE", "PUT")
    )


@pytest.fixture
def tiny_priority_level(kube: client.ApiClient, namespace: str) -> Iterator[None]:
    """A PriorityLevelConfiguration with the smallest share that rejects (429) at once when its
    seats are taken, and a FlowSchema sending the test's ServiceAccount to it."""
    name = f"mico-tiny-{uuid.uuid4().hex[:6]}"
    api = client.CustomObjectsApi(kube)
    group, version = "flowcontrol.apiserver.k8s.io", "v1"
    api.create_cluster_custom_object(
        group,
        version,
        "prioritylevelconfigurations",
        {
            "apiVersion": f"{group}/{version}",
            "kind": "PriorityLevelConfiguration",
            "metadata": {"name": name},
            "spec": {
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": 1,
                    "lendablePercent": 0,
                    "limitResponse": {"type": "Reject"},
                },
            },
        },
    )
    api.create_cluster_custom_object(
        group,
        version,
        "flowschemas",
        {
            "apiVersion": f"{group}/{version}",
            "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {
                "priorityLevelConfiguration": {"name": name},
                "matchingPrecedence": 100,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [
                            {
                                "kind": "ServiceAccount",
                                "serviceAccount": {"name": ACCOUNT, "namespace": namespace},
                            }
                        ],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "namespaces": ["*"],
                                "clusterScope": True,
                            }
                        ],
                    }
                ],
            },
        },
    )
    yield
    api.delete_cluster_custom_object(group, version, "flowschemas", name)
    api.delete_cluster_custom_object(group, version, "prioritylevelconfigurations", name)


@pytest.mark.usefixtures("tiny_priority_level")
def test_a_throttled_reconciler_honours_retry_after_and_converges(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    platform: Platform,
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    recovery: Callable[[str, float], None],
) -> None:
    client.CoreV1Api(kube).create_namespaced_service_account(namespace, {"metadata": {"name": ACCOUNT}})
    grant(kube, namespace, ACCOUNT)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(token_kubeconfig(platform, kube, namespace, ACCOUNT))
    config_repo.push(_many_services(SERVICES))
    before = throttled()
    engine = make_engine(kubeconfig=kubeconfig, concurrency=32)
    result = engine.run("test")
    assert result.outcome == RunOutcome.SUCCEEDED, result.error
    recovery(f"throttled (429): the run converged {SERVICES} services", result.duration)
    assert throttled() > before, "the apiserver did throttle (429) the reconciler"
    assert len(deployments(kube, namespace)) == SERVICES
