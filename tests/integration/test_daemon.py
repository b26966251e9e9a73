"""The reconciler against the real platform: git daemon, kube-apiserver, SQLite, Prometheus."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from reconciler import __version__
from reconciler.cluster.resources import DEPLOYMENT, SERVICE
from reconciler.engine import Engine, RunOutcome
from reconciler.store import Store
from tests.helpers import example_data, run, sharing_entry
from tests.integration.conftest import (
    BACKEND,
    SECRET,
    ConfigRepo,
    Daemon,
    Platform,
    backend,
    deployments,
    sync_command,
    versions,
)
from tests.integration.test_platform import eventually, prometheus_query

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def test_a_commit_converges_and_a_second_run_writes_nothing(
    make_engine: Callable[..., Engine], config_repo: ConfigRepo, kube: client.ApiClient, namespace: str
) -> None:
    revision = config_repo.push(example_data())
    engine = make_engine()
    first = engine.run("test")
    assert first.outcome == RunOutcome.SUCCEEDED, first.error
    assert first.revision == revision
    assert len(deployments(kube, namespace)) == 5
    assert len(client.CoreV1Api(kube).list_namespaced_service(namespace).items) == 3
    assert [j.metadata.name for j in client.BatchV1Api(kube).list_namespaced_job(namespace).items] == [
        "build-spring-boot-realworld-example-app-v1-0-0"
    ]
    image = backend(kube, namespace).spec.template.spec.containers[0].image
    assert re.fullmatch(r"docker\.io/ustmico/spring-boot-realworld-example-app@sha256:[0-9a-f]{64}", image)
    before = versions(kube, namespace)
    counted = engine.counter.snapshot()
    second = engine.run("test")
    assert second.outcome == RunOutcome.SUCCEEDED
    made = engine.counter.snapshot() - counted
    assert set(made) == {"GET"}, f"a no-op run made writes: {made}"
    assert second.api_requests == 3  # one LIST each of Deployments, Services and Pods
    assert versions(kube, namespace) == before
    watching = make_engine(state="watch.db", watch=True)
    watching.run("test")  # the cache fills from one LIST per kind, then watches
    assert watching.run("test").api_requests == 0
    assert versions(kube, namespace) == before


def test_the_watching_engine_does_only_the_work_a_change_needs(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    platform: Platform,
) -> None:
    """Work counted, not time: a run on the same commit with no watch event since the last run
    that left nothing to do repeats it (nothing parsed, rendered, compared or requested); a
    commit to one file parses that file and renders its application's objects; a change made
    outside is compared alone. And what it converged to is what a cold run wants."""
    data = example_data()
    files = {"services.mico.yaml": {"apiVersion": "ust.mico/v1", "services": data["services"]}}
    for app in data["applications"]:
        files[f"{app['shortName']}.mico.yaml"] = {"apiVersion": "ust.mico/v1", "applications": [app]}
    config_repo.push_files(files)
    engine = make_engine(watch=True)
    first = engine.run("test")
    assert first.outcome == RunOutcome.SUCCEEDED, first.error
    assert first.work["files_parsed"] == len(files)
    total = len(first.plan.unchanged) + len(first.plan.actions)

    def settled() -> bool:  # the controllers' status updates are watch events too; they end
        return engine.run("schedule").repeated

    eventually(settled, timeout=90, what="a run that repeats the one before")
    assert not engine.run("webhook:push").repeated, "a webhook asks for the full pass"
    repeated = engine.run("schedule")
    assert repeated.repeated
    assert repeated.outcome == RunOutcome.SUCCEEDED
    assert repeated.work == {"files_parsed": 0, "objects_rendered": 0, "objects_compared": 0}
    assert repeated.api_requests == 0
    assert set(repeated.stages) == {"fetch", "record", "gc"}

    app = data["applications"][1]
    app["services"][0]["replicas"] = 3
    config_repo.push_files({f"{app['shortName']}.mico.yaml": files[f"{app['shortName']}.mico.yaml"]})
    changed = engine.run("test")
    assert changed.outcome == RunOutcome.SUCCEEDED, changed.error
    assert changed.work["files_parsed"] == 1
    mine = [
        ref
        for ref in changed.plan.unchanged
        if "messaging-example@"
        in ",".join(changed.live[ref]["metadata"]["annotations"].get("ust.mico/applications", "").split(","))
    ]
    assert 0 < changed.work["objects_rendered"] <= len(mine) + 1  # its objects (the one changed too)
    assert changed.work["objects_compared"] < total / 2
    assert [(a.ref.kind, a.verb.value) for a, _, _ in changed.executed] == [("Deployment", "update")]

    eventually(settled, timeout=90, what="a run that repeats the one before")
    name = backend(kube, namespace).metadata.name
    by_hand = "example.com/by"
    assert (
        platform.kubectl("-n", namespace, "annotate", "deployment", name, f"{by_hand}=hand").returncode == 0
    )
    eventually(
        lambda: any(
            by_hand in d["metadata"].get("annotations", {})
            for d in engine.objects.list(DEPLOYMENT, namespace)
        ),
        timeout=10,
        what="the watch event",
    )
    touched = engine.run("schedule")
    assert not touched.repeated
    assert touched.work["files_parsed"] == touched.work["objects_rendered"] == 0
    assert 1 <= touched.work["objects_compared"] < total / 2
    assert not touched.executed

    cold = make_engine(state="cold.db").run("test")  # a cold parse, render and plan of the same commit
    assert cold.outcome == RunOutcome.SUCCEEDED, cold.error
    assert not cold.plan.actions
    assert not cold.executed


def test_an_unexpected_error_fails_one_run_on_record_and_the_next_converges(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in one stage must not end the loop nor leave a run without a reason."""
    config_repo.push(example_data())
    engine = make_engine()
    monkeypatch.setattr(engine, "_spec", lambda snapshot: {}["no such key"])
    broken = engine.run("test")
    assert broken.outcome == RunOutcome.FAILED
    assert broken.error == "unexpected error (a bug, its traceback is logged): KeyError: 'no such key'"
    assert engine.store.runs(limit=1)[0]["error"] == broken.error
    monkeypatch.undo()
    assert engine.run("test").outcome == RunOutcome.SUCCEEDED
    assert len(deployments(kube, namespace)) == 5


