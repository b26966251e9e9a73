"""Kafka topics through the Admin API, against the platform's real broker."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from kubernetes import client
from prometheus_client import REGISTRY

from reconciler.engine import Engine, RunOutcome
from tests.helpers import example_data, run
from tests.integration.conftest import PLATFORM, STATE, ConfigRepo, Platform, deployments
from tests.integration.test_platform import eventually


def messaging(prefix: str) -> dict[str, Any]:
    data = example_data()
    app = data["applications"][1]
    app["services"][0]["topics"][0]["name"] = f"{prefix}transform-request"
    app["services"][1]["topics"][0]["name"] = f"{prefix}transform-result"
    app["kafkaFaasConnectors"][0].update(
        inputTopic=f"{prefix}transform-request", outputTopic=f"{prefix}transform-result"
    )
    return data


def broker_topics(platform: Platform) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": platform.kafka_bootstrap}).list_topics(timeout=10)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def operations() -> float:
    return sum(
        REGISTRY.get_sample_value(
            "mico_reconciler_topic_operations_total", {"operation": op, "outcome": outcome}
        )
        or 0.0
        for op in ("create", "delete")
        for outcome in ("succeeded", "failed")
    )


def test_the_messaging_topics_exist_with_the_configured_partitions(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    platform: Platform,
    namespace: str,
    kafka_prefix: str,
) -> None:
    config_repo.push(messaging(kafka_prefix))
    engine = make_engine(topic_partitions=3)
    first = engine.run("test")
    assert first.outcome == RunOutcome.SUCCEEDED, first.error
    wanted = {
        f"{kafka_prefix}transform-request",
        f"{kafka_prefix}transform-result",
        f"{namespace}.InvalidMessage",
        f"{namespace}.DeadLetter",
        f"{namespace}.TestMessagesOutput",
    }
    assert {name: state for name, (state, _) in first.topics.items()} == dict.fromkeys(wanted, "created")
    assert {n: p for n, p in broker_topics(platform).items() if n in wanted} == dict.fromkeys(wanted, 3)
    messaging_status = next(s for s in first.statuses if s.app == "messaging-example")
    assert {t["name"]: t["exists"] for t in messaging_status.detail["topics"]} == dict.fromkeys(wanted, True)
    before = operations()
    second = engine.run("test")
    assert operations() == before, "a second sync performed a topic operation"
    assert {state for state, _ in second.topics.values()} == {"exists"}
    second_record, first_record = engine.store.runs(limit=2)
    assert {t["name"]: t["state"] for t in first_record["topics"]} == dict.fromkeys(wanted, "created")
    assert second_record["topics"] == [], "topics merely present are not history"


def test_a_topic_dropped_from_the_spec_is_kept_and_reported_as_orphaned(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    platform: Platform,
    kafka_prefix: str,
) -> None:
    data = messaging(kafka_prefix)
    config_repo.push(data)
    engine = make_engine()
    engine.run("test")
    dropped = f"{kafka_prefix}transform-result"
    data["applications"][1]["services"][1]["topics"][0]["name"] = f"{kafka_prefix}validated"
    data["applications"][1]["kafkaFaasConnectors"][0]["outputTopic"] = f"{kafka_prefix}validated"
    config_repo.push(data)
    result = engine.run("test")
    assert result.outcome == RunOutcome.SUCCEEDED, result.error
    assert result.topics[dropped] == ("orphaned", "no longer named by the config; kept")
    assert dropped in broker_topics(platform)
    assert REGISTRY.get_sample_value("mico_reconciler_orphaned_topics") == 1
    assert [t["name"] for t in engine.store.topic_states() if t["state"] == "orphaned"] == [dropped]
    status = run("status", "--state-db", engine.store.path).stdout
    assert f"orphaned topic {dropped}: no longer named by the config; kept" in status
    deleting = make_engine(state="state.db", topic_deletion=True)
    assert deleting.run("test").topics[dropped][0] == "deleted"
    assert dropped not in broker_topics(platform)
    deleted_run, orphaning_run = deleting.store.runs(limit=2)
    assert [(t["name"], t["state"]) for t in orphaning_run["topics"]] == [
        (dropped, "orphaned"),
        (f"{kafka_prefix}validated", "created"),
    ]
    assert [(t["name"], t["state"]) for t in deleted_run["topics"]] == [(dropped, "deleted")]
    history = run("history", "--state-db", engine.store.path).stdout
    assert f"topic {dropped}: deleted" in history
    assert f"topic {dropped}: orphaned: no longer named by the config; kept" in history


def test_topics_created_by_a_run_cut_short_before_recording_them_stay_owned(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    platform: Platform,
    kafka_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ownership is recorded before the broker creates a topic: a kill -9 right after would
    otherwise leave it unowned, never reported orphaned nor deleted with --topic-deletion."""
    data = messaging(kafka_prefix)
    config_repo.push(data)
    engine = make_engine()
    create = engine.kafka.create

    def create_then_stop(*args: Any, **kwargs: Any) -> dict[str, str | None]:
        create(*args, **kwargs)
        raise KeyboardInterrupt  # the process ends before the run records the topics

    monkeypatch.setattr(engine.kafka, "create", create_then_stop)
    with pytest.raises(KeyboardInterrupt):
        engine.run("test")
    dropped = f"{kafka_prefix}transform-result"
    assert dropped in broker_topics(platform)
    data["applications"][1]["services"][1]["topics"][0]["name"] = f"{kafka_prefix}validated"
    data["applications"][1]["kafkaFaasConnectors"][0]["outputTopic"] = f"{kafka_prefix}validated"
    config_repo.push(data)
    restarted = make_engine(state="state.db", topic_deletion=True)
    assert restarted.run("test").topics[dropped] == ("deleted", "")
    assert dropped not in broker_topics(platform)


