"""The config repository misbehaving under a running daemon: a git server slower than
`--git-timeout`, a force-push that removes commits, a deleted branch, and a damaged clone in the
work directory. Each case asserts from outside: history (/api/history), metrics, the daemon's
log, its processes and open files, and the cluster's objects."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.faults.test_apiserver import metric
from tests.helpers import alive
from tests.integration.conftest import ConfigRepo, Daemon, deployments, versions
from tests.integration.test_daemon import _many_services
from tests.integration.test_platform import eventually

INTERVAL = 2
TIMEOUT = 2
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]

# git runs a proxy command for git:// URLs (GIT_PROXY_COMMAND) as its child, talking to the
# server through the command's stdin and stdout. This one relays to the platform's git daemon and,
# while its flag file exists, passes on what the server sends 8 bytes a second: never idle, only
# slower than any timeout (the ref advertisement alone takes half a minute). Like a helper blocked
# on the network, it does not notice when git is gone: only killing it ends it early.
RELAY = """\
import contextlib, os, socket, sys, threading, time

server = socket.create_connection((sys.argv[1], int(sys.argv[2])))


def upstream():
    while data := os.read(0, 65536):
        server.sendall(data)
    server.shutdown(socket.SHUT_WR)


threading.Thread(target=upstream, daemon=True).start()
while data := server.recv(65536):
    while data:
        if os.path.exists(os.environ["MICO_TEST_SLOW_FLAG"]):
            chunk, data = data[:8], data[8:]
            time.sleep(1)
        else:
            chunk, data = data, b""
        with contextlib.suppress(OSError):
            os.write(1, chunk)
"""


# -- looking at the daemon from outside ---------------------------------------------------------


def log_lines(tmp_path: Path, state: str = "daemon.db") -> list[dict[str, Any]]:
    lines = []
    for line in (tmp_path / f"{state}.log").read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def messages(tmp_path: Path, text: str) -> list[dict[str, Any]]:
    return [line for line in log_lines(tmp_path) if text in str(line.get("message", ""))]


def open_files(daemon: Daemon) -> int:
    return len(os.listdir(f"/proc/{daemon.process.pid}/fd"))


def processes_mentioning(*markers: str, besides: int) -> dict[int, str]:
    """Processes but `besides` whose command line or environment names one of `markers` (git sets
    GIT_DIR for what it starts), by pid."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == besides:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline, open(f"/proc/{entry}/environ", "rb") as env:
                argv, environ = cmdline.read(), env.read()
        except OSError:  # gone meanwhile
            continue
        if any(m.encode() in argv or m.encode() in environ for m in markers):
            found[int(entry)] = argv.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def runs_since(daemon: Daemon, run_id: int) -> list[dict[str, Any]]:
    return [r for r in daemon.runs() if r["id"] >= run_id]


def first_failure(daemon: Daemon) -> dict[str, Any]:
    return eventually(
        lambda: next((r for r in daemon.runs() if r["finished"] and r["outcome"] == "failed"), None),
        60,
        "a failed run",
    )


def landed(daemon: Daemon, revision: str) -> dict[str, Any] | None:
    return next((r for r in daemon.runs() if r["revision"] == revision and r["outcome"] == "succeeded"), None)


def fetch_errors(daemon: Daemon) -> float:
    (line,) = metric(daemon, "mico_reconciler_git_fetch_errors_total ")
    return float(line.split()[-1])


def runs_total(daemon: Daemon) -> float:
    return sum(float(line.split()[-1]) for line in metric(daemon, "mico_reconciler_runs_total{"))


