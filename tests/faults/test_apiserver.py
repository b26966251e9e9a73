"""The kube-apiserver stopped under a running daemon, then started again."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from kubernetes import client

from tests.integration.conftest import (
    SECRET,
    ConfigRepo,
    Daemon,
    deployments,
    identities,
    platform_command,
)
from tests.integration.test_daemon import _many_services
from tests.integration.test_platform import eventually

SERVICES = 150
TRIGGER = {"Authorization": f"Bearer {SECRET.decode()}"}


def metric(daemon: Daemon, name: str) -> list[str]:
    text = daemon.get("/metrics")[1].decode()
    return [line for line in text.splitlines() if line.startswith(name)]


def test_an_apiserver_stopped_mid_run_fails_runs_clearly_and_the_next_run_converges(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    recovery: Callable[[str, float], None],
) -> None:
    config_repo.push(_many_services(SERVICES))
    # one object at a time, so that the stop lands in the middle of the run; without leader
    # election: a leader that cannot renew its Lease for 10 s stops on purpose (fencing; its
    # Deployment restarts it), which is not what this test is about
    daemon = start_daemon("daemon.db", "--no-leader-election", "--concurrency", "1", wait_for_run=False)
    eventually(lambda: len(deployments(kube, namespace)) > 5, 60, "the first run to be applying")
    try:
        platform_command("stop", "kube-apiserver")
        interrupted = eventually(
            lambda: daemon.runs() and daemon.runs()[-1]["finished"] and daemon.runs()[-1], 60, "the run"
        )
        assert interrupted["outcome"] == "failed", "the stop did not land mid-run"
        # the cause they share, not one object's URL: "N objects could not be applied; M of them: ..."
        failures = re.fullmatch(
            r"(\d+) objects could not be applied; (\d+) of them: .+", interrupted["error"]
        )
        assert failures, interrupted["error"]
        assert int(failures[2]) > int(failures[1]) / 2, interrupted["error"]
        print(f"\nthe run the stop cut short: {interrupted['error']}")
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
        assert failed["error"].startswith("Kubernetes API: StaleCacheError: the watch of "), failed["error"]
        assert any(line.endswith(" 1.0") for line in metric(daemon, "mico_reconciler_watch_failing{"))
        assert daemon.get("/healthz")[0] == 200
        assert daemon.get("/readyz")[0] == 200, (
            "ready: it answers webhooks and retries once the apiserver is back"
        )
    finally:
        platform_command("up")
    back = time.monotonic()
    before = identities(kube, namespace)
    assert 5 < len(before) < SERVICES, "the first run was cut short"
    # a delete while the daemon's watches are still reconnecting must not be missed
    victim = sorted(before)[0]
    client.AppsV1Api(kube).delete_namespaced_deployment(victim, namespace)
    eventually(
        lambda: all(line.endswith(" 0.0") for line in metric(daemon, "mico_reconciler_watch_failing{")),
        60,
        "the watches to recover",
    )
    recovery("apiserver: the watches resumed after the apiserver was back", time.monotonic() - back)
    started = len(daemon.runs())
    assert daemon.post("/webhook/generic", b"", TRIGGER) == 202
    eventually(
        lambda: len(daemon.runs()) > started and daemon.runs()[0]["finished"], 60, "a run after the restart"
    )
    latest = daemon.runs()[0]
    assert latest["outcome"] == "succeeded", latest["error"]
    recovery(
        "apiserver: converged after it was back (webhook once the watches resumed)", time.monotonic() - back
    )
    after = identities(kube, namespace)
    created = {a["name"] for a in latest["actions"] if a["kind"] == "Deployment"}
    assert created == (set(after) - set(before)) | {victim}, "the rest, and the deleted one"
    assert len(after) == SERVICES, "no object lost"
    assert {n: after[n] for n in before if n != victim} == {n: u for n, u in before.items() if n != victim}, (
        "the objects applied before the stop were kept, not made again"
    )
    assert len(client.CoreV1Api(kube).list_namespaced_service(namespace).items) == SERVICES
