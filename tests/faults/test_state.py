"""The state database stops taking writes under a running daemon: its filesystem forced read-only,
or full to the last byte. The reconcile loop goes on, the failure is counted and shown, and once
the disk takes writes again runs are recorded again in an intact file.

Needs root (mount, losetup). The read-only case uses ext4 on a loop device whose image lives on
a tmpfs: `mount -o remount,ro` is refused (EBUSY) while a process holds a file open for writing,
as the daemon does its database, so the read-only filesystem a running daemon can meet is one
the kernel forces read-only after an error (`errors=remount-ro`, triggered through ext4's
`trigger_fs_error`). The kernel keeps that one read-only until it is unmounted, so recovery is
the one a real volume gets: the daemon stopped, the filesystem checked and mounted again, the
daemon started on the same file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.faults.test_apiserver import metric
from tests.helpers import example_data
from tests.integration.conftest import ConfigRepo, Daemon, backend, deployments
from tests.integration.test_builds import JOB, jobs
from tests.integration.test_daemon import _many_services
from tests.integration.test_platform import eventually

INTERVAL = 2
FAILED_TO_WRITE = "the state database cannot be written"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs and a loop device: needs root")


def sh(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    sh("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)
        if os.path.ismount(path):  # still held open by something: detach it, never leave it
            subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def ext4(image: Path, path: Path) -> Iterator[str]:
    """ext4 (no journal: the error makes it read-only, no journal to replay) on a loop device,
    mounted at `path` with errors=remount-ro; yields the loop device's name (loopN)."""
    sh("truncate", "-s", "24M", str(image))
    sh("mkfs.ext4", "-q", "-F", "-O", "^has_journal", str(image))
    device = sh("losetup", "-f", "--show", str(image))
    path.mkdir()
    try:
        sh("mount", "-o", "errors=remount-ro", device, str(path))
        yield device
    finally:
        if os.path.ismount(path):
            subprocess.run(["umount", str(path)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)


def fill(path: Path) -> None:
    """Fills the filesystem of `path` to the last byte."""
    with path.open("wb", buffering=0) as filler:
        for chunk in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):  # ENOSPC: the next, smaller chunk
                while True:
                    filler.write(b"\0" * chunk)
    assert os.statvfs(path.parent).f_bavail == 0


def counter(daemon: Daemon, name: str) -> float:
    return sum(float(line.split()[-1]) for line in metric(daemon, name))


def health(daemon: Daemon) -> dict[str, Any]:
    status, body = daemon.get("/api/health")
    assert status == 200
    return dict(json.loads(body)["history"])


