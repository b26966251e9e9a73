"""Production workload settings on the platform: readiness decides MICO's Deployed, and a pod
that cannot start for a missing Secret shows why in the status, read from the pod (the
reconciler has no access to Secrets: `make_engine` fails a test whose requests the chart's RBAC
does not grant). KWOK runs no probes and reads no Secrets: the kubelet's findings are simulated
by the platform's stages for pods labelled mico-platform/kubelet (hack/platform/kwok/
kubelet-outcomes.yaml)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from reconciler.engine import Engine, RunOutcome
from tests.helpers import example_data
from tests.integration.conftest import BACKEND, ConfigRepo, backend
from tests.integration.test_platform import eventually

OUTCOME = "mico-platform/kubelet"


def realworld(data: dict[str, Any]) -> dict[str, Any]:
    app = next(a for a in data["applications"] if a["shortName"] == "realworld")
    return next(e for e in app["services"] if e["shortName"] == BACKEND)


def with_probe(outcome: str | None = None, **entry: Any) -> dict[str, Any]:
    data = example_data()
    service = next(s for s in data["services"] if s["shortName"] == BACKEND)
    service["readinessProbe"] = {"http": {"interface": "backend", "path": "/actuator/health"}}
    labels = {"tier": "backend", **({OUTCOME: outcome} if outcome else {})}
    realworld(data).update(labels=labels, **entry)
    return data


def status_of(engine: Engine) -> dict[str, Any]:
    result = engine.run("test")
    assert result.outcome == RunOutcome.SUCCEEDED, result.error
    (found,) = [s for s in result.statuses if s.app == "realworld"]
    (instance,) = [i for i in found.detail["instances"].values() if i.get("service") == BACKEND]
    return {"deployment": found.deployment.value, **instance}


@pytest.mark.parametrize("watch", [False, True], ids=["lists", "watch-cache"])
def test_pods_that_never_become_ready_keep_the_application_pending(
    watch: bool,
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    """From LISTs (`sync --once`) and from the daemon's watch cache, which keeps only what
    status needs of a pod."""
    config_repo.push(with_probe("not-ready"))
    engine = make_engine(watch=watch)

    def running_not_ready() -> dict[str, Any] | None:
        status = status_of(engine)
        pods = status["pods"]
        return status if len(pods) == 2 and all(p["phase"] == "Running" for p in pods) else None

    status = eventually(running_not_ready, timeout=60, what="the backend's pods Running")
    time.sleep(3)  # time for a pod to turn ready, were it going to
    status = status_of(engine)
    assert status["deployment"] == "Pending"
    assert status["availableReplicas"] == 0
    assert [p["ready"] for p in status["pods"]] == [False, False]
    probe = backend(kube, namespace).spec.template.spec.containers[0].readiness_probe
    assert (probe.http_get.path, probe.http_get.port) == ("/actuator/health", 8080)

    config_repo.push(with_probe())  # the probe passes now: the rollout's new pods are ready
    eventually(lambda: status_of(engine)["deployment"] == "Deployed", timeout=60, what="realworld Deployed")


@pytest.mark.parametrize("watch", [False, True], ids=["lists", "watch-cache"])
def test_a_pod_waiting_for_a_missing_secret_shows_why(
    watch: bool,
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    config_repo.push(
        with_probe(
            "config-error",
            envRefs={"SPRING_DATASOURCE_PASSWORD": {"secret": "realworld-db", "key": "password"}},
        )
    )
    engine = make_engine(watch=watch)

    def waiting() -> dict[str, Any] | None:
        status = status_of(engine)
        reasons = {p["waiting"] for p in status["pods"]}
        return status if len(status["pods"]) == 2 and reasons == {"CreateContainerConfigError"} else None

    status = eventually(waiting, timeout=60, what="the backend's pods waiting")
    assert status["deployment"] == "Pending"
    assert {p["phase"] for p in status["pods"]} == {"Pending"}
    (variable,) = backend(kube, namespace).spec.template.spec.containers[0].env
    assert (variable.value_from.secret_key_ref.name, variable.value_from.secret_key_ref.key) == (
        "realworld-db",
        "password",
    )
    assert variable.value is None


def test_resources_probes_and_references_are_stored_as_rendered_and_a_second_run_writes_nothing(
    make_engine: Callable[..., Engine], config_repo: ConfigRepo, kube: client.ApiClient, namespace: str
) -> None:
    """The apiserver rewrites quantities (1000m is stored as 1) and fills probe defaults; the
    desired objects must still equal the live ones, or every run would find drift."""
    data = with_probe(
        envRefs={"DB": {"configMap": "realworld-settings", "key": "db"}},
        envFrom=[{"secret": "realworld-keys"}],
        resources={"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": "1.5"}},
    )
    service = next(s for s in data["services"] if s["shortName"] == BACKEND)
    service["resources"] = {"limits": {"memory": "1.5Gi", "ephemeralStorage": "2000M"}}
    service["livenessProbe"] = {"exec": {"command": ["sh", "-c", "test -f /tmp/alive"]}}
    service["imagePullSecrets"] = ["registry-credentials"]
    config_repo.push(data)
    engine = make_engine(settings={"workload_image_pull_secrets": "shared-registry"})
    eventually(
        lambda: engine.run("test").outcome == RunOutcome.SUCCEEDED and backend(kube, namespace), 60, "rollout"
    )
    pod = backend(kube, namespace).spec.template.spec
    resources = pod.containers[0].resources
    assert (resources.requests, resources.limits) == (
        {"cpu": "1", "memory": "1Gi"},
        {"cpu": "1500m", "memory": "1536Mi", "ephemeral-storage": "2G"},
    )
    assert [s.name for s in pod.image_pull_secrets] == ["registry-credentials", "shared-registry"]
    again = engine.run("test")
    assert again.outcome == RunOutcome.SUCCEEDED, again.error
    assert not again.executed, [(a.ref.name, a.reason) for a, _, _ in again.executed]
