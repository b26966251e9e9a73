"""The kube-apiserver stopped under a running daemon, then started again."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from kubernetes import client

from tests.integration.conftest import PLATFORM, ConfigRepo, Daemon, deployments
from tests.integration.test_daemon import SECRET, _many_services
from tests.integration.test_platform import eventually

SERVICES = 60
TRIGGER = {"Authorization": f"Bearer {SECRET.decode()}"}


def platform_command(*args: str) -> None:
    subprocess.run([sys.executable, str(PLATFORM), *args], check=True, capture_output=True)


def metric(daemon: Daemon, name: str) -> list[str]:
    text = daemon.get("/metrics")[1].decode()
    return [line for line in text.splitlines() if line.startswith(name)]


def test_a_stopped_apiserver_fails_runs_clearly_and_the_next_run_converges(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    config_repo.push(_many_services(SERVICES))
    # without leader election: a leader that cannot renew its Lease for 10 s stops on purpose
    # (fencing; its Deployment restarts it), which is not what this test is about
    daemon = start_daemon("daemon.db", "--no-leader-election")
    eventually(lambda: daemon.runs() and daemon.runs()[0]["outcome"] == "succeeded", 120, "the first run")
    assert len(deployments(kube, namespace)) == SERVICES
    try:
        platform_command("stop", "kube-apiserver")
        eventually(
            lambda: any(line.endswith(" 1.0") for line in metric(daemon, "mico_reconciler_watch_failing{")),
            30,
            "the daemon to notice",
        )
        assert daemon.post("/webhook/generic", b"", TRIGGER) == 202
        failed = eventually(
            lambda: next(
                (r for r in daemon.runs() if r["trigger"].startswith("webhook") and r["finished"]), None
            ),
            60,
            "a run while down",
        )
        # the watch cache makes no request: without stale detection this run would "succeed"
        assert failed["outcome"] == "failed"
        assert "Kubernetes API" in failed["error"], failed["error"]
        assert any(line.endswith(" 1.0") for line in metric(daemon, "mico_reconciler_watch_failing{"))
        assert daemon.get("/healthz")[0] == 200
        assert daemon.get("/readyz")[0] == 200, (
            "ready: it answers webhooks and retries once the apiserver is back"
        )
    finally:
        platform_command("up")
    # a delete while the daemon's watches are still reconnecting must not be missed
    victim = sorted(deployments(kube, namespace))[0]
    client.AppsV1Api(kube).delete_namespaced_deployment(victim, namespace)
    eventually(
        lambda: all(line.endswith(" 0.0") for line in metric(daemon, "mico_reconciler_watch_failing{")),
        60,
        "the watches to recover",
    )
    started = len(daemon.runs())
    assert daemon.post("/webhook/generic", b"", TRIGGER) == 202
    eventually(
        lambda: len(daemon.runs()) > started and daemon.runs()[0]["finished"], 60, "a run after the restart"
    )
    latest = daemon.runs()[0]
    assert latest["outcome"] == "succeeded", latest["error"]
    assert [a["name"] for a in latest["actions"] if a["kind"] == "Deployment"] == [victim], (
        "only the deleted one"
    )
    names = deployments(kube, namespace)
    assert len(names) == SERVICES, "no object lost or duplicated"