def failures_logged(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [entry for entry in lines if entry["message"].startswith(FAILED_TO_WRITE)]


def integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return [tuple(r) for r in db.execute(query)]
    finally:
        db.close()


def with_example(count: int) -> dict[str, Any]:
    """`count` small services, and the example: a service built from source, Kafka topics."""
    data, example = _many_services(count), example_data()
    data["services"] += example["services"]
    data["applications"] += example["applications"]
    return data


def summary(runs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a run recorded, without the count of its repeats (later runs may add to it)."""
    return [(r["id"], r["trigger"], r["revision"], r["outcome"], r["error"]) for r in runs]


def first_of(runs: list[dict[str, Any]], revision: str) -> dict[str, Any]:
    return min((r for r in runs if r["revision"] == revision), key=lambda r: int(r["id"]))


def managed(kube: client.ApiClient, namespace: str) -> set[tuple[str, str]]:
    selector = "app.kubernetes.io/managed-by=mico-reconciler"
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    return {
        *(
            ("Deployment", d.metadata.name)
            for d in apps.list_namespaced_deployment(namespace, label_selector=selector).items
        ),
        *(
            ("Service", s.metadata.name)
            for s in core.list_namespaced_service(namespace, label_selector=selector).items
        ),
    }


def stop(daemon: Daemon) -> None:
    if daemon.process.poll() is None:
        daemon.process.send_signal(signal.SIGTERM)
        daemon.process.wait(timeout=60)


def assert_shown(daemon: Daemon, kind: str, errors_before: float) -> None:
    """Counted, and said by /api/health and the probes (both stay 200: see the README)."""
    name = f'mico_reconciler_history_write_errors_total{{kind="{kind}"}}'
    counted = counter(daemon, name)
    assert counted > errors_before
    eventually(lambda: counter(daemon, name) > counted, 30, "the count to grow with each run")
    assert metric(daemon, "mico_reconciler_history_write_failing ") == [
        "mico_reconciler_history_write_failing 1.0"
    ]
    assert counter(daemon, "mico_reconciler_history_unrecorded_runs_total") >= 1
    state = health(daemon)
    assert (state["writable"], state["failing"]) == (False, kind), state
    for probe in ("/healthz", "/readyz"):
        status, body = daemon.get(probe)
        assert status == 200, f"{probe}: a restart would not give the disk space back"
        assert b"warning: runs are not recorded" in body, body


def test_a_full_disk_leaves_the_loop_running_and_nothing_lost_once_space_returns(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    recovery: Callable[[str, float], None],
) -> None:
    config_repo.push(_many_services(3))
    with tmpfs(tmp_path / "state", "8m") as disk:
        state = disk / "daemon.db"
        daemon = start_daemon(
            "full.db", "--no-leader-election", "--interval", str(INTERVAL), "--state-db", str(state)
        )
        try:
            eventually(lambda: daemon.runs()[0]["outcome"] == "succeeded", 60, "the first run")
            fill(disk / "filler")
            eventually(lambda: not health(daemon)["writable"], 30, "a write to fail")
            recorded_before = summary(daemon.runs())  # from now on, nothing can be added

            # a commit with a build and Kafka topics lands while nothing can be recorded
            revision = config_repo.push(with_example(3), "the example, while the disk is full")
            pushed = time.monotonic()
            eventually(lambda: len(deployments(kube, namespace)) == 8, 120, "the commit in the cluster")
            landed = time.monotonic() - pushed
            image = backend(kube, namespace).spec.template.spec.containers[0].image
            assert "@sha256:" in image, "the build's digest was used although its record was not written"
            job = jobs(kube, namespace)[JOB]
            assert_shown(daemon, "disk_full", 0)
            assert summary(daemon.runs()) == recorded_before, "history is read as it was; nothing added"
            assert len(failures_logged(tmp_path / "full.db.log")) == 1, "logged once, not once a run"

            errors = counter(daemon, "mico_reconciler_history_write_errors_total")
            unrecorded = counter(daemon, "mico_reconciler_history_unrecorded_runs_total")
            (disk / "filler").unlink()
            freed = time.monotonic()
            eventually(
                lambda: any(r["revision"] == revision for r in daemon.runs()), 30, "a run recorded again"
            )
            recovery("full disk: the commit (a build, topics) applied after the push", landed)
            recovery(
                f"full disk: recorded again after space returned (--interval {INTERVAL})",
                time.monotonic() - freed,
            )
            print(f"\nfull disk: {errors:.0f} failed writes, {unrecorded:.0f} runs unrecorded")
            assert health(daemon)["writable"] is True
            assert metric(daemon, "mico_reconciler_history_write_failing ") == [
                "mico_reconciler_history_write_failing 0.0"
            ]
            assert integrity(state) == "ok"
            runs = summary(daemon.runs())
            assert runs[len(runs) - len(recorded_before) :] == recorded_before, "the runs before are intact"
            # what the runs decided while the disk was full was written once space returned
            assert rows(state, "SELECT outcome, digest FROM builds") == [("succeeded", image.split("@")[1])]
            assert ("realworld@v1.0.0", revision) in rows(state, "SELECT app, revision FROM rollouts")
            assert f"{namespace}.DeadLetter" in {name for (name,) in rows(state, "SELECT name FROM topics")}
            assert {(kind, name) for kind, name in rows(state, "SELECT kind, name FROM applied")} == managed(
                kube, namespace
            )
            # and the next runs act on it: no build again, nothing applied again
            latest = config_repo.push(with_example(4), "one more service")
            eventually(
                lambda: any(r["revision"] == latest and r["outcome"] == "succeeded" for r in daemon.runs()),
                60,
                "the next commit, recorded",
            )
            last = first_of(daemon.runs(), latest)
            assert last["actions"], "the new service"
            assert all(a["name"].startswith("s003") for a in last["actions"]), last["actions"]
            assert last["builds"] == []
            assert list(jobs(kube, namespace)) == [JOB]
            assert jobs(kube, namespace)[JOB].metadata.uid == job.metadata.uid, "no second build Job"
            assert len(deployments(kube, namespace)) == 9
        finally:
            stop(daemon)
            (disk / "filler").unlink(missing_ok=True)


def test_a_filesystem_forced_read_only_leaves_the_loop_running_and_the_file_intact(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    recovery: Callable[[str, float], None],
) -> None:
    config_repo.push(_many_services(3))
    with (
        tmpfs(tmp_path / "images", "32m") as images,
        ext4(images / "state.img", tmp_path / "state") as device,
    ):
        state = tmp_path / "state" / "daemon.db"
        options = ("--no-leader-election", "--interval", str(INTERVAL), "--state-db", str(state))
        daemon = restarted = start_daemon("ro.db", *options)
        try:
            eventually(lambda: daemon.runs()[0]["outcome"] == "succeeded", 60, "the first run")
            Path(f"/sys/fs/ext4/{Path(device).name}/trigger_fs_error").write_text("fault test\n")
            eventually(lambda: not health(daemon)["writable"], 30, "a write to fail")
            recorded_before = summary(daemon.runs())

            revision = config_repo.push(_many_services(5), "two more services, while read-only")
            pushed = time.monotonic()
            eventually(lambda: len(deployments(kube, namespace)) == 5, 60, "the commit in the cluster")
            landed = time.monotonic() - pushed
            assert_shown(daemon, "read_only", 0)
            assert summary(daemon.runs()) == recorded_before
            assert len(failures_logged(tmp_path / "ro.db.log")) == 1, "logged once, not once a run"
            assert daemon.process.poll() is None, "alive"

            # the kernel keeps an errored ext4 read-only until it is unmounted: the recovery a
            # real volume gets is a restart on the repaired filesystem
            errors = counter(daemon, "mico_reconciler_history_write_errors_total")
            stopping = time.monotonic()
            stop(daemon)
            stopped = time.monotonic() - stopping
            assert daemon.process.returncode == 0
            sh("umount", str(tmp_path / "state"))
            subprocess.run(["e2fsck", "-fy", device], check=False, capture_output=True)
            sh("mount", "-o", "errors=remount-ro", device, str(tmp_path / "state"))
            assert integrity(state) == "ok"
            restarting = time.monotonic()
            restarted = start_daemon("ro-restarted.db", *options)
            eventually(
                lambda: any(r["revision"] == revision for r in restarted.runs()), 60, "a run recorded again"
            )
            recovery("read-only filesystem: the commit applied after the push", landed)
            recovery("read-only filesystem: SIGTERM to exit", stopped)
            recovery(
                "read-only filesystem: recorded again after the restart on the checked volume",
                time.monotonic() - restarting,
            )
            print(f"\nread-only: {errors:.0f} failed writes")
            runs = summary(restarted.runs())
            assert runs[len(runs) - len(recorded_before) :] == recorded_before, "the runs before are intact"
            after = first_of(restarted.runs(), revision)
            assert after["outcome"] == "succeeded"
            assert after["actions"] == [], "the commit was applied while read-only: nothing to redo"
            assert health(restarted)["writable"] is True
            names = list(deployments(kube, namespace))
            assert len(names) == len(set(names)) == 5
            stop(restarted)
            assert integrity(state) == "ok"
        finally:
            stop(restarted)
            stop(daemon)
