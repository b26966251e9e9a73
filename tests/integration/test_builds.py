"""Source-to-image builds as Kaniko Jobs, with pods simulated by KWOK at the kubelet boundary
(hack/platform/kwok/kaniko-build.yaml): a repository ending in -fails.git fails, one ending in
-hangs.git never finishes, any other succeeds and reports a digest."""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from reconciler.engine import Engine, RunOutcome
from tests.helpers import example_data, run
from tests.integration.conftest import (
    BACKEND,
    ConfigRepo,
    Platform,
    backend,
    deployments,
    sync_command,
    versions,
)

JOB = "build-spring-boot-realworld-example-app-v1-0-0"


def jobs(kube: client.ApiClient, namespace: str) -> dict[str, Any]:
    return {j.metadata.name: j for j in client.BatchV1Api(kube).list_namespaced_job(namespace).items}


def build_pod(kube: client.ApiClient, namespace: str, job: str) -> Any:
    (pod,) = (
        client.CoreV1Api(kube)
        .list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}")
        .items
    )
    return pod


def with_git(url: str, *, revision: str = "v1.0.0") -> dict[str, Any]:
    data = example_data()
    data["services"][0]["source"] = {"git": url, "revision": revision}
    return data


def builds_metric(outcome: str) -> float:
    return REGISTRY.get_sample_value("mico_reconciler_builds_total", {"outcome": outcome}) or 0.0