def test_connector_deployment_info_reaches_the_cluster(
    make_engine: Callable[..., Engine], config_repo: ConfigRepo, kube: client.ApiClient, namespace: str
) -> None:
    data = example_data()
    data["applications"][1]["kafkaFaasConnectors"][0].update(
        labels={"team": "messaging"}, env={"LOG_LEVEL": "debug"}, imagePullPolicy="IfNotPresent", replicas=2
    )
    config_repo.push(data)
    result = make_engine().run("test")
    assert result.outcome == RunOutcome.SUCCEEDED, result.error
    (connector,) = [
        d
        for d in client.AppsV1Api(kube).list_namespaced_deployment(namespace).items
        if d.metadata.name.startswith("kafka-faas-connector-")
    ]
    assert connector.spec.replicas == 2
    assert connector.metadata.labels["team"] == "messaging"
    assert connector.metadata.labels["ust.mico/version"] == __version__
    (container,) = connector.spec.template.spec.containers
    assert container.image == f"localhost/mico-reconciler:{__version__}"
    assert container.command == ["mico-kafka-faas-connector"]
    assert container.image_pull_policy == "IfNotPresent"
    assert (container.env[0].name, container.env[0].value) == ("LOG_LEVEL", "debug")


@pytest.mark.parametrize("watch", [False, True], ids=["lists", "watch-cache"])
def test_drift_is_reverted_and_recorded(
    watch: bool,
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    platform: Platform,
) -> None:
    config_repo.push(example_data())
    engine = make_engine(watch=watch)
    engine.run("test")
    name = backend(kube, namespace).metadata.name
    assert platform.kubectl("-n", namespace, "scale", "deployment", name, "--replicas=7").returncode == 0
    service = next(s.metadata.name for s in client.CoreV1Api(kube).list_namespaced_service(namespace).items)
    assert platform.kubectl("-n", namespace, "delete", "service", service).returncode == 0
    if engine.objects is not None:  # the watch brings both changes into the cache
        eventually(
            lambda: (
                service not in {s["metadata"]["name"] for s in engine.objects.list(SERVICE, namespace)}
                and 7 in {d["spec"]["replicas"] for d in engine.objects.list(DEPLOYMENT, namespace)}
            ),
            timeout=10,
            what="the watch events",
        )
    result = engine.run("test")
    assert {(str(a.ref), a.verb.value) for a in result.plan.drift} == {
        (f"Deployment/{namespace}/{name}", "update"),
        (f"Service/{namespace}/{service}", "create"),
    }
    assert backend(kube, namespace).spec.replicas == 2
    assert client.CoreV1Api(kube).read_namespaced_service(service, namespace)
    (run,) = engine.store.runs(limit=1)
    drifted = {a["name"]: a["reason"] for a in run["actions"] if a["drift"]}
    assert drifted[name] == "changed outside the reconciler: spec.replicas: 7 -> 2"
    assert drifted[service] == "deleted outside the reconciler"


