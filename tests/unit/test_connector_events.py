"""The connector's pure steps: parsing, expiry, routing with the slip, filling, the test-message
filter, error events, the function's answers and the configuration."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faas_connector import events
from faas_connector.config import ConfigError, from_environment
from faas_connector.function import answer

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def counting_ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"new-{next(counter)}"


def route(source: events.Event, result: events.Event | None = None, **kw: Any) -> list[events.Output]:
    options: dict[str, Any] = {
        "output_topic": "out",
        "test_topic": "tests",
        "now": NOW,
        "new_id": counting_ids(),
    }
    options.update(kw)
    return events.routed(source, source if result is None else result, **options)


def test_a_mico_0_2_event_keeps_what_the_connector_does_not_know() -> None:
    raw = b'{"specversion": "0.2", "id": "a", "type": "t", "x-custom": {"deep": [1, 2]}, "data": 5}'
    event = events.parse(raw)
    [output] = route(event)
    assert output.topic == "out"
    assert output.event["x-custom"] == {"deep": [1, 2]}
    assert output.event["specversion"] == "0.2"
    assert output.event["route"] == [{"type": "topic", "id": "out", "timestamp": NOW.isoformat()}]
    assert output.event["correlationid"] == "a"
    assert "createdfrom" not in output.event  # the id did not change
    assert orjson.loads(output.value()) == output.event


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "no value"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not an array"),
        (b'{"specversion": "9.9"}', "specversion '9.9'"),
        (b'{"id": 5}', "id is a number"),
        (b'{"routingslip": [["a"], "b"]}', "routingslip"),
        (b'{"route": {"type": "topic"}}', "route"),
        (b'{"istestmessage": "yes"}', "istestmessage"),
        (b'{"expirydate": "tomorrow"}', "not an ISO-8601 time"),
        (b'{"expirydate": "2026-01-01T00:00:00"}', "no UTC offset"),
        (b'{"routingslip": [[".."]]}', "Kafka topic names"),
        (b'{"routingslip": [["' + b"t" * 250 + b'"]]}', "Kafka topic names"),
        (b'{"data": ' + b"[" * 300 + b"]" * 300 + b"}", "deeper than 200 levels"),
        (b'{"n": 1' + b"0" * 20 + b', "data": ' + b"[" * 300 + b"]" * 300 + b"}", "deeper than 200 levels"),
        (b'{"n": 1' + b"0" * 20 + b', "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deeper than 200"),
        (b'{"data": 1e400}', "not JSON"),
        (b'{"n": 1' + b"0" * 20 + b', "data": 1e400}', "out of range"),
        (b'{"n": 1' + b"0" * 20 + b', "data": NaN}', "NaN is not JSON"),
        (b'{"n": 1' + b"0" * 20 + b', "data": "\xff"}', "not JSON"),  # not UTF-8
        (b'{"n": 1' + b"0" * 20 + b', "data": "\xed\xa0\x80"}', "not JSON"),  # a surrogate, CESU-8
        (b'{"n": 1' + b"0" * 20 + b', "data": "\\ud800"}', "not JSON"),  # a lone surrogate escaped
        (b'\xef\xbb\xbf{"n": 1' + b"0" * 20 + b"}", "not JSON"),  # a byte order mark
        (b'\xef\xbb\xbf{"n": 1}', "not JSON"),
    ],
)
def test_malformed_records_are_named(raw: bytes, reason: str) -> None:
    with pytest.raises(events.InvalidEventError) as caught:
        events.parse(raw)
    assert reason.replace("not an array", "a JSON object, not an array") in str(caught.value)


@pytest.mark.parametrize(
    "number",
    [b"18446744073709551616", b"-1180591620717411303424", b"-9223372036854775809",
     b"12345678901234567890123", b"9007199254740993", b"0.1", b"1e308", b"-0.0", b"18446744073709551615"],
)  # fmt: skip
def test_numbers_pass_through_exactly(number: bytes) -> None:
    """orjson alone would turn an integer past 64 bits into a float: data must not change."""
    raw = b'{"id": "a", "data": {"n": ' + number + b', "list": [' + number + b"]}}"
    [output] = route(events.parse(raw))
    sent = repr(json.loads(raw)["data"])  # repr: 2**64 == float(2**64), but not as text
    assert repr(output.event["data"]) == sent
    assert repr(json.loads(output.value())["data"]) == sent


_TEXT = st.text(st.characters(exclude_categories=("Cs",)))  # what UTF-8 can hold
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


@given(_JSON)
def test_what_is_read_is_written_back_unchanged(value: Any) -> None:
    assert repr(events.loads(events.dumps(value))) == repr(value)


@given(_JSON, st.integers(min_value=2**64))
def test_both_readers_accept_and_refuse_the_same(value: Any, big: int) -> None:
    """Whether a record is valid must not depend on a long number elsewhere in it."""
    text = events.dumps(value)
    with_big = b'{"big": ' + str(big).encode() + b', "v": ' + text + b"}"
    assert repr(events.loads(with_big)["v"]) == repr(events.loads(text))
    written = events.dumps({"s": "\u00e9" * 100, "big": big})
    assert len(written) == 200 + len(str(big)) + len('{"s":"","big":}')  # UTF-8, not \\u escapes


def test_expiry() -> None:
    assert events.expired({"expirydate": (NOW - timedelta(seconds=1)).isoformat()}, NOW)
    assert not events.expired({"expirydate": (NOW + timedelta(seconds=1)).isoformat()}, NOW)
    assert events.expired({"expirydate": "2026-11-26T11:59:59Z"}, NOW)
    assert not events.expired({}, NOW)


def test_the_routing_slip_pops_its_last_step_and_fans_out() -> None:
    source = {"id": "in", "correlationid": "c", "routingslip": [["later"], ["a", "b", "a"]]}
    outputs = route(source, output_topic=None)
    assert [o.topic for o in outputs] == ["a", "b"]  # a topic twice in a step: one copy
    for output in outputs:
        assert output.event["routingslip"] == [["later"]]
        assert output.event["correlationid"] == "c"
    assert outputs[0].event is not outputs[1].event
    outputs[0].event["routingslip"][0].append("x")
    assert outputs[1].event["routingslip"] == [["later"]]  # copies share nothing


def test_a_result_with_a_new_id_is_linked_to_its_source() -> None:
    source = {"id": "in"}
    [output] = route(source, {"id": "made", "data": 1})
    assert output.event["createdfrom"] == "in"
    assert output.event["correlationid"] == "in"
    [filled] = route(source, {"data": 2})
    assert filled.event["id"] == "new-1"
    assert filled.event["createdfrom"] == "in"
    assert filled.event["time"] == NOW.isoformat()


def test_no_slip_and_no_output_topic_is_unroutable() -> None:
    with pytest.raises(events.InvalidEventError, match="no routing slip"):
        route({"id": "x"}, output_topic=None)
    with pytest.raises(events.InvalidEventError, match="no routing slip"):
        route({"id": "x", "routingslip": []}, output_topic=None)


def test_a_test_message_is_filtered_out_before_its_topic() -> None:
    source = {"id": "t", "istestmessage": True, "filteroutbeforetopic": "b", "routingslip": [["a", "b"]]}
    outputs = route(source)
    assert [o.topic for o in outputs] == ["a", "tests"]
    assert outputs[1].event["route"][-1]["id"] == "b"
    not_a_test = {**source, "istestmessage": False}
    assert [o.topic for o in route(not_a_test)] == ["a", "b"]


def test_partitionkey_is_the_record_key() -> None:
    [output] = route({"id": "k", "partitionkey": "customer-7"})
    assert output.key == b"customer-7"
    [unkeyed] = route({"id": "k"})
    assert unkeyed.key is None


def test_an_error_event_carries_its_source() -> None:
    source = {"id": "s", "correlationid": "c", "data": {"a": 1}}
    error = events.error_event(
        source, "boom", trace="function_error", origin="kafka://g/in", now=NOW, new_id=lambda: "e1"
    )
    assert error["id"] == "e1"
    assert error["iserrormessage"] is True
    assert error["errormessage"] == "boom"
    assert error["createdfrom"] == "s"
    assert error["correlationid"] == "c"
    assert error["source"] == "kafka://g/in"
    assert error["data"] == source
    raw = events.error_event(
        b"\xff{broken", "bad", trace="malformed", origin="o", now=NOW, new_id=lambda: "e2"
    )
    assert raw["data"] == "\ufffd{broken"
    assert "createdfrom" not in raw


@pytest.mark.parametrize(
    ("status", "body", "transient", "error"),
    [
        (200, b"[]", False, None),
        (200, b'[{"id": "a"}, {"id": "b"}]', False, None),
        (200, b'{"id": "a"}', False, "not an array"),
        (200, b"<html>", False, "not JSON"),
        (200, b"[1]", False, "invalid event"),
        (404, b"function not found", False, "answered 404: function not found"),
        (500, b"", False, "answered 500: (empty)"),
        (502, b"", True, "502"),
        (503, b"", True, "503"),
        (504, b"", True, "504"),
    ],
)
def test_what_a_function_answer_means(status: int, body: bytes, transient: bool, error: str | None) -> None:
    meant = answer(status, body)
    assert meant.transient is transient
    if error is None:
        assert meant.error is None
        assert meant.events == orjson.loads(body)
    else:
        assert meant.error is not None
        assert error in meant.error


def test_configuration_from_the_rendered_environment() -> None:
    config = from_environment(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "bootstrap.kafka:9092",
            "KAFKA_GROUP_ID": "kafka-faas-connector-abc",
            "KAFKA_TOPIC_INPUT": "transform-request",
            "KAFKA_TOPIC_OUTPUT": "transform-result",
            "KAFKA_TOPIC_INVALID_MESSAGE": "InvalidMessage",
            "KAFKA_TOPIC_DEAD_LETTER": "DeadLetter",
            "KAFKA_TOPIC_TEST_MESSAGE_OUTPUT": "TestMessagesOutput",
            "OPENFAAS_GATEWAY": "http://gateway.openfaas:8080",
        }
    )
    assert config.function is None
    assert config.output_topic == "transform-result"
    assert config.origin == "kafka://kafka-faas-connector-abc/transform-request"
    without_output = from_environment({"KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    assert without_output.output_topic is None


def test_a_wrong_setting_is_named_and_a_credential_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        from_environment(
            {
                "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
                "OPENFAAS_GATEWAY": "http://user:hunter2@gw:8080",
                "OPENFAAS_FUNCTION_NAME": "Not_A_Name",
                "CONNECTOR_FUNCTION_TIMEOUT_SECONDS": "nan",
            }
        )
    message = str(caught.value)
    assert "OPENFAAS_GATEWAY" in message
    assert "OPENFAAS_FUNCTION_NAME" in message
    assert "CONNECTOR_FUNCTION_TIMEOUT_SECONDS" in message
    assert "hunter2" not in message


def test_an_empty_step_of_the_slip_is_unroutable_not_dropped() -> None:
    with pytest.raises(events.InvalidEventError, match="names no topic"):
        route({"id": "x", "routingslip": [["later"], []]})


def test_a_result_without_an_id_is_linked_to_its_source() -> None:
    """As the data of an error event (a result that cannot be routed), as on its way out."""
    result = events.linked({"id": "in"}, {"data": 1}, counting_ids())
    assert result == {"data": 1, "id": "new-1", "correlationid": "in", "createdfrom": "in"}
    own = events.linked({"id": "in", "correlationid": "c"}, {"id": "r", "correlationid": "k"}, counting_ids())
    assert own == {"id": "r", "correlationid": "k", "createdfrom": "in"}


def test_a_new_id_always_names_its_origin() -> None:
    [output] = route({"id": "in"}, {"id": "new", "createdfrom": "older"})
    assert output.event["createdfrom"] == "in"
    [kept] = route({"id": "in", "routingslip": None})
    assert kept.event["routingslip"] is None