def test_a_source_build_deploys_the_reported_digest_and_is_not_repeated(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    config_repo.push(example_data())
    engine = make_engine()
    first = engine.run("test")
    assert first.outcome == RunOutcome.SUCCEEDED, first.error
    job = jobs(kube, namespace)[JOB]
    args = job.spec.template.spec.containers[0].args
    assert args == [
        "--context=git://github.com/UST-MICO/spring-boot-realworld-example-app.git#refs/tags/v1.0.0",
        "--dockerfile=Dockerfile",
        "--destination=docker.io/ustmico/spring-boot-realworld-example-app:v1.0.0",
        "--digest-file=/dev/termination-log",
    ]
    assert job.status.succeeded == 1
    digest = build_pod(kube, namespace, JOB).status.container_statuses[0].state.terminated.message
    assert backend(kube, namespace).spec.template.spec.containers[0].image == (
        f"docker.io/ustmico/spring-boot-realworld-example-app@{digest}"
    )
    (build,) = first.builds
    assert (build.succeeded, build.digest) == (True, digest)
    second = engine.run("test")
    assert second.builds == []
    assert second.plan is not None
    assert second.plan.actions == ()
    assert jobs(kube, namespace)[JOB].metadata.uid == job.metadata.uid


@pytest.mark.parametrize(
    ("repository", "reason"), [("broken-fails", "BackoffLimitExceeded"), ("stuck-hangs", "DeadlineExceeded")]
)
def test_a_failed_build_deploys_nothing_of_it_and_retries(
    repository: str,
    reason: str,
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    config_repo.push(with_git(f"https://git.example/team/{repository}.git"))
    engine = make_engine(build_backoff_seconds=1, settings={"build_deadline_seconds": 4})
    failed_before = builds_metric("failed")
    result = engine.run("test")
    assert result.outcome == RunOutcome.FAILED
    assert [(b.succeeded, b.reason.split(":")[0]) for b in result.builds] == [(False, reason)]
    assert not [n for n in deployments(kube, namespace) if n.startswith(BACKEND)]
    assert any(n.startswith("msg-validator") for n in deployments(kube, namespace)), "other apps go on"
    statuses = {s.app: s for s in result.statuses}
    assert statuses["realworld"].deployment.value == "Incomplete"
    assert statuses["realworld"].detail["builds"][0]["reason"].startswith(reason)
    assert statuses["messaging-example"].deployment.value in ("Deployed", "Pending")
    assert builds_metric("failed") == failed_before + 1
    (run,) = engine.store.runs(limit=1)
    assert run["builds"][0]["outcome"] == "failed"
    if repository.endswith("fails"):
        assert "exit status 2" in (result.builds[0].log_tail or "")
    assert result.retry_at is not None
    time.sleep(max(0.0, result.retry_at - time.time()))
    retry = engine.run("test")
    assert [b.decision.attempt for b in retry.builds] == [2]


def test_a_changed_revision_for_the_same_version_rebuilds_and_warns(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "https://git.example/team/backend.git"
    config_repo.push(with_git(url, revision="v1.0.0"))
    engine = make_engine()
    assert engine.run("test").outcome == RunOutcome.SUCCEEDED
    old_image = backend(kube, namespace).spec.template.spec.containers[0].image
    config_repo.push(with_git(url, revision="hotfix"))
    result = engine.run("test")
    assert result.outcome == RunOutcome.SUCCEEDED, result.error
    (build,) = result.builds
    assert build.decision.reason.startswith("the source of an already built version changed")
    assert any(
        "versions should be immutable" in r.getMessage() for r in caplog.records if r.levelname == "WARNING"
    )
    new_image = backend(kube, namespace).spec.template.spec.containers[0].image
    assert new_image != old_image
    assert new_image.endswith(build.digest or "")
    assert "#refs/tags/hotfix" in jobs(kube, namespace)[JOB].spec.template.spec.containers[0].args[0]


def test_status_and_history_show_builds(
    platform: Platform,
    config_repo: ConfigRepo,
    namespace: str,
    tmp_path: Path,
) -> None:
    config_repo.push(with_git("https://git.example/team/broken-fails.git"))
    state = str(tmp_path / "cli.db")
    sync = subprocess.run(
        sync_command(platform, config_repo.url, namespace, tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert sync.returncode == 4
    status = run("status", "--state-db", state, "realworld").stdout
    assert "realworld v1.0.0: Incomplete" in status
    assert "build build-spring-boot-realworld-example-app-v1-0-0 failed: BackoffLimitExceeded" in status
    assert "held back: not rolled out yet; it rolls out once its builds succeed" in status
    history = json.loads(run("history", "--state-db", state, "--output", "json").stdout)
    assert history[0]["builds"][0]["outcome"] == "failed"


def realworld_objects(kube: client.ApiClient, namespace: str) -> dict[str, Any]:
    return {
        name: version
        for name, version in versions(kube, namespace).items()
        if not name.startswith("V1Job") and "realworld-example-app" in name
    }


def test_an_application_rolls_out_whole_once_its_builds_succeed(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: client.ApiClient,
    namespace: str,
) -> None:
    """A failing build holds back exactly its application: its previous objects stay as they
    were, the other applications update, and it rolls out once the build succeeds."""
    first = config_repo.push(with_git("https://git.example/team/backend.git"))
    engine = make_engine(build_backoff_seconds=1)
    assert engine.run("test").outcome == RunOutcome.SUCCEEDED
    before = realworld_objects(kube, namespace)
    old_image = backend(kube, namespace).spec.template.spec.containers[0].image

    change = with_git("https://git.example/team/backend-fails.git")
    change["applications"][0]["services"][0]["replicas"] = 3  # realworld's frontend: held back
    change["applications"][1]["services"][1]["replicas"] = 2  # messaging-example's msg-validator
    change["services"].append(
        {
            "shortName": "newcomer",
            "version": "v1.0.0",
            "name": "Newcomer",
            "kafkaEnabled": True,
            "source": {"git": "https://git.example/team/newcomer-fails.git", "revision": "v1.0.0"},
        }
    )
    change["applications"].append(
        {
            "shortName": "newcomer",
            "version": "v1.0.0",
            "name": "Newcomer",
            "services": [
                {"shortName": "newcomer", "version": "v1.0.0"},
                {"shortName": "msg-validator", "version": "v1.0.0", "instance": "newcomer"},
            ],
        }
    )
    second = config_repo.push(change)
    held = engine.run("test")
    assert held.outcome == RunOutcome.FAILED
    assert sorted(b.decision.job for b in held.builds if not b.succeeded) == ["build-newcomer-v1-0-0", JOB]
    assert realworld_objects(kube, namespace) == before, "the held application's objects are unchanged"
    assert backend(kube, namespace).spec.template.spec.containers[0].image == old_image
    names = deployments(kube, namespace)
    assert not [n for n in names if n.startswith("newcomer") or n.endswith("newcomer")], "never rolled out"
    (validator,) = [d for n, d in names.items() if n.startswith("msg-validator")]
    assert validator.spec.replicas == 2, "the other application updated"
    statuses = {s.app: s for s in held.statuses}
    assert statuses["realworld"].deployment.value == "Incomplete"
    assert statuses["realworld"].detail["heldAt"] == {"revision": first, "problem": None}
    assert statuses["realworld"].detail["builds"][0]["reason"].startswith("BackoffLimitExceeded")
    assert statuses["newcomer"].detail["heldAt"] == {"revision": None, "problem": None}
    assert statuses["messaging-example"].deployment.value in ("Deployed", "Pending")
    assert engine.store.rollouts() == {"realworld@v1.0.0": first, "messaging-example@v1.0.0": second}

    fixed = copy.deepcopy(change)
    fixed["services"][0]["source"]["git"] = "https://git.example/team/backend-fixed.git"
    fixed["services"][-1]["source"]["git"] = "https://git.example/team/newcomer.git"
    third = config_repo.push(fixed)
    rolled = engine.run("test")
    assert rolled.outcome == RunOutcome.SUCCEEDED, rolled.error
    front = next(d for n, d in deployments(kube, namespace).items() if n.startswith("react-redux"))
    assert front.spec.replicas == 3
    new_image = backend(kube, namespace).spec.template.spec.containers[0].image
    assert new_image != old_image
    assert [n for n in deployments(kube, namespace) if n.startswith("newcomer")]
    assert engine.store.rollouts() == dict.fromkeys(
        ("realworld@v1.0.0", "messaging-example@v1.0.0", "newcomer@v1.0.0"), third
    )