def git(work: Path, *args: str) -> str:
    return subprocess.run(
        [*GIT, "-C", str(work), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


# -- a git server slower than --git-timeout -----------------------------------------------------


@pytest.fixture
def slow_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """While this file exists, the daemon's git server answers at 8 bytes a second. Set in the
    environment the daemon is started with, so that only its git goes through the relay."""
    relay = tmp_path / "relay.py"
    relay.write_text(f"#!{sys.executable}\n{RELAY}")
    relay.chmod(0o755)
    flag = tmp_path / "slow"
    monkeypatch.setenv("GIT_PROXY_COMMAND", str(relay))
    monkeypatch.setenv("MICO_TEST_SLOW_FLAG", str(flag))
    yield flag
    flag.unlink(missing_ok=True)


def test_a_git_server_slower_than_the_timeout_fails_each_run_clearly_and_kills_git(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    slow_flag: Path,
    monkeypatch: pytest.MonkeyPatch,
    recovery: Callable[[str, float], None],
) -> None:
    config_repo.push(_many_services(3))
    daemon = start_daemon(
        "daemon.db", "--no-leader-election", "--interval", str(INTERVAL), "--git-timeout", str(TIMEOUT)
    )
    monkeypatch.delenv("GIT_PROXY_COMMAND")  # the test's own pushes go straight to the server
    eventually(lambda: daemon.runs()[0]["outcome"] == "succeeded", 60, "the first run")
    applied = versions(kube, namespace)
    files_before = open_files(daemon)
    markers = (str(tmp_path / "daemon.db-repo"), str(tmp_path / "relay.py"))

    slow_flag.touch()
    first = first_failure(daemon)
    assert first["error"] == (
        f"fetching 'main' from {config_repo.url} timed out after {TIMEOUT}s (--git-timeout)"
    ), first["error"]
    assert first["actions"] == [], "nothing applied without the config"
    files_at_first = open_files(daemon)
    errors_at_first = fetch_errors(daemon)

    # several runs time out meanwhile; every git process (and the relay it started) seen must be
    # gone within the timeout, never left behind
    seen: dict[int, str] = {}
    watch_until = time.monotonic() + 5 * (TIMEOUT + INTERVAL)
    while time.monotonic() < watch_until:
        for pid, command in processes_mentioning(*markers, besides=daemon.process.pid).items():
            seen.setdefault(pid, command)
        time.sleep(0.2)
    assert any(" fetch " in command for command in seen.values()), f"no git fetch seen: {seen}"
    assert any("relay.py" in command for command in seen.values()), f"no relay seen: {seen}"
    time.sleep(TIMEOUT + 3)
    left = {pid: command for pid, command in seen.items() if alive(pid)}
    assert not left, f"git processes outlived --git-timeout: {left}"
    print(
        f"\n{len(seen)} git and relay processes seen while slow, none left; open files "
        f"{files_before} before, {files_at_first} at the first timeout, {open_files(daemon)} now"
    )

    assert fetch_errors(daemon) - errors_at_first >= 3, "each timed-out fetch is counted"
    growth = open_files(daemon) - files_at_first
    assert growth <= 3, f"open files grew by {growth} over the failing runs"
    assert versions(kube, namespace) == applied, "the last applied state is kept untouched"
    failed = [r for r in runs_since(daemon, first["id"]) if r["finished"]]
    assert [r["error"] for r in failed] == [first["error"]] * len(failed), "one error, always the same"
    assert failed[-1]["repeats"] >= 3, "the same failure again is counted on its run, not a new row"
    assert not messages(tmp_path, "is damaged"), "a slow server is not a damaged clone"

    slow_flag.unlink()
    recovered = time.monotonic()
    revision = config_repo.push(_many_services(4), "one more service")
    run = eventually(lambda: landed(daemon, revision), INTERVAL + TIMEOUT + 30, "the next commit")
    recovery(
        "git slower than --git-timeout: the next commit landed after the server was fast",
        time.monotonic() - recovered,
    )
    assert run["outcome"] == "succeeded"
    assert len(deployments(kube, namespace)) == 4
    assert open_files(daemon) - files_before <= 3, "no file descriptor leaked"


# -- a force-push that removes commits ----------------------------------------------------------


def with_source(data: dict[str, Any], url: str) -> dict[str, Any]:
    """`data` with the first service built from `url` (a KWOK build; `-fails.git` fails)."""
    changed = copy.deepcopy(data)
    service = changed["services"][0]
    del service["image"]
    service["source"] = {"git": url, "revision": "v1.0.0"}
    return changed


def workloads(kube: client.ApiClient, namespace: str, prefix: str) -> dict[str, Any]:
    """`versions` of the Deployments and Services named `prefix`... (build Jobs come and go)."""
    return {
        k: v
        for k, v in versions(kube, namespace).items()
        if k.split("/")[1].startswith(prefix) and not k.startswith("V1Job/")
    }


def test_a_force_push_removing_commits_is_followed_and_held_applications_keep_their_objects(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    recovery: Callable[[str, float], None],
) -> None:
    """c1 <- c2 on the server, then a new history c3 <- c4 that shares no commit with it. s000's
    application rolled out at c1 and waits for a failing build since c2: it is held at c1, which
    the force-push makes unreachable on the server."""
    c1 = config_repo.push(with_source(_many_services(3), "https://git.example/team/s000.git"))
    daemon = start_daemon("daemon.db", "--no-leader-election", "--interval", str(INTERVAL))
    eventually(lambda: landed(daemon, c1), 120, "the first commit with its build")
    held_objects = workloads(kube, namespace, "s000")
    assert held_objects, "s000's objects"

    c2 = config_repo.push(with_source(_many_services(4), "https://git.example/team/s000-fails.git"))
    eventually(lambda: next((r for r in daemon.runs() if r["revision"] == c2), None), 60, "c2")
    eventually(lambda: len(deployments(kube, namespace)) == 4, 60, "s003 from c2")

    work = config_repo.work
    git(work, "checkout", "-q", "--orphan", "rewritten")
    rewritten = _many_services(3)  # s003 dropped, s001 scaled: both must be applied
    rewritten["applications"][1]["services"][0]["replicas"] = 2
    c3 = config_repo.push(with_source(rewritten, "https://git.example/team/s000-fails.git"), "rewritten")
    pushed = time.monotonic()
    assert subprocess.run(["git", "-C", str(work), "merge-base", "--is-ancestor", c2, c3]).returncode == 1
    run = eventually(
        lambda: next((r for r in daemon.runs() if r["revision"] == c3 and r["finished"]), None),
        60,
        "a run at the rewritten history",
    )
    recovery("force-push: the rewritten history followed after the push", time.monotonic() - pushed)
    assert run["error"].startswith("builds not ready: build-s000-svc-v1-0-0"), run["error"]
    (logged,) = [
        line
        for line in messages(tmp_path, "the config history was rewritten (force-push)")
        if line.get("revision") == c3
    ]
    assert logged["level"] == "warning"
    names = deployments(kube, namespace)
    assert sorted(n.split("-")[0] for n in names) == ["s000", "s001", "s002"], "s003 pruned"
    assert next(d for n, d in names.items() if n.startswith("s001")).spec.replicas == 2
    assert workloads(kube, namespace, "s000") == held_objects, "the held application keeps its objects"
    (status,) = json.loads(daemon.get("/api/applications/s000-app")[1])
    assert (status["revision"], status["detail"]["heldAt"]) == (c3, {"revision": c1, "problem": None}), (
        "held at c1, read back from the clone though the server no longer has it"
    )

    c4 = config_repo.push(rewritten, "s000 from an image again")  # fast-forward: no rewrite
    eventually(lambda: landed(daemon, c4), 60, "the commit after the force-push")
    assert len(messages(tmp_path, "the config history was rewritten")) == 1, "only c3 rewrote it"
    assert not messages(tmp_path, "run crashed")
    assert daemon.process.poll() is None


# -- a deleted branch -----------------------------------------------------------------------------


def test_a_deleted_branch_fails_runs_clearly_prunes_nothing_and_converges_when_it_is_back(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    recovery: Callable[[str, float], None],
) -> None:
    # the server's default branch cannot be deleted; the daemon follows another one
    config_repo.push(_many_services(3))
    git(config_repo.work, "push", "-q", config_repo.url, "HEAD:release")
    daemon = start_daemon(
        "daemon.db", "--no-leader-election", "--interval", str(INTERVAL), "--branch", "release"
    )
    eventually(lambda: daemon.runs()[0]["outcome"] == "succeeded", 60, "the first run")
    applied = versions(kube, namespace)

    git(config_repo.work, "push", "-q", config_repo.url, ":release")
    first = first_failure(daemon)
    assert first["error"].startswith(
        f"'release' does not exist in {config_repo.url} (deleted branch or tag?): "
    ), first["error"]
    eventually(
        lambda: next(r for r in daemon.runs() if r["id"] == first["id"])["repeats"] >= 2,
        60,
        "the failure to repeat",
    )
    failed = [r for r in runs_since(daemon, first["id"]) if r["finished"]]
    assert [r["error"] for r in failed] == [first["error"]] * len(failed)
    assert all(r["actions"] == [] for r in failed), "nothing applied, nothing pruned"
    assert fetch_errors(daemon) >= 3
    assert versions(kube, namespace) == applied, "the applied objects stay untouched"
    assert not messages(tmp_path, "is damaged"), "a deleted branch is not a damaged clone"

    revision = config_repo.push(_many_services(4), "the branch is back")
    git(config_repo.work, "push", "-q", config_repo.url, "HEAD:release")
    back = time.monotonic()
    eventually(lambda: landed(daemon, revision), INTERVAL + 30, "the branch back")
    recovery("deleted branch: converged after it was pushed again", time.monotonic() - back)
    assert len(deployments(kube, namespace)) == 4


# -- a damaged clone in the work directory --------------------------------------------------------


def truncate_packs(clone: Path) -> None:
    packs = list((clone / "objects" / "pack").glob("pack-*"))
    assert packs, "the clone keeps what it fetched as a pack"
    for pack in packs:
        pack.chmod(0o644)
        pack.write_bytes(pack.read_bytes()[:20])


def delete_head(clone: Path) -> None:
    (clone / "HEAD").unlink()


def garble_fetched_ref(clone: Path) -> None:
    (clone / "refs" / "mico" / "fetched").write_text("garbage\n")


@pytest.mark.parametrize(
    "damage", [truncate_packs, delete_head, garble_fetched_ref], ids=lambda f: f.__name__
)
def test_a_damaged_clone_is_set_aside_and_cloned_again(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    damage: Callable[[Path], None],
    recovery: Callable[[str, float], None],
) -> None:
    # 150 more files than the config: git keeps a fetch of 100 objects or more as a pack
    (config_repo.work / "docs").mkdir()
    for n in range(150):
        (config_repo.work / "docs" / f"{n}.md").write_text(f"page {n}\n")
    config_repo.push(_many_services(3))
    interval = 5  # the damage lands between two runs, not in one
    daemon = start_daemon("daemon.db", "--no-leader-election", "--interval", str(interval))
    eventually(lambda: daemon.runs()[0]["outcome"] == "succeeded", 60, "the first run")
    clone = tmp_path / "daemon.db-repo"
    latest = daemon.runs()[0]["id"]

    done = runs_total(daemon)
    eventually(lambda: runs_total(daemon) > done, 3 * interval, "a run to finish")
    damage(clone)
    damaged = time.monotonic()
    eventually(lambda: messages(tmp_path, "is damaged"), 3 * interval, "the daemon to notice")
    recovery(
        f"damaged clone: cloned again after the damage (--interval {interval})", time.monotonic() - damaged
    )
    (line,) = messages(tmp_path, "is damaged")
    assert line["level"] == "warning"
    assert line["message"].startswith(f"the git work directory {clone} is damaged ("), line
    assert line["message"].endswith(f"moved it to {clone}.broken and cloning again"), line
    assert (clone.with_name(clone.name + ".broken") / "mico-damaged.txt").is_file()

    revision = config_repo.push(_many_services(4), "one more service")
    pushed = time.monotonic()
    eventually(lambda: landed(daemon, revision), 3 * interval + 30, "the next commit")
    recovery("damaged clone: the next commit landed after its push", time.monotonic() - pushed)
    assert [r["outcome"] for r in runs_since(daemon, latest)] == ["succeeded"] * len(
        runs_since(daemon, latest)
    ), "cloned again within the run that found the damage"
    assert len(deployments(kube, namespace)) == 4
    assert len(messages(tmp_path, "is damaged")) == 1, "cloned once"
