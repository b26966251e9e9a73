"""`mico-reconciler diff --live` against a namespace the engine converged: what the config in a
working tree (or at a revision) would do to the cluster, and that asking changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from reconciler.engine import Engine
from tests.helpers import example_data
from tests.integration.conftest import BACKEND, ConfigRepo, Platform, kafka_settings, versions


def image_only() -> dict[str, Any]:
    """The example with the backend run from an image: no build in these tests."""
    data = example_data()
    backend = next(s for s in data["services"] if s["shortName"] == BACKEND)
    del backend["source"]
    backend["image"] = "docker.io/ustmico/spring-boot-realworld-example-app:v1.0.0"
    return data


@pytest.fixture
def converged(
    config_repo: ConfigRepo, make_engine: Callable[..., Engine], tmp_path: Path
) -> tuple[Path, dict[str, Any]]:
    """A clone of the config repository (origin: the URL the engine synced from), after a sync."""
    data = image_only()
    config_repo.push(data)
    result = make_engine().run("sync")
    assert result.outcome.value == "succeeded", result.error
    work = tmp_path / "review"
    subprocess.run(["git", "clone", "-q", config_repo.url, str(work)], check=True)
    return work, data


def live_diff(
    platform: Platform, namespace: str, work: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    settings = [f"--{k.replace('_', '-')}={v}" for k, v in kafka_settings(platform, namespace).items()]
    command = [sys.executable, "-m", "reconciler", "diff", "--live", "--repo", str(work)]
    return subprocess.run(
        [*command, "--kubeconfig", str(platform.kubeconfig), *settings, *extra],
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_unchanged_config_shows_no_change(
    platform: Platform, namespace: str, converged: tuple[Path, dict[str, Any]]
) -> None:
    work, _ = converged
    result = live_diff(platform, namespace, work)
    assert result.returncode == 0, result.stderr
    assert "No changes: the cluster matches the config." in result.stdout


def test_drift_prune_and_change_each_shown_and_nothing_written(
    platform: Platform, kube: client.ApiClient, namespace: str, converged: tuple[Path, dict[str, Any]]
) -> None:
    work, data = converged
    apps = client.AppsV1Api(kube)
    backend = next(
        d for d in apps.list_namespaced_deployment(namespace).items if d.metadata.name.startswith(BACKEND)
    )
    apps.patch_namespaced_deployment_scale(backend.metadata.name, namespace, {"spec": {"replicas": 5}})
    del data["applications"][1]  # messaging-example: its objects would be pruned
    data["applications"][0]["services"][0]["replicas"] = 3  # the frontend: changed in the config
    (work / "mico.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    before = versions(kube, namespace)

    result = live_diff(platform, namespace, work)

    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert (
        f"* drift Deployment/{backend.metadata.name}: changed outside the reconciler: spec.replicas: 5 -> 2"
        in out
    )
    assert "    spec.replicas: 5 -> 2" in out
    frontend = next(line for line in out.splitlines() if line.startswith("~ update Deployment/react-redux"))
    assert "changed in the config: spec.replicas: 1 -> 3" in frontend
    pruned = [line.split()[2] for line in out.splitlines() if line.startswith("- prune ")]
    assert sorted(p.split("/")[0] for p in pruned) == ["Deployment", "Deployment", "Deployment", "Service"]
    assert any(p.startswith("Deployment/msg-validator-") for p in pruned)
    assert any(p.startswith("Deployment/kafka-faas-connector-") for p in pruned)
    assert versions(kube, namespace) == before  # a dry run stores nothing

    report = json.loads(live_diff(platform, namespace, work, "--output", "json").stdout)
    assert report["hasChanges"] is True
    assert {c["change"] for c in report["changes"]} == {"drift", "update", "prune"}
    markdown = live_diff(platform, namespace, work, "--output", "markdown").stdout
    assert markdown.startswith("### mico-reconciler diff --live `working tree` against namespace ")
    assert versions(kube, namespace) == before


def test_a_new_service_is_a_create_with_what_the_apiserver_would_store(
    platform: Platform, namespace: str, converged: tuple[Path, dict[str, Any]]
) -> None:
    work, data = converged
    data["applications"][0]["services"][1]["instance"] = "canary"  # a second backend instance
    (work / "mico.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "commit", "-qam", "canary"], check=True)
    result = live_diff(platform, namespace, work, "--head", "HEAD")
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("Comparing HEAD@")
    creates = [line for line in result.stdout.splitlines() if line.startswith("+ create Deployment/")]
    assert len(creates) == 1
    fields = result.stdout.split(creates[0], 1)[1]
    assert (
        "spec.template.spec.containers[0].terminationMessagePath: absent -> " in fields
    )  # the apiserver's default
    assert "spec.replicas: absent -> 2" in fields


@pytest.mark.usefixtures("kafkatopic_crd")
def test_strimzi_topics_are_planned_as_the_daemon_plans_them(
    platform: Platform,
    namespace: str,
    config_repo: ConfigRepo,
    make_engine: Callable[..., Engine],
    tmp_path: Path,
) -> None:
    """With the daemon's --topics strimzi, its KafkaTopics are neither new nor pruned; a renamed
    topic is a KafkaTopic to create, and the old one is kept as the daemon keeps it."""
    data = image_only()
    config_repo.push(data)
    strimzi = {"topics": "strimzi", "strimzi_cluster": "mico-kafka", "topic_partitions": 2}
    assert make_engine(**strimzi).run("sync").outcome.value == "succeeded"
    work = tmp_path / "review"
    subprocess.run(["git", "clone", "-q", config_repo.url, str(work)], check=True)
    flags = ["--topics", "strimzi", "--strimzi-cluster", "mico-kafka", "--topic-partitions", "2"]

    unchanged = live_diff(platform, namespace, work, *flags)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr

    app = data["applications"][1]
    app["services"][0]["topics"][0]["name"] = "renamed-request"
    app["kafkaFaasConnectors"][0]["inputTopic"] = "renamed-request"
    (work / "mico.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    renamed = live_diff(platform, namespace, work, *flags)
    assert renamed.returncode == 1, renamed.stderr
    lines = renamed.stdout.splitlines()
    assert len([line for line in lines if line.startswith("+ create KafkaTopic/")]) == 1
    assert not [line for line in lines if "KafkaTopic/" in line and not line.startswith("+ create")]
    without = live_diff(platform, namespace, work)  # not told the daemon's mode: its topics are not seen
    assert "KafkaTopic/" not in without.stdout


def test_without_a_cluster_it_fails_with_one_line(
    tmp_path: Path, converged: tuple[Path, dict[str, Any]]
) -> None:
    work, _ = converged
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
        "users: [{name: u, user: {}}]\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "diff",
            "--live",
            "--repo",
            str(work),
            "--kubeconfig",
            str(kubeconfig),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 4
    assert result.stderr.startswith("mico-reconciler: Kubernetes API: ")
    assert "Traceback" not in result.stderr
