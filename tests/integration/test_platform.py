"""Smoke tests proving each part of the local platform is the real thing."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.conftest import Platform

T = TypeVar("T")
KWOK_NODES = {"kwok-node-0", "kwok-node-1"}


def eventually(check: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def pod_template(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }


def test_deployment_gets_replicaset_and_running_pods_on_kwok_nodes(
    kube: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": pod_template({"app": "web"}),
            },
        },
    )
    replica_sets = eventually(lambda: apps.list_namespaced_replica_set(namespace).items, what="a ReplicaSet")
    assert replica_sets[0].metadata.owner_references[0].name == "web"

    def running_pods() -> list[Any] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        running = [p for p in pods if p.status.phase == "Running"]
        return running if len(running) == 2 else None

    pods = eventually(running_pods, what="2 Running pods")
    assert {p.spec.node_name for p in pods} <= KWOK_NODES
    deployment = eventually(
        lambda: (d := apps.read_namespaced_deployment("web", namespace)).status.available_replicas == 2 and d,
        what="2 available replicas",
    )
    assert deployment.status.ready_replicas == 2


def test_job_pod_completes_and_job_succeeds(kube: client.ApiClient, namespace: str) -> None:
    batch, core = client.BatchV1Api(kube), client.CoreV1Api(kube)
    template = pod_template({"job": "once"})
    template["spec"]["restartPolicy"] = "Never"
    batch.create_namespaced_job(
        namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once"},
            "spec": {"backoffLimit": 0, "template": template},
        },
    )
    job = eventually(
        lambda: (j := batch.read_namespaced_job("once", namespace)).status.succeeded == 1 and j,
        what="the Job to succeed",
    )
    assert any(c.type == "Complete" and c.status == "True" for c in job.status.conditions)
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job=once").items
    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name in KWOK_NODES


def test_apiserver_rejects_an_invalid_object(kube: client.ApiClient, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        client.CoreV1Api(kube).create_namespaced_service(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "s" * 64},
                "spec": {"ports": [{"port": 80}]},
            },
        )
    assert caught.value.status == 422
    assert "must be no more than 63 characters" in caught.value.body


def test_rbac_denies_a_service_account_what_it_was_not_granted(
    kube: client.ApiClient, platform: Platform, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    configuration = client.Configuration()
    configuration.host = kube.configuration.host
    configuration.ssl_ca_cert = kube.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}"}
    as_sa = client.ApiClient(configuration)
    review = client.AuthenticationV1Api(as_sa).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:nobody"
    with pytest.raises(ApiException) as caught:
        client.CoreV1Api(as_sa).list_namespaced_secret(namespace)
    assert caught.value.status == 403


def test_server_side_apply_reports_a_conflict_between_field_managers(
    kube: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube)

    def apply(manager: str, value: str, force: bool = False) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "shared", "namespace": namespace},
            "data": {"key": value},
        }
        core.patch_namespaced_config_map(
            "shared",
            namespace,
            body,
            field_manager=manager,
            force=force,
            _content_type="application/apply-patch+yaml",
        )

    apply("first", "a")
    with pytest.raises(ApiException) as caught:
        apply("second", "b")
    assert caught.value.status == 409
    (cause,) = json.loads(caught.value.body)["details"]["causes"]
    assert cause == {
        "reason": "FieldManagerConflict",
        "message": 'conflict with "first"',
        "field": ".data.key",
    }
    apply("second", "b", force=True)
    assert core.read_namespaced_config_map("shared", namespace).data == {"key": "b"}


def test_kafka_produce_and_consume_round_trip(platform: Platform, kafka_prefix: str) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"{kafka_prefix}round-trip"
    admin = AdminClient({"bootstrap.servers": platform.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=30)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 2
    payload = uuid.uuid4().bytes
    producer = Producer({"bootstrap.servers": platform.kafka_bootstrap})
    producer.produce(topic, payload)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {"bootstrap.servers": platform.kafka_bootstrap, "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    try:
        message = eventually(
            lambda: (m := consumer.poll(1.0)) is not None and m.error() is None and m,
            timeout=30,
            what="the produced message",
        )
        assert message.value() == payload
    finally:
        consumer.close()


@pytest.fixture
def metrics_target(platform: Platform) -> Iterator[tuple[str, str]]:
    """A real HTTP endpoint serving one metric, registered with Prometheus through file SD."""
    marker = uuid.uuid4().hex

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f'smoke_marker_info{{marker="{marker}"}} 1\n'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target_file = platform.prometheus_targets / f"{marker}.json"
    job = f"smoke-{marker[:8]}"
    target_file.write_text(
        json.dumps([{"targets": [f"127.0.0.1:{server.server_address[1]}"], "labels": {"job": job}}])
    )
    yield job, marker
    target_file.unlink()
    server.shutdown()


def prometheus_query(platform: Platform, query: str) -> list[dict[str, Any]]:
    url = f"{platform.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def test_prometheus_scrapes_a_target(platform: Platform, metrics_target: tuple[str, str]) -> None:
    job, marker = metrics_target
    result = eventually(
        lambda: prometheus_query(platform, f'smoke_marker_info{{job="{job}"}}'),
        timeout=60,
        what="Prometheus to scrape the target",
    )
    assert result[0]["metric"]["marker"] == marker
    assert prometheus_query(platform, f'up{{job="{job}"}}')[0]["value"][1] == "1"


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_push_to_and_clone_from_the_git_server(git_repo: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))
    (work / "mico.yaml").write_text("apiVersion: ust.mico/v1\n")
    git(
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.invalid",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
        cwd=work,
    )
    git("add", "mico.yaml", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "config", cwd=work)
    git("push", "-q", git_repo, "main", cwd=work)
    clone = tmp_path / "clone"
    git("clone", "-q", git_repo, str(clone))
    assert git("rev-parse", "HEAD", cwd=clone) == git("rev-parse", "HEAD", cwd=work)
    assert (clone / "mico.yaml").read_text() == "apiVersion: ust.mico/v1\n"
