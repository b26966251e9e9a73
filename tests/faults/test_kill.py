"""`kill -9` of the daemon while a build is in flight, then a restart on the same state."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable

from kubernetes import client

from tests.helpers import example_data
from tests.integration.conftest import ConfigRepo, Daemon, deployments
from tests.integration.test_builds import JOB, jobs
from tests.integration.test_platform import eventually


def test_kill_9_with_a_build_in_flight_adopts_it_and_duplicates_nothing(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
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
    restarted = start_daemon("kill.db", "--no-leader-election", wait_for_run=False)
    eventually(lambda: restarted.runs() and restarted.runs()[0]["outcome"] == "succeeded", 120, "a run")
    outcomes = [r["outcome"] for r in restarted.runs()]
    assert outcomes[-1] == "interrupted", outcomes
    builds = [b for r in restarted.runs() for b in r["builds"]]
    assert sorted(b["outcome"] for b in builds) == ["interrupted", "succeeded"]
    (now,) = jobs(kube, namespace).values()
    assert now.metadata.uid != job.metadata.uid, "the stale build was replaced, not kept beside"
    names = list(deployments(kube, namespace))
    assert len(names) == len(set(names)) == 5


def test_kill_9_with_the_same_build_in_flight_adopts_its_job(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    data = example_data()
    data["services"][0]["source"]["git"] = "https://git.example/team/backend-slow-hangs.git"
    config_repo.push(data)
    options = ("--no-leader-election", "--build-deadline-seconds", "8")
    daemon = start_daemon("kill.db", *options, wait_for_run=False)
    eventually(lambda: JOB in jobs(kube, namespace), 60, "the build Job")
    job = jobs(kube, namespace)[JOB]
    os.kill(daemon.process.pid, signal.SIGKILL)  # the Job runs on
    daemon.process.wait(timeout=10)
    restarted = start_daemon("kill.db", *options, wait_for_run=False)
    eventually(lambda: restarted.runs() and restarted.runs()[0]["finished"], 120, "the run after the restart")
    run = restarted.runs()[0]
    assert [(b["outcome"], b["reason"].split(":")[0]) for b in run["builds"]] == [
        ("failed", "DeadlineExceeded")
    ]
    (now,) = jobs(kube, namespace).values()
    assert now.metadata.uid == job.metadata.uid, "the Job of the same source was adopted, not started again"
