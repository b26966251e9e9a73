"""Kafka topics through the Admin API (librdkafka, via confluent-kafka).

Creation is idempotent (a topic that appeared meanwhile counts as existing); settings of an
existing topic are never altered. Any broker error raises KafkaUnavailable with what failed,
so the caller can retry with backoff while the rest of the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
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

    def topics(self, names: Iterable[str]) -> dict[str, TopicInfo]:
        """The settings of those of `names` that exist. Only they are asked for: a shared
        cluster's other topics (thousands, often) would cost the broker, the network and the
        daemon's memory for nothing."""
        names = sorted(set(names))
        if not names:
            return {}
        futures = self._client.describe_topics(TopicCollection(names), request_timeout=self.timeout)
        found = {}
        for name, future in futures.items():
            try:
                description = self._result(future)
            except KafkaException as err:
                error = err.args[0]
                if isinstance(error, KafkaError) and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue
                raise KafkaUnavailable(f"describing topic {name} failed: {error}") from err
            replicas = max((len(p.replicas) for p in description.partitions), default=0)
            found[name] = TopicInfo(partitions=len(description.partitions), replication_factor=replicas)
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

    def _result(self, future: Any) -> Any:
        """The future's result; librdkafka's own timeout comes first, this one only if it hangs."""
        try:
            return future.result(timeout=self.timeout + 5)
        except TimeoutError as err:
            raise KafkaUnavailable(f"no answer from the broker in {self.timeout + 5:.0f}s") from err

    def _outcome(self, future: object, *, allowed: int) -> str | None:
        try:
            self._result(future)
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
