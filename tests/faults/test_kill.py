"""SIGTERM and `kill -9` of the daemon while a build is in flight, then a restart on the same
state: no Job, topic or object made twice, and the interrupted run recorded."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from tests.faults.test_git_faults import log_lines
from tests.helpers import example_data
from tests.integration.conftest import ConfigRepo, Daemon, Platform, deployments, identities
from tests.integration.test_builds import JOB, jobs
from tests.integration.test_platform import eventually
from tests.integration.test_topics import broker_topics, messaging

HANGING = "https://git.example/team/backend-slow-hangs.git"
OPTIONS = ("--no-leader-election", "--build-deadline-seconds", "20")


def test_kill_9_with_a_build_in_flight_adopts_it_and_duplicates_nothing(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    recovery: Callable[[str, float], None],
) -> None:
    data = example_data()
    data["services"][0]["source"]["git"] = "https://git.example/team/backend-slow-hangs.git"
    config_repo.push(data)
    daemon = start_daemon(
        "kill.db", "--no-leader-election", "--build-deadline-seconds", "600", wait_for_run=False
    )
    eventually(lambda: JOB in jobs(kube, namespace), 60, "the build Job")
    job = jobs(kube, namespace)[JOB]
    os.kill(daemon.process.pid, signal.SIGKILL)  # while it follows the build
    daemon.process.wait(timeout=10)
    with sqlite3.connect(daemon.state_db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT outcome FROM builds").fetchall() == [("running",)]
    # the same version now builds from a source that finishes: the old Job is not adopted
    # (another source), replaced once, never duplicated
    data["services"][0]["source"]["git"] = "https://git.example/team/backend.git"
    config_repo.push(data)
    restarting = time.monotonic()
    restarted = start_daemon("kill.db", "--no-leader-election", wait_for_run=False)
    eventually(lambda: restarted.runs() and restarted.runs()[0]["outcome"] == "succeeded", 120, "a run")
    recovery(
        "kill -9: converged after the restart (the stale build replaced and built)",
        time.monotonic() - restarting,
    )
    outcomes = [r["outcome"] for r in restarted.runs()]
    assert outcomes[-1] == "interrupted", outcomes
    builds = [b for r in restarted.runs() for b in r["builds"]]
    assert sorted(b["outcome"] for b in builds) == ["interrupted", "succeeded"]
    (now,) = jobs(kube, namespace).values()
    assert now.metadata.uid != job.metadata.uid, "the stale build was replaced, not kept beside"
    names = list(deployments(kube, namespace))
    assert len(names) == len(set(names)) == 5


def following(daemon: Daemon) -> bool:
    """Whether the daemon logged the start of its build (it follows the Job from then on)."""
    lines = log_lines(daemon.state_db.parent, daemon.state_db.name)
    return any(line.get("message") == "build started" for line in lines)


def a_build_in_flight_with_topics_to_come(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    kafka_prefix: str,
) -> tuple[Daemon, Any, dict[str, tuple[str, int]]]:
    """The realworld application waits for a build that hangs (its Job fails at the 20 s
    deadline); the messaging application is applied, and its topics come after the builds."""
    data = messaging(kafka_prefix)
    data["services"][0]["source"]["git"] = HANGING
    config_repo.push(data)
    daemon = start_daemon("kill.db", *OPTIONS, wait_for_run=False)
    eventually(lambda: JOB in jobs(kube, namespace), 60, "the build Job")
    assert deployments(kube, namespace), "the messaging application is applied before the builds start"
    eventually(lambda: following(daemon), 30, "the daemon to follow the build")
    return daemon, jobs(kube, namespace)[JOB], identities(kube, namespace)


def the_restart_adopts_the_job_and_duplicates_nothing(
    start_daemon: Callable[..., Daemon],
    kube: client.ApiClient,
    namespace: str,
    platform: Platform,
    job: Any,
    before: dict[str, tuple[str, int]],
) -> dict[str, Any]:
    restarted = start_daemon("kill.db", *OPTIONS, wait_for_run=False)
    eventually(
        lambda: restarted.runs() and restarted.runs()[0]["builds"] and restarted.runs()[0]["finished"],
        120,
        "the run after the restart",
    )
    run = restarted.runs()[0]
    assert [(b["outcome"], b["reason"].split(":")[0]) for b in run["builds"]] == [
        ("failed", "DeadlineExceeded")
    ]
    (now,) = jobs(kube, namespace).values()
    assert now.metadata.uid == job.metadata.uid, "the Job of the same source was adopted, not started again"
    created = {t["name"]: t["state"] for t in run["topics"]}
    assert set(created.values()) == {"created"}, created
    assert all(name in broker_topics(platform) for name in created)
    assert identities(kube, namespace) == before, "the applied objects were neither made again nor changed"
    return run


def test_kill_9_with_a_build_in_flight_and_topics_to_come_duplicates_nothing(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    platform: Platform,
    kafka_prefix: str,
) -> None:
    daemon, job, before = a_build_in_flight_with_topics_to_come(
        start_daemon, config_repo, kube, namespace, kafka_prefix
    )
    os.kill(daemon.process.pid, signal.SIGKILL)  # the Job runs on
    daemon.process.wait(timeout=10)
    run = the_restart_adopts_the_job_and_duplicates_nothing(
        start_daemon, kube, namespace, platform, job, before
    )
    with sqlite3.connect(daemon.state_db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        first = db.execute("SELECT outcome FROM runs ORDER BY id LIMIT 1").fetchone()
    assert first == ("interrupted",), "the killed run is recorded as interrupted at the restart"
    assert run["outcome"] == "failed"


def test_sigterm_while_following_a_build_exits_at_once_and_the_restart_adopts_the_job(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    platform: Platform,
    kafka_prefix: str,
    recovery: Callable[[str, float], None],
) -> None:
    daemon, job, before = a_build_in_flight_with_topics_to_come(
        start_daemon, config_repo, kube, namespace, kafka_prefix
    )
    signalled = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    # without the interrupt it would follow the build to its deadline, past a grace period
    assert daemon.process.wait(timeout=5) == 0
    recovery("SIGTERM while following a build: exit 0", time.monotonic() - signalled)
    with sqlite3.connect(daemon.state_db) as db:
        assert db.execute("SELECT outcome, error FROM runs").fetchall() == [
            (
                "interrupted",
                "stopped while following 1 builds; their Jobs run on for the next start to adopt",
            )
        ]
        assert db.execute("SELECT outcome FROM builds").fetchall() == [("interrupted",)]
    assert jobs(kube, namespace)[JOB].metadata.uid == job.metadata.uid, "the Job is left running"
    the_restart_adopts_the_job_and_duplicates_nothing(start_daemon, kube, namespace, platform, job, before)
