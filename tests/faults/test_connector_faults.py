"""The connector killed with SIGKILL mid-stream, and the broker restarted under it: no event is
lost, and duplicates stay within what was read but not yet committed."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import orjson
from confluent_kafka import Producer

from faas_connector.runtime import BATCH
from tests.connector_harness import Auditor, ConnectorProcess, event, origins, produce
from tests.faults.test_apiserver import platform_command
from tests.integration.conftest import Platform
from tests.integration.test_connector import (  # noqa: F401 - fixtures
    Topics,
    auditor,
    gateway,
    start_connector,
    topics,
)


def test_killed_mid_stream_and_restarted_loses_nothing(
    platform: Platform,
    topics: Topics,  # noqa: F811
    start_connector: Callable[..., ConnectorProcess],  # noqa: F811
    auditor: Auditor,  # noqa: F811
    recovery: Callable[[str, float], None],
) -> None:
    sent = [event({"op": "transform", "n": n}) for n in range(3000)]
    produce(platform.kafka_bootstrap, topics.input, sent)
    first = start_connector(OPENFAAS_FUNCTION_NAME="dispatch")
    auditor.read_until(lambda seen: len(seen[topics.output]) >= 1000)
    first.kill()  # SIGKILL: no batch finished, nothing committed on the way out
    killed = time.monotonic()
    start_connector(OPENFAAS_FUNCTION_NAME="dispatch")
    auditor.read_until(lambda seen: set(origins(seen[topics.output])) >= {e["id"] for e in sent}, 120)
    recovery("connector: SIGKILL to every event out (3,000 through a function)", time.monotonic() - killed)
    auditor.settle(2)
    counts = Counter(origins(auditor.seen[topics.output]))
    assert set(counts) == {e["id"] for e in sent}
    duplicates = sum(counts.values()) - len(sent)
    assert duplicates <= BATCH  # at most the batch in hand when it was killed
    assert not auditor.seen[topics.invalid]


def test_the_broker_restarted_mid_stream_loses_nothing(
    platform: Platform,
    topics: Topics,  # noqa: F811
    start_connector: Callable[..., ConnectorProcess],  # noqa: F811
    auditor: Auditor,  # noqa: F811
    recovery: Callable[[str, float], None],
) -> None:
    connector = start_connector(OPENFAAS_FUNCTION_NAME="dispatch")
    sent: list[str] = []  # ids the broker acknowledged
    stop = threading.Event()

    def steady() -> None:  # 50 events/s, before, during and after the outage
        writer = Producer(
            {"bootstrap.servers": platform.kafka_bootstrap, "acks": "all", "message.timeout.ms": 300000}
        )
        while not stop.is_set():
            for _ in range(5):
                item = event({"op": "transform"})
                writer.produce(
                    topics.input,
                    orjson.dumps(item),
                    on_delivery=lambda err, _m, i=item["id"]: err is None and sent.append(i),
                )
            writer.poll(0.1)
        assert writer.flush(300) == 0

    producer = threading.Thread(target=steady)
    producer.start()
    try:
        auditor.read_until(lambda seen: len(seen[topics.output]) >= 100)
        platform_command("stop", "kafka")
        time.sleep(5)
    finally:
        platform_command("up")
    back = time.monotonic()
    time.sleep(3)
    stop.set()
    producer.join(120)
    assert not producer.is_alive()
    auditor.read_until(lambda seen: set(origins(seen[topics.output])) >= set(sent), 180)
    recovery("connector: broker back to every event out", time.monotonic() - back)
    auditor.settle(2)
    counts = Counter(origins(auditor.seen[topics.output]))
    assert set(counts) == set(sent)
    assert sum(counts.values()) - len(sent) <= BATCH
    assert connector.process.poll() is None, "the connector outlived the outage"