def test_with_self_heal_off_drift_is_only_reported(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    platform: Platform,
) -> None:
    config_repo.push(example_data())
    engine = make_engine(self_heal=False)
    engine.run("test")
    name = backend(kube, namespace).metadata.name
    platform.kubectl("-n", namespace, "scale", "deployment", name, "--replicas=7")
    result = engine.run("test")
    assert [a.ref.name for a in result.plan.drift] == [name]
    assert result.executed == []
    assert backend(kube, namespace).spec.replicas == 7
    realworld = next(s for s in result.statuses if s.app == "realworld")
    assert realworld.sync.value == "OutOfSync"
    (run,) = engine.store.runs(limit=1)
    assert run["actions"][0]["outcome"] == "skipped"
    assert run["actions"][0]["reason"].endswith("self-heal is off")


def _small_app(prefix: str) -> dict[str, Any]:
    return {
        "apiVersion": "ust.mico/v1",
        "services": [
            {
                "shortName": f"{prefix}-svc",
                "version": "v1.0.0",
                "name": prefix,
                "image": "nginx:1",
                "interfaces": [{"name": "http", "ports": [{"port": 80, "targetPort": 80}]}],
            }
        ],
        "applications": [
            {
                "shortName": f"{prefix}-app",
                "version": "v1.0.0",
                "name": prefix,
                "services": [{"shortName": f"{prefix}-svc", "version": "v1.0.0"}],
            }
        ],
    }