def test_an_owned_topic_deleted_by_hand_is_not_taken_for_ours_once_made_again(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    platform: Platform,
    kafka_prefix: str,
) -> None:
    """Ownership ends with the topic: a topic of the same name someone makes later is theirs,
    never deleted with --topic-deletion."""
    data = messaging(kafka_prefix)
    config_repo.push(data)
    engine = make_engine(topic_deletion=True)
    engine.run("test")
    name = f"{kafka_prefix}transform-result"
    admin = AdminClient({"bootstrap.servers": platform.kafka_bootstrap})
    for future in admin.delete_topics([name], operation_timeout=10).values():
        future.result()
    eventually(lambda: name not in broker_topics(platform), 30, "the topic deleted by hand")
    data["applications"][1]["services"][1]["topics"][0]["name"] = f"{kafka_prefix}validated"
    data["applications"][1]["kafkaFaasConnectors"][0]["outputTopic"] = f"{kafka_prefix}validated"
    config_repo.push(data)
    assert engine.run("test").outcome == RunOutcome.SUCCEEDED

    def made_again() -> bool:
        (future,) = admin.create_topics([NewTopic(name, 1, 1)], operation_timeout=10).values()
        try:
            future.result()
        except KafkaException:
            return False  # still being deleted
        return True

    eventually(made_again, 30, "the topic made again by someone else")
    result = engine.run("test")
    assert result.outcome == RunOutcome.SUCCEEDED, result.error
    assert name not in result.topics
    assert name in broker_topics(platform), "a topic this reconciler did not make was deleted"


def test_with_the_broker_down_kubernetes_converges_and_topics_follow_later(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    platform: Platform,
    kafka_prefix: str,
    namespace: str,
    kube: Any,
) -> None:
    config_repo.push(messaging(kafka_prefix))
    engine = make_engine(kafka_backoff_seconds=1)
    stop = subprocess.run([sys.executable, str(PLATFORM), "stop", "kafka"], capture_output=True, text=True)
    assert stop.returncode == 0, stop.stderr
    try:
        result = engine.run("test")
        assert result.outcome == RunOutcome.FAILED
        assert (result.error or "").startswith("Kafka: ")
        assert len(deployments(kube, namespace)) == 5, "Deployments converge without the broker"
        assert {state for state, _ in result.topics.values()} == {"unknown"}
        assert result.retry_at is not None
        (run,) = engine.store.runs(limit=1)
        assert run["error"].startswith("Kafka: ")
    finally:
        subprocess.run([sys.executable, str(PLATFORM), "up"], check=True, capture_output=True)
    eventually(lambda: engine.run("test").outcome == RunOutcome.SUCCEEDED, timeout=60, what="the retry")
    assert f"{kafka_prefix}transform-request" in broker_topics(platform)
    assert (STATE / "env").exists()


def kafka_topic_resources(kube: Any, namespace: str) -> dict[str, dict[str, Any]]:
    listed = client.CustomObjectsApi(kube).list_namespaced_custom_object(
        "kafka.strimzi.io", "v1beta2", namespace, "kafkatopics"
    )
    return {item["spec"]["topicName"]: item for item in listed["items"]}


@pytest.mark.usefixtures("kafkatopic_crd")
def test_strimzi_mode_declares_kafka_topics_and_keeps_orphans(
    make_engine: Callable[..., Engine],
    config_repo: ConfigRepo,
    kube: Any,
    namespace: str,
    kafka_prefix: str,
) -> None:
    data = messaging(kafka_prefix)
    config_repo.push(data)
    # as the daemon runs it: KafkaTopics observed through the watch cache
    engine = make_engine(topics="strimzi", strimzi_cluster="mico-kafka", topic_partitions=2, watch=True)
    result = engine.run("test")
    assert result.outcome == RunOutcome.SUCCEEDED, result.error
    declared = kafka_topic_resources(kube, namespace)
    request = f"{kafka_prefix}transform-request"
    assert set(declared) == {
        request,
        f"{kafka_prefix}transform-result",
        f"{namespace}.InvalidMessage",
        f"{namespace}.DeadLetter",
        f"{namespace}.TestMessagesOutput",
    }
    assert declared[request]["spec"] == {"topicName": request, "partitions": 2, "replicas": 1}
    assert declared[request]["metadata"]["labels"]["strimzi.io/cluster"] == "mico-kafka"
    assert {state for state, _ in result.topics.values()} == {"declared"}
    data["applications"][1]["services"][0]["topics"][0]["name"] = f"{kafka_prefix}requests"
    data["applications"][1]["kafkaFaasConnectors"][0]["inputTopic"] = f"{kafka_prefix}requests"
    config_repo.push(data)
    second = engine.run("test")
    assert second.outcome == RunOutcome.SUCCEEDED, second.error
    assert request in kafka_topic_resources(kube, namespace), "an unreferenced KafkaTopic is kept"
    assert second.topics[request][0] == "orphaned"
    deleting = make_engine(
        topics="strimzi", strimzi_cluster="mico-kafka", topic_partitions=2, topic_deletion=True
    )
    assert deleting.run("test").outcome == RunOutcome.SUCCEEDED
    assert request not in kafka_topic_resources(kube, namespace)
