"""etcd stopped under the kube-apiserver, then started again."""

from __future__ import annotations

import time
from collections.abc import Callable

from kubernetes import client

from tests.faults.test_apiserver import TRIGGER, metric, platform_command
from tests.integration.conftest import ConfigRepo, Daemon, deployments
from tests.integration.test_daemon import _many_services
from tests.integration.test_platform import eventually

SERVICES = 20


def test_etcd_restarted_under_the_apiserver_fails_runs_then_converges(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    recovery: Callable[[str, float], None],
) -> None:
    config_repo.push(_many_services(SERVICES))
    daemon = start_daemon("daemon.db", "--no-leader-election")
    eventually(lambda: daemon.runs()[0]["outcome"] == "succeeded", 120, "the first run")
    try:
        platform_command("stop", "etcd")
        revision = config_repo.push(_many_services(SERVICES + 1), "one more")
        assert daemon.post("/webhook/generic", b"", TRIGGER) == 202
        failed = eventually(
            lambda: next((r for r in daemon.runs() if r["revision"] == revision and r["finished"]), None),
            120,
            "a run while etcd is down",
        )
        assert failed["outcome"] == "failed"
        # the apiserver still serves its watch cache; the writes it cannot store fail, each with why
        assert failed["error"].startswith("2 objects could not be applied; 2 of them: "), failed["error"]
        assert all("failed:" in a["reason"] for a in failed["actions"] if a["outcome"] == "failed")
        assert daemon.get("/healthz")[0] == 200
    finally:
        platform_command("up")
    back = time.monotonic()
    eventually(
        lambda: all(line.endswith(" 0.0") for line in metric(daemon, "mico_reconciler_watch_failing{")),
        90,
        "the watches to recover",
    )
    assert daemon.post("/webhook/generic", b"", TRIGGER) == 202
    eventually(
        lambda: daemon.runs()[0]["revision"] == revision and daemon.runs()[0]["outcome"] == "succeeded",
        90,
        "the run after etcd is back",
    )
    recovery(
        "etcd: the commit applied after etcd was back (webhook once the watches resumed)",
        time.monotonic() - back,
    )
    names = list(deployments(kube, namespace))
    assert len(names) == len(set(names)) == SERVICES + 1
