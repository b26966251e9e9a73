"""The order at-least-once rests on: an input offset is committed only after every output of
its record was acknowledged. The broker tests (tests/integration/test_connector.py,
tests/faults/test_connector_faults.py) prove nothing is lost end to end, but the window in which
a wrong order loses records (a commit sent before the producer's acknowledgements, then a
crash) lasts milliseconds there; here the Kafka client is replaced by stand-ins that hold every
acknowledgement back until `flush`, so a commit made before it is seen at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import KafkaError, TopicPartition

from faas_connector.config import Config
from faas_connector.function import Gateway
from faas_connector.metrics import Metrics
from faas_connector.runtime import Connector

TOPIC = "in"


class Record:
    def __init__(self, partition: int, offset: int, value: bytes) -> None:
        self._partition, self._offset, self._value = partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


class Producer:
    """Acknowledges nothing until `flush`; `refuse` names topics whose writes fail for good."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.waiting: list[tuple[str, Callable[..., None]]] = []
        self.written: list[str] = []
        self.refuse = refuse

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Callable[..., None]) -> None:
        self.waiting.append((topic, on_delivery))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float | None = None) -> int:
        waiting, self.waiting = self.waiting, []
        for topic, delivered in waiting:
            if topic in self.refuse:
                delivered(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), None)
            else:
                self.written.append(topic)
                delivered(None, None)
        return 0


class Consumer:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.commits: list[dict[int, int]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not self.producer.waiting, "an offset committed before its outputs were acknowledged"
        self.commits.append({tp.partition: tp.offset for tp in offsets})

    def pause(self, _partitions: Any) -> None: ...

    def seek(self, _partition: Any) -> None: ...


def connector(producer: Producer) -> tuple[Connector, Consumer]:
    consumer = Consumer(producer)
    config = Config(bootstrap_servers="broker:9092", input_topic=TOPIC, output_topic="out")
    running = Connector(
        config,
        consumer=consumer,  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
        gateway=Gateway(config.gateway, timeout=1),
        metrics=Metrics(),
    )
    running._assigned_now(None, [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
    return running, consumer


def event(n: int) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": f"e{n}", "data": n})


def test_offsets_are_committed_after_the_outputs_are_acknowledged() -> None:
    producer = Producer()
    running, consumer = connector(producer)
    running._handle([Record(0, 0, event(0)), Record(1, 7, event(1)), Record(0, 1, b"{not json")])
    assert consumer.commits == [{0: 2, 1: 8}]  # past the last record of each partition
    assert sorted(producer.written) == ["InvalidMessage", "out", "out"]


def test_a_record_whose_outputs_could_not_be_written_anywhere_is_not_committed() -> None:
    """Its output topic and the dead-letter topic both refuse: nothing is committed past it."""
    producer = Producer(refuse=frozenset({"out", "DeadLetter"}))
    running, consumer = connector(producer)
    running._handle([Record(0, 0, event(0))])
    assert consumer.commits == []
