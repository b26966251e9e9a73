#!/usr/bin/env python3
"""Soak run of the daemon against the real local platform (`make platform` first). Not a test.

The daemon runs for --minutes against a --services config in the platform's git server, with a
commit every 10 s (one service's replicas change), drift every 30 s (a managed Deployment scaled
behind its back) and a signed webhook every 5 s. It samples the daemon's RSS, threads, open files
and state-database size every 5 s and reports their growth after warm-up, whether every commit
and every drift was converged, the run durations, and the database's size once the history holds
--history-retention runs (bounded: it stops growing there).

    python bench/soak.py --minutes 20 --services 100
    python bench/soak.py --minutes 25 --services 100 --history-retention 150
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"soak-secret"


def platform_env() -> dict[str, str]:
    text = (ROOT / ".platform" / "env").read_text()
    return dict(re.findall(r'^export (\w+)="(.*)"$', text, flags=re.MULTILINE))


def kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [f"{env['MICO_PLATFORM_BIN']}/kubectl", f"--kubeconfig={env['KUBECONFIG']}", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def config(services: int, replicas: dict[int, int]) -> dict[str, Any]:
    names = [f"soak{i:03d}" for i in range(services)]
    return {
        "apiVersion": "ust.mico/v1",
        "services": [
            {
                "shortName": n,
                "version": "v1.0.0",
                "name": n,
                "image": "nginx:1",
                "interfaces": [{"name": "http", "ports": [{"port": 80, "targetPort": 80}]}],
            }
            for n in names
        ],
        "applications": [
            {
                "shortName": f"{n}-app",
                "version": "v1.0.0",
                "name": n,
                "services": [{"shortName": n, "version": "v1.0.0", "replicas": replicas.get(i, 1)}],
            }
            for i, n in enumerate(names)
        ],
    }


class Repo:
    def __init__(self, url: str, work: Path) -> None:
        self.url, self.work = url, work
        self._git("init", "-q", "-b", "main", str(work))

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=soak", "-c", "user.email=soak@example.invalid", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def push(self, data: dict[str, Any], message: str) -> str:
        (self.work / "mico.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        self._git("-C", str(self.work), "add", "-A")
        self._git("-C", str(self.work), "commit", "-q", "-m", message)
        self._git("-C", str(self.work), "push", "-q", "-f", self.url, "HEAD:main")
        return self._git("-C", str(self.work), "rev-parse", "HEAD")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def webhook(base: str) -> None:
    body = b"{}"
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        base + "/webhook/github",
        data=body,
        headers={
            "X-Hub-Signature-256": signature,
            "X-GitHub-Event": "push",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except OSError as err:
        print(f"webhook failed: {err}", file=sys.stderr)


def sample(pid: int, state: Path) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    files = len(os.listdir(f"/proc/{pid}/fd"))
    wal = state.with_name(state.name + "-wal")
    size = state.stat().st_size / 1024
    wal_size = wal.stat().st_size / 1024 if wal.exists() else 0.0
    with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)) as db:
        rows = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        # what the kept rows weigh (the applications' status detail is nearly all of it): the file
        # may grow with it as the config does (more pods), never with the rows deleted
        live = db.execute("SELECT total(length(detail)) FROM app_status").fetchone()[0] / 1024
    return {
        "time": time.monotonic(),
        "rss_mib": rss,
        "threads": threads,
        "open_files": files,
        "db_kib": size,
        "wal_kib": wal_size,
        "history_rows": rows,
        "status_kib": live,
    }


def bounded(samples: list[dict[str, float]], retention: int) -> dict[str, Any]:
    """The state database's size from when the history first held --history-retention rows (the
    oldest deleted from then on) to the end: bounded when it stops growing there."""
    full = [s for s in samples if s["history_rows"] >= retention]
    if not full:
        return {"retention_reached": False, "history_rows_at_end": samples[-1]["history_rows"]}
    return {
        "retention_reached": True,
        "minutes_to_reach_it": round((full[0]["time"] - samples[0]["time"]) / 60, 1),
        "db_kib_then": round(full[0]["db_kib"], 1),
        "db_kib_max_after": round(max(s["db_kib"] for s in full), 1),
        "db_kib_at_end": round(full[-1]["db_kib"], 1),
        "status_kib_then": round(full[0]["status_kib"], 1),
        "status_kib_at_end": round(full[-1]["status_kib"], 1),
        "db_per_status_kib_then": round(full[0]["db_kib"] / full[0]["status_kib"], 2),
        "db_per_status_kib_max_after": round(max(s["db_kib"] / s["status_kib"] for s in full), 2),
        "wal_kib_max_after": round(max(s["wal_kib"] for s in full), 1),
        "history_rows_at_end": full[-1]["history_rows"],
    }


def growth(samples: list[dict[str, float]], key: str, warmup: float) -> tuple[float, float, float]:
    """(median right after warm-up, median of the last tenth, growth in %)."""
    start = samples[0]["time"] + warmup
    after = [s for s in samples if s["time"] >= start]
    head = statistics.median(s[key] for s in after[: max(3, len(after) // 10)])
    tail = statistics.median(s[key] for s in after[-max(3, len(after) // 10) :])
    return head, tail, (tail - head) / head * 100 if head else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--warmup-minutes", type=float, default=2)
    parser.add_argument("--history-retention", type=int, default=500)
    args = parser.parse_args()
    env = platform_env()
    namespace = f"soak-{uuid.uuid4().hex[:6]}"
    kubectl(env, "create", "namespace", namespace)
    name = f"soak-{uuid.uuid4().hex[:6]}.git"
    bare = Path(env["GIT_ROOT"]) / name
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    repo = Repo(f"{env['GIT_BASE_URL']}/{name}", work / "config")
    replicas: dict[int, int] = {}
    repo.push(config(args.services, replicas), "start")
    (work / "secret").write_bytes(SECRET)
    port = free_port()
    state = work / "state.db"
    log = (work / "daemon.log").open("ab")
    daemon = subprocess.Popen(
        [
            sys.executable, "-m", "reconciler", "run",
            "--repo", repo.url, "--kubeconfig", env["KUBECONFIG"], "--namespace", namespace,
            "--build-namespace", namespace, "--kafka-bootstrap-servers", env["KAFKA_BOOTSTRAP_SERVERS"],
            "--topics", "off", "--state-db", str(state), "--workdir", str(work / "repo"),
            "--listen", f"127.0.0.1:{port}", "--interval", "60", "--no-leader-election",
            "--webhook-secret-file", str(work / "secret"), "--history-retention", str(args.history_retention),
        ],
        stdout=log,
        stderr=log,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(7)
    samples: list[dict[str, float]] = []
    commits: list[tuple[str, int, int]] = []
    landed: list[bool] = []
    names: dict[str, str] = {}
    drifts: list[tuple[str, bool]] = []
    started = time.monotonic()
    end = started + args.minutes * 60
    next_commit = next_drift = next_hook = next_sample = started + 10
    pending_drift: tuple[str, float] | None = None
    try:
        while time.monotonic() < end:
            now = time.monotonic()
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon exited with {daemon.returncode}; see {work / 'daemon.log'}")
            if now >= next_sample:
                samples.append(sample(daemon.pid, state))
                next_sample += 5
            if now >= next_commit:
                if commits:  # the commit before, 10 s ago, must be in the cluster by now
                    _, last, wanted = commits[-1]
                    names = names or {n.split("-")[0]: n for n in deployment_names(env, namespace)}
                    landed.append(deployment_replicas(env, namespace, names[f"soak{last:03d}"]) == wanted)
                index = rng.randrange(args.services)
                count = rng.choice([c for c in (1, 2, 3) if c != replicas.get(index, 1)])
                replicas[index] = count
                commits.append(
                    (repo.push(config(args.services, replicas), f"soak{index:03d} -> {count}"), index, count)
                )
                webhook(base)
                next_commit += 10
            if now >= next_drift:
                if pending_drift is not None:  # the previous drift must be reverted by now
                    drifts.append(
                        (pending_drift[0], deployment_replicas(env, namespace, pending_drift[0]) != 7)
                    )
                target = deployment_names(env, namespace)[rng.randrange(args.services)]
                kubectl(env, "-n", namespace, "scale", "deployment", target, "--replicas=7")
                pending_drift = (target, now)
                next_drift += 30
            if now >= next_hook:
                webhook(base)
                next_hook += 5
            time.sleep(0.2)
        time.sleep(15)  # the last commit and drift: one more run
        webhook(base)
        time.sleep(15)
        if pending_drift is not None:
            drifts.append((pending_drift[0], deployment_replicas(env, namespace, pending_drift[0]) != 7))
        history = get(base + "/api/history?limit=1000")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        log.close()
    final = {d["metadata"]["name"]: d["spec"]["replicas"] for d in deployments(env, namespace)}
    expected = {f"soak{i:03d}": replicas.get(i, 1) for i in range(args.services)}
    final_by_service = {name.split("-")[0]: count for name, count in final.items()}
    applied = {r["revision"] for r in history if r["outcome"] == "succeeded"}
    durations = [r["finished"] - r["started"] for r in history if r["finished"]]
    report = {
        "minutes": args.minutes,
        "services": args.services,
        "commits": len(commits),
        "commits_in_the_cluster_before_the_next": f"{sum(landed)} of {len(landed)}",
        "last_commit_applied": commits[-1][0] in applied if commits else None,
        "final_state_matches_last_commit": final_by_service == expected,
        "drifts": len(drifts),
        "drifts_reverted_before_the_next": sum(ok for _, ok in drifts),
        "history_rows": len(history),
        "runs_recorded": sum(1 + r.get("repeats", 0) for r in history),
        "run_seconds_median": round(statistics.median(durations), 3) if durations else None,
        "run_seconds_max": round(max(durations), 3) if durations else None,
    }
    for key in ("rss_mib", "threads", "open_files", "db_kib", "wal_kib"):
        head, tail, change = growth(samples, key, args.warmup_minutes * 60)
        report[key] = {
            "after_warmup": round(head, 1),
            "at_end": round(tail, 1),
            "growth_percent": round(change, 1),
        }
    report["state_database_since_retention"] = bounded(samples, args.history_retention)
    print(json.dumps(report, indent=2))
    kubectl(env, "delete", "namespace", namespace, "--wait=false")
    shutil.rmtree(bare, ignore_errors=True)


def deployments(env: dict[str, str], namespace: str) -> list[dict[str, Any]]:
    listed = kubectl(env, "-n", namespace, "get", "deployments", "-o", "json")
    return list(json.loads(listed.stdout)["items"])


def deployment_names(env: dict[str, str], namespace: str) -> list[str]:
    return sorted(d["metadata"]["name"] for d in deployments(env, namespace))


def deployment_replicas(env: dict[str, str], namespace: str, name: str) -> int:
    got = kubectl(env, "-n", namespace, "get", "deployment", name, "-o", "jsonpath={.spec.replicas}")
    return int(got.stdout or 0)


if __name__ == "__main__":
    main()
