"""Kafka topics through the Admin API (librdkafka, via confluent-kafka).

Creation is idempotent (a topic that appeared meanwhile counts as existing); settings of an
existing topic are never altered. Any broker error raises KafkaUnavailable with what failed,
so the caller can retry with backoff while the rest of the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from reconciler.plan.topics import TopicInfo


class KafkaUnavailable(Exception):  # noqa: N818 - reads as a state
    """The broker could not be reached or refused an operation."""


class TopicAdmin:
    def __init__(self, bootstrap_servers: str, *, timeout: float = 10) -> None:
        self.timeout = timeout
        self._client = AdminClient(
            {
                "bootstrap.servers": bootstrap_servers,
                "socket.timeout.ms": int(timeout * 1000),
                "reconnect.backoff.max.ms": 2000,
                "log_level": 3,
            }
        )

    def topics(self) -> dict[str, TopicInfo]:
        try:
            metadata = self._client.list_topics(timeout=self.timeout)
        except KafkaException as err:
            raise KafkaUnavailable(f"listing topics failed: {err.args[0]}") from err
        found = {}
        for name, topic in metadata.topics.items():
            if topic.error is not None or name.startswith("__"):
                continue
            replicas = max((len(p.replicas) for p in topic.partitions.values()), default=0)
            found[name] = TopicInfo(partitions=len(topic.partitions), replication_factor=replicas)
        return found

    def create(
        self, names: Iterable[str], *, partitions: int, replication_factor: int
    ) -> dict[str, str | None]:
        """Per topic: None when created (or created meanwhile by someone else), else the error."""
        names = list(names)
        if not names:
            return {}
        futures = self._client.create_topics(
            [
                NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
                for name in names
            ],
            operation_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        return {
            name: self._outcome(future, allowed=KafkaError.TOPIC_ALREADY_EXISTS)
            for name, future in futures.items()
        }

    def delete(self, names: Iterable[str]) -> dict[str, str | None]:
        names = list(names)
        if not names:
            return {}
        futures = self._client.delete_topics(
            names, operation_timeout=self.timeout, request_timeout=self.timeout
        )
        return {
            name: self._outcome(future, allowed=KafkaError.UNKNOWN_TOPIC_OR_PART)
            for name, future in futures.items()
        }

    def _outcome(self, future: object, *, allowed: int) -> str | None:
        try:
            future.result(timeout=self.timeout)  # type: ignore[attr-defined]
        except KafkaException as err:
            error = err.args[0]
            if isinstance(error, KafkaError) and error.code() == allowed:
                return None
            if isinstance(error, KafkaError) and error.code() in (
                KafkaError._TRANSPORT,
                KafkaError._TIMED_OUT,
                KafkaError._ALL_BROKERS_DOWN,
            ):
                raise KafkaUnavailable(str(error)) from err
            return str(error)
        return None
