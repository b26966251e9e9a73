"""The simulated node stops reporting (KWOK stopped past the node monitor's grace period): the
node controller marks its pods not ready; once it reports again they are ready again (the
platform's `mico-pod-ready-again` stage), and the applications with them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from kubernetes import client

from tests.faults.test_apiserver import TRIGGER, platform_command
from tests.integration.conftest import ConfigRepo, Daemon
from tests.integration.test_daemon import _many_services
from tests.integration.test_platform import eventually

SERVICES = 3


def ready_pods(kube: client.ApiClient, namespace: str) -> list[bool]:
    return [
        any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        for pod in client.CoreV1Api(kube).list_namespaced_pod(namespace).items
    ]


def deployment_states(daemon: Daemon) -> set[str]:
    return {s["deployment"] for s in json.loads(daemon.get("/api/applications")[1])}


def test_pods_not_ready_after_their_node_stopped_reporting_are_ready_again(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    recovery: Callable[[str, float], None],
) -> None:
    config_repo.push(_many_services(SERVICES))
    daemon = start_daemon("daemon.db", "--no-leader-election")
    eventually(lambda: deployment_states(daemon) == {"Deployed"}, 60, "the applications deployed")
    try:
        platform_command("stop", "kwok")
        # the node monitor's grace period (50 s) after KWOK's last heartbeat (every 20 to 45 s)
        eventually(lambda: not any(ready_pods(kube, namespace)), 150, "the pods marked not ready")
        assert daemon.post("/webhook/generic", b"", TRIGGER) == 202
        eventually(lambda: deployment_states(daemon) == {"Pending"}, 30, "the daemon to see it")
        pending = len(daemon.runs())
        time.sleep(30)  # re-checks at 5, 10 and 20 s: each the same as the run before it
        runs = daemon.runs()
        assert len(runs) - pending <= 1, "identical re-checks must be counted on a row, not add rows"
        assert runs[0]["repeats"] >= 2, "the daemon re-checks a Pending application on its own"
    finally:
        back = time.monotonic()
        platform_command("up")
    eventually(lambda: all(ready_pods(kube, namespace)) and ready_pods(kube, namespace), 120, "ready pods")
    recovery("node not ready: the pods ready again after KWOK was started", time.monotonic() - back)
    # the daemon re-checks a Pending application on its own (every 5 s, backing off)
    eventually(lambda: deployment_states(daemon) == {"Deployed"}, 60, "the applications deployed again")
    recovery(
        "node not ready: the applications Deployed again after KWOK was started", time.monotonic() - back
    )
