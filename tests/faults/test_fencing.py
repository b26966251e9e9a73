"""Two replicas under leader election; the leader frozen (SIGSTOP) past its lease in the middle
of a run. The follower takes over; the thawed leader must not write what it had planned."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from reconciler.engine import Engine, RunOutcome
from tests.integration.conftest import SECRET, ConfigRepo, Daemon, deployments
from tests.integration.test_builds import jobs
from tests.integration.test_daemon import _many_services
from tests.integration.test_platform import eventually

SERVICES = 20
TRIGGER = {"Authorization": f"Bearer {SECRET.decode()}"}


def config(replicas: int, *, hanging_build: bool) -> dict[str, Any]:
    data = _many_services(SERVICES)
    for app in data["applications"]:
        app["services"][0]["replicas"] = replicas
    if hanging_build:  # keeps the leader's run waiting for the build Job (KWOK never ends it)
        data["services"].append(
            {
                "shortName": "slow",
                "version": "v1.0.0",
                "name": "slow",
                "kafkaEnabled": True,
                "source": {"git": "https://git.example/team/slow-hangs.git", "revision": "v1.0.0"},
            }
        )
        data["applications"].append(
            {
                "shortName": "slow",
                "version": "v1.0.0",
                "name": "slow",
                "services": [{"shortName": "slow", "version": "v1.0.0"}],
            }
        )
    return data


def replicas(kube: client.ApiClient, namespace: str) -> set[int]:
    return {d.spec.replicas for d in deployments(kube, namespace).values()}


def test_a_leader_frozen_past_its_lease_writes_nothing_when_it_thaws(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    recovery: Callable[[str, float], None],
) -> None:
    config_repo.push(config(1, hanging_build=False))
    options = ("--build-deadline-seconds", "40", "--interval", "3600")
    leader = start_daemon("leader.db", *options)
    follower = start_daemon("follower.db", *options, wait_for_run=False)
    assert replicas(kube, namespace) == {1}
    config_repo.push(config(2, hanging_build=True), "scale to 2, and an application whose build hangs")
    assert leader.post("/webhook/generic", b"", TRIGGER) == 202
    eventually(lambda: replicas(kube, namespace) == {2}, 60, "the leader's first pass")
    eventually(lambda: "build-slow-v1-0-0" in jobs(kube, namespace), 30, "the leader to wait for its build")
    os.kill(leader.process.pid, signal.SIGSTOP)  # mid-run: its second pass still wants 2 replicas
    frozen = time.monotonic()
    try:
        revision = config_repo.push(config(3, hanging_build=False), "scale to 3")
        # the lease lasts 15 s after the frozen leader's last renewal; then the follower leads
        eventually(
            lambda: any(r["revision"] == revision and r["finished"] for r in follower.runs()),
            90,
            "the follower to lead and apply the new commit",
        )
        recovery(
            "leader frozen: the follower applied the new commit after the freeze", time.monotonic() - frozen
        )
        assert replicas(kube, namespace) == {3}
    finally:
        os.kill(leader.process.pid, signal.SIGCONT)
    # the thawed leader resumes its run; it would set 2 replicas again if it wrote
    deadline = time.monotonic() + 50  # its build Job's deadline (40 s) ends the wait at the latest
    while time.monotonic() < deadline and leader.process.poll() is None:
        assert replicas(kube, namespace) == {3}, "the thawed leader wrote"
        time.sleep(0.5)
    assert replicas(kube, namespace) == {3}
    assert leader.process.poll() == 1, "a leader that lost its lease exits to re-join as a follower"


def test_a_fenced_engine_writes_nothing(
    make_engine: Callable[..., Engine], config_repo: ConfigRepo, kube: client.ApiClient, namespace: str
) -> None:
    """The fence itself, without the race: the thawed leader above usually exits first (its renew
    loop sees the lease lost at once), but whatever runs before that must not write."""
    config_repo.push(config(1, hanging_build=False))
    engine = make_engine()
    assert engine.run("test").outcome == RunOutcome.SUCCEEDED
    config_repo.push(config(2, hanging_build=False))
    engine.fence = lambda: False
    result = engine.run("test")
    assert result.outcome == RunOutcome.FAILED
    assert result.error == "not sure to hold the leader lease any more: writing nothing"
    assert replicas(kube, namespace) == {1}
    engine.fence = lambda: True
    assert engine.run("test").outcome == RunOutcome.SUCCEEDED
    assert replicas(kube, namespace) == {2}
