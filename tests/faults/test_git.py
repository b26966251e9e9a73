"""The config repository's git server down, then back."""

from __future__ import annotations

import time
from collections.abc import Callable

from kubernetes import client

from tests.faults.test_apiserver import metric, platform_command
from tests.integration.conftest import ConfigRepo, Daemon, deployments, versions
from tests.integration.test_daemon import _many_services
from tests.integration.test_platform import eventually

INTERVAL = 2


def test_git_down_keeps_the_applied_state_and_the_next_commit_lands_after_recovery(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    recovery: Callable[[str, float], None],
) -> None:
    config_repo.push(_many_services(3))
    daemon = start_daemon("daemon.db", "--no-leader-election", "--interval", str(INTERVAL))
    eventually(lambda: daemon.runs()[0]["outcome"] == "succeeded", 60, "the first run")
    applied = versions(kube, namespace)
    try:
        platform_command("stop", "git-daemon")
        first = eventually(
            lambda: next((r for r in daemon.runs() if r["finished"] and r["outcome"] == "failed"), None),
            60,
            "a run while git is down",
        )
        assert first["error"].startswith("fetching 'main' from"), first["error"]
        assert first["actions"] == [], "nothing applied without the config"
        # each further failure is the same one: counted on that run, not a row of its own
        eventually(
            lambda: next(r for r in daemon.runs() if r["id"] == first["id"])["repeats"] >= 1,
            60,
            "the failure to repeat",
        )
        assert [r["outcome"] for r in daemon.runs()[:2]] == ["failed", "succeeded"]
        errors = metric(daemon, "mico_reconciler_git_fetch_errors_total ")
        assert errors, "the fetch error counter is exported"
        assert float(errors[0].split()[-1]) >= 2
        assert versions(kube, namespace) == applied, "the last applied state is kept untouched"
    finally:
        platform_command("up")
    revision = config_repo.push(_many_services(4), "one more service")
    pushed = time.monotonic()
    eventually(
        lambda: any(r["revision"] == revision and r["outcome"] == "succeeded" for r in daemon.runs()),
        INTERVAL + 30,
        "the next commit after recovery",
    )
    recovery(
        f"git down: the commit pushed after the restart applied (--interval {INTERVAL})",
        time.monotonic() - pushed,
    )
    assert len(deployments(kube, namespace)) == 4
