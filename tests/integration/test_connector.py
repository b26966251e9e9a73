"""The Kafka-FaaS-connector on the platform's Kafka broker, with a real HTTP server standing in
for the OpenFaaS gateway: MICO's message flow, and nothing lost when the function fails."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.render import Settings, render
from reconciler.spec import load
from tests.connector_harness import Auditor, ConnectorProcess, Gateway, create_topics, event, origins, produce
from tests.helpers import example_data
from tests.integration.conftest import Platform


@dataclass
class Topics:
    input: str
    output: str
    invalid: str
    dead: str
    tests: str
    a: str
    b: str

    def written(self) -> list[str]:
        return [self.output, self.invalid, self.dead, self.tests, self.a, self.b]


@pytest.fixture
def topics(platform: Platform, kafka_prefix: str) -> Topics:
    names = Topics(*(f"{kafka_prefix}{n}" for n in ("in", "out", "invalid", "dead", "tests", "a", "b")))
    create_topics(platform.kafka_bootstrap, [names.input], partitions=2)
    create_topics(platform.kafka_bootstrap, names.written())
    return names


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    server = Gateway()
    yield server
    server.mode = "up"
    server.close()


@pytest.fixture
def start_connector(
    platform: Platform, topics: Topics, gateway: Gateway, tmp_path: Path
) -> Iterator[Callable[..., ConnectorProcess]]:
    started: list[ConnectorProcess] = []

    def start(**env: str) -> ConnectorProcess:
        settings = {
            "KAFKA_BOOTSTRAP_SERVERS": platform.kafka_bootstrap,
            "KAFKA_GROUP_ID": f"{topics.input}-connector",
            "KAFKA_TOPIC_INPUT": topics.input,
            "KAFKA_TOPIC_OUTPUT": topics.output,
            "KAFKA_TOPIC_INVALID_MESSAGE": topics.invalid,
            "KAFKA_TOPIC_DEAD_LETTER": topics.dead,
            "KAFKA_TOPIC_TEST_MESSAGE_OUTPUT": topics.tests,
            "OPENFAAS_GATEWAY": gateway.url,
            "CONNECTOR_FUNCTION_TIMEOUT_SECONDS": "1",
            "CONNECTOR_RETRY_MAX_SECONDS": "1",
            **env,
        }
        connector = ConnectorProcess(settings, tmp_path / f"connector-{len(started)}.log")
        started.append(connector)
        return connector

    yield start
    for connector in started:
        if connector.process.poll() is None:
            connector.kill()


@pytest.fixture
def auditor(platform: Platform, topics: Topics) -> Iterator[Auditor]:
    reader = Auditor(platform.kafka_bootstrap, topics.written())
    yield reader
    reader.close()


def arrived(auditor: Auditor, topic: str, count: int) -> None:
    auditor.read_until(lambda seen: len(seen[topic]) >= count)


def test_pass_through_keeps_every_attribute_and_fills_the_route(
    platform: Platform, topics: Topics, start_connector: Callable[..., ConnectorProcess], auditor: Auditor
) -> None:
    mico = {"specversion": "0.2", "id": "mico-1", "type": "t", "source": "/s", "x-extension": [1]}
    sent = [mico, event({"n": 1}, partitionkey="customer-7"), event({"n": 2}, correlationid="chain")]
    produce(platform.kafka_bootstrap, topics.input, sent)
    connector = start_connector(OPENFAAS_FUNCTION_NAME="")
    arrived(auditor, topics.output, 3)
    auditor.settle(1)
    out = {e["id"]: e for e in auditor.seen[topics.output]}
    assert set(out) == {e["id"] for e in sent}
    assert out["mico-1"]["x-extension"] == [1]
    assert out["mico-1"]["specversion"] == "0.2"
    assert out["mico-1"]["correlationid"] == "mico-1"
    assert [hop["type"] for hop in out["mico-1"]["route"]] == ["topic"]
    assert out[sent[2]["id"]]["correlationid"] == "chain"
    keyed = auditor.keys[topics.output][[e["id"] for e in auditor.seen[topics.output]].index(sent[1]["id"])]
    assert keyed == b"customer-7"
    assert connector.metric("mico_connector_events_received_total") == 3
    assert connector.metric('mico_connector_events_sent_total{destination="topic"}') == 3
    assert connector.stop() == 0


def test_the_function_transforms_splits_filters_and_routes(
    platform: Platform, topics: Topics, start_connector: Callable[..., ConnectorProcess], auditor: Auditor
) -> None:
    transform = event({"op": "transform"})
    split = event({"op": "split", "parts": 3})
    dropped = event({"op": "filter"})
    routed = event({"op": "route", "to": [[topics.b], [topics.a, topics.b]]})
    test_message = event(
        {"op": "route", "to": [[topics.a]]}, istestmessage=True, filteroutbeforetopic=topics.a
    )
    produce(platform.kafka_bootstrap, topics.input, [transform, split, dropped, routed, test_message])
    connector = start_connector(OPENFAAS_FUNCTION_NAME="dispatch")
    arrived(auditor, topics.output, 4)
    auditor.read_until(lambda seen: seen[topics.a] and len(seen[topics.b]) == 1 and seen[topics.tests])
    auditor.settle(1)
    out = auditor.seen[topics.output]
    assert [e["data"] for e in out if e["id"] == transform["id"]] == [
        {"op": "transform", "transformed": True}
    ]
    parts = [e for e in out if e.get("createdfrom") == split["id"]]
    assert sorted(e["id"] for e in parts) == [f"{split['id']}-part-{n}" for n in range(3)]
    assert all(e["correlationid"] == split["id"] for e in parts)
    assert [[hop["type"] for hop in e["route"]] for e in parts] == [["faas-function", "topic"]] * 3
    assert dropped["id"] not in origins(auditor.seen[topics.output])  # `[]` filters it out
    [to_a] = auditor.seen[topics.a]
    [to_b] = auditor.seen[topics.b]
    assert to_a["id"] == to_b["id"] == routed["id"]
    assert to_a["routingslip"] == to_b["routingslip"] == [[topics.b]]  # the rest of the slip travels on
    [filtered] = auditor.seen[topics.tests]
    assert filtered["id"] == test_message["id"]
    assert [(hop["type"], hop["id"]) for hop in filtered["route"]] == [
        ("faas-function", "dispatch"),
        ("topic", topics.a),
    ]
    assert connector.metric("mico_connector_function_duration_seconds_count") == 5
    assert not auditor.seen[topics.invalid]


def test_unusable_records_become_error_events_with_their_source(
    platform: Platform,
    topics: Topics,
    start_connector: Callable[..., ConnectorProcess],
    auditor: Auditor,
    gateway: Gateway,
) -> None:
    expired = event({"op": "transform"}, expirydate=(datetime.now(UTC) - timedelta(minutes=1)).isoformat())
    nowhere = event({"op": "route", "to": []})  # an empty slip and no output topic
    produce(platform.kafka_bootstrap, topics.input, [b"{not json", expired, nowhere])
    start_connector(OPENFAAS_FUNCTION_NAME="dispatch", KAFKA_TOPIC_OUTPUT="")
    arrived(auditor, topics.invalid, 3)
    errors = auditor.seen[topics.invalid]
    assert all(e["iserrormessage"] is True for e in errors)
    by_source = {e.get("createdfrom"): e for e in errors}
    assert by_source[expired["id"]]["errormessage"] == "the event has already expired"
    assert by_source[expired["id"]]["data"] == expired
    assert "no routing slip" in by_source[nowhere["id"]]["errormessage"]
    # the function's result is what could not be routed: it is the data, not the input
    assert by_source[nowhere["id"]]["data"]["routingslip"] == []
    assert by_source[nowhere["id"]]["data"]["route"][-1] == {
        "type": "faas-function",
        "id": "dispatch",
        "timestamp": by_source[nowhere["id"]]["data"]["route"][-1]["timestamp"],
    }
    assert by_source[None]["data"] == "{not json"
    assert by_source[None]["source"] == f"kafka://{topics.input}-connector/{topics.input}"
    assert gateway.calls == 1  # the expired event and the malformed record never reached the function


def test_records_too_large_or_too_deep_are_errors_and_the_connector_goes_on(
    platform: Platform, topics: Topics, start_connector: Callable[..., ConnectorProcess], auditor: Auditor
) -> None:
    """A record near the broker's limit (its error event would exceed it), JSON nested past what
    can be written back, and a function answer larger than a record: each becomes an error
    event, the last on the dead-letter topic, and the records after them arrive."""
    deep = b'{"id": "deep", "data": ' + b"[" * 300 + b"]" * 300 + b"}"
    huge = event({"op": "huge"})
    after = event({"op": "transform"})
    produce(platform.kafka_bootstrap, topics.input, [b"#" * 999_000, deep, huge, after])
    connector = start_connector(OPENFAAS_FUNCTION_NAME="dispatch")
    arrived(auditor, topics.invalid, 2)
    arrived(auditor, topics.dead, 1)
    arrived(auditor, topics.output, 1)
    [truncated] = [e for e in auditor.seen[topics.invalid] if isinstance(e["data"], dict)]
    [nested] = [e for e in auditor.seen[topics.invalid] if isinstance(e["data"], str)]
    assert truncated["data"]["truncated"] is True
    assert truncated["data"]["excerpt"] == "#" * 1000
    assert "deeper than 200 levels" in nested["errormessage"]
    [dead] = auditor.seen[topics.dead]
    assert dead["createdfrom"] == huge["id"]
    assert "could not be written to topic" in dead["errormessage"]
    assert dead["data"]["truncated"] is True
    assert [e["id"] for e in auditor.seen[topics.output]] == [after["id"]]
    assert connector.process.poll() is None


def test_an_unknown_function_and_a_crashing_one_are_errors_not_retries(
    platform: Platform,
    topics: Topics,
    start_connector: Callable[..., ConnectorProcess],
    auditor: Auditor,
    gateway: Gateway,
) -> None:
    first = event({"op": "transform"})
    produce(platform.kafka_bootstrap, topics.input, [first])
    connector = start_connector(OPENFAAS_FUNCTION_NAME="no-such-function")
    arrived(auditor, topics.invalid, 1)
    assert "answered 404" in auditor.seen[topics.invalid][0]["errormessage"]
    connector.stop()
    gateway.mode = "error"
    second = event({"op": "transform"})
    produce(platform.kafka_bootstrap, topics.input, [second])
    start_connector(OPENFAAS_FUNCTION_NAME="dispatch")
    arrived(auditor, topics.invalid, 2)
    assert auditor.seen[topics.invalid][1]["createdfrom"] == second["id"]
    assert "answered 500" in auditor.seen[topics.invalid][1]["errormessage"]


@pytest.mark.parametrize("fault", ["down", "hang"])
def test_a_function_down_or_hanging_loses_nothing(
    platform: Platform,
    topics: Topics,
    start_connector: Callable[..., ConnectorProcess],
    auditor: Auditor,
    gateway: Gateway,
    fault: str,
) -> None:
    """502 for 10 s, or answers held past the timeout: the records wait, paused, and all arrive
    once the function is back; none becomes an error."""
    gateway.hang_seconds = 3
    connector = start_connector(OPENFAAS_FUNCTION_NAME="dispatch")
    before = [event({"op": "transform", "n": n}) for n in range(20)]
    produce(platform.kafka_bootstrap, topics.input, before)
    arrived(auditor, topics.output, 20)
    gateway.mode = fault
    broken = time.monotonic()
    during = [event({"op": "transform", "n": n}) for n in range(20, 60)]
    produce(platform.kafka_bootstrap, topics.input, during)
    auditor.read_until(lambda _seen: time.monotonic() - broken >= 10, 15)  # 10 s of the fault
    assert connector.metric("mico_connector_function_retries_total") >= 3
    gateway.mode = "up"
    arrived(auditor, topics.output, 60)
    auditor.settle(2)
    sent = {e["id"] for e in before + during}
    assert set(origins(auditor.seen[topics.output])) == sent
    assert not auditor.seen[topics.invalid]
    assert not auditor.seen[topics.dead]
    assert connector.stop() == 0


def test_an_unwritable_destination_goes_to_the_dead_letter_topic(
    platform: Platform, topics: Topics, start_connector: Callable[..., ConnectorProcess], auditor: Auditor
) -> None:
    missing = f"{topics.input}-never-created"
    lost = event({"op": "route", "to": [[missing, topics.a]]})
    after = event({"op": "transform"})
    produce(platform.kafka_bootstrap, topics.input, [lost, after])
    start_connector(OPENFAAS_FUNCTION_NAME="dispatch")
    arrived(auditor, topics.dead, 1)
    arrived(auditor, topics.output, 1)
    [dead] = auditor.seen[topics.dead]
    assert missing in dead["errormessage"]
    assert dead["data"]["id"] == lost["id"]
    assert [e["id"] for e in auditor.seen[topics.a]] == [lost["id"]]  # the other copy was written


def test_two_replicas_share_the_partitions_and_lose_nothing(
    platform: Platform,
    topics: Topics,
    start_connector: Callable[..., ConnectorProcess],
    auditor: Auditor,
) -> None:
    first = start_connector(OPENFAAS_FUNCTION_NAME="")
    sent = [event({"n": n}, partitionkey=str(n)) for n in range(400)]
    produce(platform.kafka_bootstrap, topics.input, sent[:200])
    second = start_connector(OPENFAAS_FUNCTION_NAME="")  # a rebalance, while records flow
    produce(platform.kafka_bootstrap, topics.input, sent[200:])
    arrived(auditor, topics.output, 400)
    assert first.stop() == 0  # the other replica takes its partitions over
    more = [event({"n": n}) for n in range(400, 450)]
    produce(platform.kafka_bootstrap, topics.input, more)
    arrived(auditor, topics.output, 450)
    auditor.settle(2)
    counts = Counter(origins(auditor.seen[topics.output]))
    assert set(counts) == {e["id"] for e in sent + more}
    assert sum(counts.values()) == 450  # clean handovers: no duplicate either
    assert second.metric("mico_connector_events_received_total") > 0


def test_the_messaging_example_with_the_rendered_environment(
    platform: Platform, kafka_prefix: str, gateway: Gateway, tmp_path: Path
) -> None:
    """The example's connector between transform-request and transform-result, configured by
    exactly the environment the reconciler renders for it (the broker and gateway addresses
    pointed at the platform's)."""
    data = example_data()
    app = next(a for a in data["applications"] if a.get("kafkaFaasConnectors"))
    connector_spec = app["kafkaFaasConnectors"][0]
    connector_spec["inputTopic"] = f"{kafka_prefix}transform-request"
    connector_spec["outputTopic"] = f"{kafka_prefix}transform-result"
    settings = Settings(
        kafka_bootstrap_servers=platform.kafka_bootstrap,
        openfaas_gateway=gateway.url,
        invalid_message_topic=f"{kafka_prefix}InvalidMessage",
        dead_letter_topic=f"{kafka_prefix}DeadLetter",
        test_message_output_topic=f"{kafka_prefix}TestMessagesOutput",
    )
    objects = render(load({"mico.yaml": _yaml(data)}), settings, built={})
    environments = [
        {e["name"]: e["value"] for e in o["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        for o in objects
        if o["kind"] == "Deployment"
    ]
    [env] = [e for e in environments if "OPENFAAS_GATEWAY" in e]
    assert env["KAFKA_TOPIC_INPUT"] == connector_spec["inputTopic"]
    create_topics(
        platform.kafka_bootstrap,
        [env[k] for k in env if k.startswith("KAFKA_TOPIC_")],
    )
    output, invalid = env["KAFKA_TOPIC_OUTPUT"], env["KAFKA_TOPIC_INVALID_MESSAGE"]
    reader = Auditor(platform.kafka_bootstrap, [output, invalid])
    connector = ConnectorProcess(env, tmp_path / "example.log")
    try:
        generated = [event({"message": f"hello {n}"}) for n in range(50)]  # the test-message generator's role
        produce(platform.kafka_bootstrap, env["KAFKA_TOPIC_INPUT"], generated)
        reader.read_until(lambda seen: len(seen[output]) >= 50)
        assert {e["id"] for e in reader.seen[output]} == {e["id"] for e in generated}
        assert not reader.seen[invalid]
    finally:
        reader.close()
        assert connector.stop() == 0


def _yaml(data: object) -> bytes:
    import yaml

    return yaml.safe_dump(data, sort_keys=False).encode()