def test_objects_of_others_are_never_touched(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    """A hand-made Deployment with our labels, and a second reconciler instance (another path of
    the same repository) in the same namespace, survive a run that prunes."""
    apps = client.AppsV1Api(kube)
    labels = {
        "ust.mico/name": BACKEND,
        "ust.mico/instance": "hand-made",
        "app.kubernetes.io/managed-by": "mico-reconciler",
    }
    apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "hand-made", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"ust.mico/instance": "hand-made"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "x", "image": "registry.example/x:1"}]},
                },
            },
        },
    )
    for directory, data in (("mine", example_data()), ("other", _small_app("other"))):
        (config_repo.work / directory).mkdir()
        (config_repo.work / directory / "mico.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    config_repo.push((config_repo.work / "mine" / "mico.yaml").read_text(), "two configs")
    (config_repo.work / "mico.yaml").unlink()
    mine, other = make_engine(path="mine"), make_engine(path="other", state="other.db")
    assert mine.run("test").outcome == other.run("test").outcome == RunOutcome.SUCCEEDED
    untouchable = {k: v for k, v in versions(kube, namespace).items() if "hand-made" in k or "other-svc" in k}
    assert len(untouchable) == 3  # the hand-made Deployment, other's Deployment and Service
    data = example_data()
    data["applications"] = [data["applications"][0]]  # drop messaging: prunes its 4 objects
    (config_repo.work / "mine" / "mico.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    config_repo.push((config_repo.work / "mine" / "mico.yaml").read_text(), "drop messaging")
    (config_repo.work / "mico.yaml").unlink()
    result = mine.run("test")
    assert result.outcome == RunOutcome.SUCCEEDED, result.error
    assert sorted(a.ref.name.split("-")[0] for a in result.plan.actions) == ["kafka", "msg", "msg", "test"]
    after = versions(kube, namespace)
    assert {k: after.get(k) for k in untouchable} == untouchable


def _shared(replicas: tuple[int, ...]) -> dict[str, Any]:
    data = example_data()
    for index, count in enumerate(replicas):
        data["applications"].append(
            {
                "shortName": f"shop-{index}",
                "version": "v1.0.0",
                "name": f"Shop {index}",
                "services": [
                    sharing_entry(data, BACKEND, replicas=count),
                ],
            }
        )
    return data


def test_removing_applications_scales_in_then_deletes_shared_instances(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    data = _shared((3,))
    data["applications"][0]["deploy"] = False  # realworld undeployed: only shop-0 and messaging remain
    data["applications"].append(
        {
            **data["applications"][-1],
            "shortName": "shop-1",
            "services": [{**data["applications"][-1]["services"][0], "replicas": 4}],
        }
    )
    config_repo.push(data)
    engine = make_engine()
    assert engine.run("test").outcome == RunOutcome.SUCCEEDED
    assert backend(kube, namespace).spec.replicas == 3 + 4
    data["applications"].pop()  # remove shop-1: scale in
    config_repo.push(data)
    result = engine.run("test")
    assert sorted((a.verb.value, a.ref.kind) for a in result.plan.actions) == [
        ("update", "Deployment"),
        ("update", "Service"),
    ]
    assert {a.reason for a in result.plan.actions} == {
        'changed in the config: metadata.annotations.ust.mico/applications: "shop-0@v1.0.0,shop-1@v1.0.0" -> '
        '"shop-0@v1.0.0"'
    }
    assert backend(kube, namespace).spec.replicas == 3
    data["applications"].pop()  # remove shop-0, the last user: delete the Deployment and its Service
    config_repo.push(data)
    result = engine.run("test")
    assert result.outcome == RunOutcome.SUCCEEDED, result.error
    assert sorted((a.verb.value, a.ref.kind) for a in result.plan.actions) == [
        ("delete", "Deployment"),
        ("delete", "Service"),
    ]  # its finished build Job is left to ttlSecondsAfterFinished
    assert not [n for n in deployments(kube, namespace) if n.startswith(BACKEND)]


def test_an_emptied_config_is_stopped_by_the_prune_guard(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    config_repo.push(example_data())
    engine = make_engine()
    engine.run("test")
    before = versions(kube, namespace)
    config_repo.push(
        {"apiVersion": "ust.mico/v1", "services": example_data()["services"], "applications": []}
    )
    result = engine.run("test")
    assert result.outcome == RunOutcome.REFUSED
    assert len(result.plan.prune_refused) == 8  # 5 Deployments and 3 Services; build Jobs are not pruned
    assert versions(kube, namespace) == before
    forced = make_engine(force_prune=True).run("test")
    assert forced.outcome == RunOutcome.SUCCEEDED
    assert [k for k in versions(kube, namespace) if not k.startswith("V1Job/")] == []


def test_an_invalid_commit_changes_nothing_and_shows_everywhere(
    platform: Platform,
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    good = config_repo.push(example_data())
    command = sync_command(platform, config_repo.url, namespace, tmp_path)
    assert subprocess.run(command, capture_output=True, check=False).returncode == 0
    before = versions(kube, namespace)
    broken = example_data()
    broken["applications"][0]["services"][1]["replcas"] = 3
    bad = config_repo.push(broken)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    (line,) = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert line["outcome"] == "invalid"
    assert line["revision"] == bad
    assert any("replcas: unknown field 'replcas' (did you mean 'replicas'?)" in p for p in line["problems"])
    assert versions(kube, namespace) == before
    history = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "history",
            "--state-db",
            str(tmp_path / "cli.db"),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    latest, previous = json.loads(history.stdout)[:2]
    assert (latest["outcome"], latest["revision"], previous["revision"]) == ("invalid", bad, good)
    assert latest["problems"][0]["field"] == "applications[0].services[1].replcas"
    assert Store(tmp_path / "cli.db").last_good_revision() == good


# -- the daemon: webhooks, metrics, Prometheus, restarts ------------------------------------------


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()


def test_webhooks_are_authenticated_and_bring_a_commit_in_quickly(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    config_repo.push(example_data())
    daemon = start_daemon()
    eventually(lambda: daemon.runs()[0]["outcome"] == "succeeded", what="the startup run")
    runs_before = len(daemon.runs())
    data = example_data()
    data["applications"][0]["services"][1]["replicas"] = 5
    config_repo.push(data)
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    assert (
        daemon.post("/webhook/github", body, {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}) == 401
    )
    assert daemon.post("/webhook/github", body, headers) == 401
    assert daemon.post("/webhook/generic", b"", {"Authorization": "Bearer wrong"}) == 401
    time.sleep(1)
    assert len(daemon.runs()) == runs_before, "a rejected webhook triggered a run"
    assert backend(kube, namespace).spec.replicas == 2
    assert daemon.post("/webhook/github", body, {**headers, "X-Hub-Signature-256": sign(body)}) == 202
    eventually(
        lambda: backend(kube, namespace).spec.replicas == 5, timeout=3, what="the commit in the cluster"
    )
    data["applications"][0]["services"][1]["replicas"] = "six"  # an invalid commit, through the generic hook
    config_repo.push(data)
    assert daemon.post("/webhook/generic", b"", {"Authorization": f"Bearer {SECRET.decode()}"}) == 202
    metric = b'mico_reconciler_runs_total{outcome="invalid",trigger="webhook:generic"} 1.0'
    eventually(lambda: metric in daemon.get("/metrics")[1], what="the invalid run in /metrics")
    assert b"mico_reconciler_spec_problems 1.0" in daemon.get("/metrics")[1]
    assert daemon.runs()[0]["problems"][0]["field"] == "applications[0].services[1].replicas"
    assert backend(kube, namespace).spec.replicas == 5


def test_prometheus_scrapes_the_daemon(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    platform: Platform,
    namespace: str,
) -> None:
    config_repo.push(example_data())
    daemon = start_daemon()
    eventually(lambda: daemon.runs()[0]["outcome"] == "succeeded", what="the startup run")
    status, text = daemon.get("/metrics")
    assert status == 200
    assert b'mico_reconciler_runs_total{outcome="succeeded",trigger="startup"} 1.0' in text
    job = f"daemon-{namespace}"
    target = platform.prometheus_targets / f"{job}.json"
    target.write_text(json.dumps([{"targets": [daemon.url.removeprefix("http://")], "labels": {"job": job}}]))
    try:
        query = f'mico_reconciler_application_status{{job="{job}",application="realworld",status="Deployed"}}'
        eventually(
            lambda: [r["value"][1] for r in prometheus_query(platform, query)] == ["1"],
            timeout=60,
            what="Prometheus to see realworld Deployed",
        )
        synced = prometheus_query(platform, f'sum(mico_reconciler_application_synced{{job="{job}"}})')
        assert synced[0]["value"][1] == "2"
    finally:
        target.unlink()


def test_status_of_a_shared_service_as_mico_reported_it(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
) -> None:
    config_repo.push(_shared((1,)))  # the backend: realworld's 2 replicas + shop-0's 1
    daemon = start_daemon("status.db")

    def service_status() -> dict[str, Any]:
        result = run(
            "status", "--state-db", str(daemon.state_db), "--service", f"{BACKEND}@v1.0.0", "--output", "json"
        )
        return json.loads(result.stdout) if result.returncode == 0 else {}

    def all_running() -> bool:  # pods Running first, then the Deployment counts them available
        instances = service_status().get("instances", [])
        pods = [p for i in instances for p in i["pods"]]
        available = sum(i["availableReplicas"] for i in instances)
        return len(pods) == available == 3 and all(p["phase"] == "Running" for p in pods)

    eventually(all_running, timeout=90, what="the shared backend's three pods Running and available")
    (instance,) = service_status()["instances"]
    assert instance["applicationsUsingThisService"] == ["realworld@v1.0.0", "shop-0@v1.0.0"]
    assert (instance["requestedReplicas"], instance["availableReplicas"]) == (3, 3)
    for pod in instance["pods"]:
        assert pod["node"] in ("kwok-node-0", "kwok-node-1")
        assert pod["hostIP"]
        assert pod["startTime"]
        assert pod["restarts"] == 0
    served = json.loads(daemon.get(f"/api/services/{BACKEND}")[1])
    assert served == service_status()
    assert daemon.get("/api/services/no-such-service")[0] == 404
    shop = json.loads(daemon.get("/api/applications/shop-0")[1])[0]
    assert shop["detail"]["totals"] == {"pods": 3, "requestedReplicas": 3, "availableReplicas": 3}


def test_leader_election_lets_one_replica_reconcile(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
) -> None:
    config_repo.push(example_data())
    leader = start_daemon("leader.db")
    follower = start_daemon("follower.db", "--interval", "1", wait_for_run=False)
    time.sleep(5)
    assert follower.process.poll() is None
    assert follower.get("/readyz")[0] == 200  # a standby replica is ready, just not leading
    assert follower.runs() == [], "a follower reconciled"
    assert leader.runs()[0]["outcome"] == "succeeded"


def test_sigterm_hands_the_lease_to_a_waiting_replica_at_once(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
) -> None:
    config_repo.push(example_data())
    leader = start_daemon("leader.db")
    follower = start_daemon("follower.db", wait_for_run=False)
    time.sleep(2)  # the follower has polled the lease and found it held
    assert follower.runs() == [], "a follower reconciled"
    leader.process.send_signal(signal.SIGTERM)
    assert leader.process.wait(timeout=30) == 0
    # the lease duration is 15 s: leading within 2 s means the lease was released, not expired
    eventually(lambda: follower.runs() != [], timeout=2, what="the follower to lead")
    with sqlite3.connect(leader.state_db) as db:
        outcomes = [row[0] for row in db.execute("SELECT outcome FROM runs")]
    assert outcomes == ["succeeded"], "the leader's run was not finished cleanly"
    eventually(lambda: [r["outcome"] for r in follower.runs()] == ["succeeded"], timeout=60, what="its run")


def _many_services(count: int) -> dict[str, Any]:
    configs = [_small_app(f"s{i:03d}") for i in range(count)]
    return {
        "apiVersion": "ust.mico/v1",
        "services": [c["services"][0] for c in configs],
        "applications": [c["applications"][0] for c in configs],
    }


def test_kill_9_mid_run_then_restart_converges_with_intact_history(
    start_daemon: Callable[..., Daemon],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    config_repo.push(_many_services(150))
    daemon = start_daemon("kill.db", "--concurrency", "1", wait_for_run=False)

    def running() -> bool:
        with sqlite3.connect(daemon.state_db) as db:
            return db.execute("SELECT count(*) FROM runs WHERE outcome = 'running'").fetchone()[0] > 0

    eventually(
        lambda: daemon.state_db.exists() and running() and len(deployments(kube, namespace)) > 5,
        timeout=30,
        what="a run in progress",
    )
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.process.wait(timeout=10)
    assert 0 < len(deployments(kube, namespace)) < 150, "the kill did not land mid-run"
    with sqlite3.connect(daemon.state_db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    restarted = start_daemon("kill.db", wait_for_run=False)
    eventually(
        lambda: [r["outcome"] for r in restarted.runs()][:1] == ["succeeded"],
        timeout=60,
        what="the run after the restart",
    )
    assert [r["outcome"] for r in restarted.runs()] == ["succeeded", "interrupted"]
    names = list(deployments(kube, namespace))
    assert len(names) == len(set(names)) == 150
    assert len(client.CoreV1Api(kube).list_namespaced_service(namespace).items) == 150
