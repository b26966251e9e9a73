#!/usr/bin/env python3
"""Benchmark of the Kafka-FaaS-connector on the local platform's broker.

Three figures, each beside its floor measured in the same run on the same broker:
- throughput pass-through (no function): N events already in the input topic, from the
  connector's start until the last output is read; the floor is a bare pipe (consume a batch,
  produce its bytes unchanged with the same producer settings, wait for the acks, commit) that
  parses and routes nothing;
- throughput through a trivial function (the test gateway's `dispatch`, one HTTP call per
  event), against the same floor and against the gateway alone (the same calls in a loop);
- latency at a steady 100 events/s for 10 s, input produced to output read, p50 and p99.

    python bench/connector_bench.py [--events 20000] [--function-events 5000]

The connector makes no Kubernetes API request; none are counted here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from reconcile_bench import platform_env  # noqa: E402

from faas_connector.config import Config  # noqa: E402
from faas_connector.function import Gateway as GatewayClient  # noqa: E402
from faas_connector.runtime import consumer_settings, producer_settings  # noqa: E402
from tests.connector_harness import (  # noqa: E402
    Auditor,
    ConnectorProcess,
    Gateway,
    create_topics,
    event,
    produce,
)

TARGETS = {"pass-through events/s": 2000, "function events/s": 500, "p99 ms at 100 events/s": 50}


def topics(bootstrap: str, tag: str) -> dict[str, str]:
    names = {role: f"bench-{tag}-{role}" for role in ("in", "out", "invalid", "dead", "tests")}
    create_topics(bootstrap, names.values())
    return names


def connector_env(bootstrap: str, names: dict[str, str], gateway: str, function: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": f"{names['in']}-connector",
        "KAFKA_TOPIC_INPUT": names["in"],
        "KAFKA_TOPIC_OUTPUT": names["out"],
        "KAFKA_TOPIC_INVALID_MESSAGE": names["invalid"],
        "KAFKA_TOPIC_DEAD_LETTER": names["dead"],
        "KAFKA_TOPIC_TEST_MESSAGE_OUTPUT": names["tests"],
        "OPENFAAS_GATEWAY": gateway,
        "OPENFAAS_FUNCTION_NAME": function,
    }


def drain_time(bootstrap: str, output: str, count: int, started: float) -> float:
    reader = Auditor(bootstrap, [output])
    try:
        reader.read_until(lambda seen: len(seen[output]) >= count, timeout=600)
    finally:
        reader.close()
    return time.monotonic() - started


def bare_pipe(bootstrap: str, names: dict[str, str], count: int) -> float:
    """The floor: the connector's client settings, no parse, no route, no function."""
    config = Config(bootstrap_servers=bootstrap, group_id=f"{names['in']}-bare", input_topic=names["in"])
    consumer, producer = Consumer(consumer_settings(config)), Producer(producer_settings(config))
    consumer.subscribe([names["in"]])
    started, moved = time.monotonic(), 0
    while moved < count:
        records = consumer.consume(num_messages=500, timeout=0.1)
        offsets: dict[tuple[str, int], int] = {}
        for record in records:
            if record.error() is None:
                producer.produce(names["out"], record.value())
                offsets[(record.topic(), record.partition())] = record.offset() + 1
                moved += 1
        producer.flush()
        if offsets:
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
            )
    seconds = time.monotonic() - started
    consumer.close()
    return seconds


def throughput(bootstrap: str, gateway: Gateway, count: int, function: str, logs: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    names = topics(bootstrap, tag)
    produce(bootstrap, names["in"], (event({"op": "transform", "n": n}) for n in range(count)))
    floor = bare_pipe(bootstrap, {**names, "out": topics(bootstrap, tag + "-bare")["out"]}, count)
    started = time.monotonic()
    connector = ConnectorProcess(connector_env(bootstrap, names, gateway.url, function), logs / f"{tag}.log")
    seconds = drain_time(bootstrap, names["out"], count, started)
    connector.stop()
    return {"events": count, "seconds": seconds, "events/s": count / seconds, "floor seconds": floor}


def gateway_alone(gateway: Gateway, count: int) -> float:
    client = GatewayClient(gateway.url, timeout=10)
    sample = event({"op": "transform"})
    started = time.monotonic()
    for _ in range(count):
        client.call("dispatch", sample)
    return time.monotonic() - started


def latency(
    bootstrap: str, gateway: Gateway, logs: Path, rate: int = 100, seconds: int = 10
) -> dict[str, Any]:
    names = topics(bootstrap, uuid.uuid4().hex[:8])
    connector = ConnectorProcess(connector_env(bootstrap, names, gateway.url, ""), logs / "latency.log")
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    reader.subscribe([names["out"]])
    reader.consume(timeout=2)  # joined before the clock starts
    sent: dict[str, float] = {}
    delays: list[float] = []
    interval, total = 1 / rate, rate * seconds
    next_send = time.monotonic()
    while len(delays) < total:
        now = time.monotonic()
        if len(sent) < total and now >= next_send:
            item = event({"n": len(sent)})
            sent[item["id"]] = time.monotonic()
            producer.produce(names["in"], orjson.dumps(item))
            producer.poll(0)
            next_send += interval
        for record in reader.consume(num_messages=100, timeout=0.001):
            if record.error() is None:
                delays.append(time.monotonic() - sent[orjson.loads(record.value())["id"]])
        if now - next_send > 30:
            raise SystemExit("the connector fell more than 30 s behind")
    reader.close()
    connector.stop()
    delays.sort()
    return {
        "rate": rate,
        "events": total,
        "p50 ms": 1000 * statistics.median(delays),
        "p99 ms": 1000 * delays[int(0.99 * len(delays)) - 1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--function-events", type=int, default=5000)
    parser.add_argument("--json", type=Path, help="write the figures to this file too")
    args = parser.parse_args()
    bootstrap = platform_env()["KAFKA_BOOTSTRAP_SERVERS"]
    gateway = Gateway()
    with tempfile.TemporaryDirectory() as logs:
        plain = throughput(bootstrap, gateway, args.events, "", Path(logs))
        through = throughput(bootstrap, gateway, args.function_events, "dispatch", Path(logs))
        through["gateway alone seconds"] = gateway_alone(gateway, args.function_events)
        steady = latency(bootstrap, gateway, Path(logs))
    gateway.close()
    figures = {"pass-through": plain, "function": through, "latency": steady}
    floor = through["floor seconds"] + through["gateway alone seconds"]
    for line in (
        f"pass-through: {plain['events']} events in {plain['seconds']:.2f} s = "
        f"{plain['events/s']:,.0f} events/s; bare pipe {plain['floor seconds']:.2f} s "
        f"({plain['seconds'] / plain['floor seconds']:.2f}x the floor)",
        f"function: {through['events']} events in {through['seconds']:.2f} s = "
        f"{through['events/s']:,.0f} events/s; bare pipe {through['floor seconds']:.2f} s, the "
        f"gateway's calls alone {through['gateway alone seconds']:.2f} s "
        f"({through['seconds'] / floor:.2f}x their sum)",
        f"latency at {steady['rate']} events/s: p50 {steady['p50 ms']:.1f} ms, p99 {steady['p99 ms']:.1f} ms",
    ):
        print(line)
    measured = {
        "pass-through events/s": plain["events/s"],
        "function events/s": through["events/s"],
        "p99 ms at 100 events/s": steady["p99 ms"],
    }
    for name, target in TARGETS.items():
        met = measured[name] <= target if name.startswith("p99") else measured[name] >= target
        print(f"target {name}: {target} -> {measured[name]:,.1f} {'met' if met else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
