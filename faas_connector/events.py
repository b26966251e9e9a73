"""MICO's CloudEvents as the connector handles them: plain JSON objects, so that attributes this
code does not know (and MICO's 0.2 events, which the CloudEvents SDK refuses) pass through
unchanged. Pure: the clock and the id source are arguments, so every step is reproducible."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

Event = dict[str, Any]

#: The structured-mode versions MICO wrote (0.2) and the current one; 0.3 lies between.
SPEC_VERSIONS = frozenset({"0.2", "0.3", "1.0"})
#: Deeper JSON than this is refused: orjson writes at most 254 levels, and copies recurse.
MAX_DEPTH = 200
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
#: orjson reads an integer past 64 bits as a float: a value with such a run of digits is read by
#: the standard library instead, which keeps every integer exact.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


class InvalidEventError(ValueError):
    """A record that is not a CloudEvent this connector can route; the reason is for people."""


@dataclass(frozen=True)
class Output:
    """One record to write: the destination topic, its key (the event's `partitionkey`) and
    the event."""

    topic: str
    key: bytes | None
    event: Event

    def value(self) -> bytes:
        return dumps(self.event)


def loads(value: bytes) -> Any:
    """JSON as it was written, numbers included; a ValueError says why it is not JSON."""
    if _LONG_DIGITS.search(value) is None:
        return orjson.loads(value)
    try:  # as strict as orjson: UTF-8 without a BOM, no lone surrogate, finite numbers
        parsed = json.loads(value.decode("utf-8"), parse_float=_finite, parse_constant=_not_json)
        _stdlib_dumps(parsed)
    except RecursionError:
        raise ValueError(f"it nests deeper than {MAX_DEPTH} levels") from None
    return parsed


def dumps(value: Any) -> bytes:
    """Compact JSON; what orjson cannot write (integers past 64 bits) by the standard library."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _stdlib_dumps(value)


def _stdlib_dumps(value: Any) -> bytes:
    """A UnicodeEncodeError (a ValueError) for a string with a lone surrogate, as orjson."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


def _not_json(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def timestamp(now: datetime) -> str:
    """ISO-8601 with its offset, as MICO's `time` and route timestamps."""
    return now.isoformat()


def parse(value: bytes | None) -> Event:
    """The event in a record's value, its attributes checked where the connector relies on
    them; anything else in it is kept as it is."""
    if not value:
        raise InvalidEventError("the record has no value")
    try:
        event = loads(value)
    except ValueError as err:
        raise InvalidEventError(f"the record is not JSON: {err}") from None
    return checked(event)


def checked(event: Any) -> Event:
    if not isinstance(event, dict):
        raise InvalidEventError(f"a CloudEvent is a JSON object, not {_json_type(event)}")
    version = event.get("specversion")
    if version is not None and version not in SPEC_VERSIONS:
        raise InvalidEventError(f"specversion {version!r} is not one of {', '.join(sorted(SPEC_VERSIONS))}")
    for name in ("id", "correlationid", "filteroutbeforetopic", "partitionkey", "expirydate", "time"):
        if name in event and not isinstance(event[name], str):
            raise InvalidEventError(f"{name} is {_json_type(event[name])}, not a string")
    if "istestmessage" in event and not isinstance(event["istestmessage"], bool):
        raise InvalidEventError(f"istestmessage is {_json_type(event['istestmessage'])}, not true or false")
    if "route" in event and not (
        isinstance(event["route"], list) and all(isinstance(hop, dict) for hop in event["route"])
    ):
        raise InvalidEventError("route is not a list of objects")
    slip = event.get("routingslip")
    if slip is not None and not (
        isinstance(slip, list) and all(isinstance(step, list) and all(map(_topic, step)) for step in slip)
    ):
        raise InvalidEventError("routingslip is not a list of lists of Kafka topic names")
    if "expirydate" in event:
        _instant(event["expirydate"], "expirydate")
    if _deeper_than(event, MAX_DEPTH):
        raise InvalidEventError(f"the event nests deeper than {MAX_DEPTH} levels")
    return event


def _topic(name: Any) -> bool:
    return isinstance(name, str) and name not in (".", "..") and _TOPIC.fullmatch(name) is not None


def _deeper_than(value: Any, limit: int) -> bool:
    """Without recursion: the check must not fail on what it checks."""
    level = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)


def expired(event: Event, now: datetime) -> bool:
    expiry = event.get("expirydate")
    return expiry is not None and _instant(expiry, "expirydate") < now


def with_hop(event: Event, kind: str, name: str, now: datetime) -> Event:
    """A copy of `event` with one more entry in its route history."""
    hop = {"type": kind, "id": name, "timestamp": timestamp(now)}
    return {**event, "route": [*event.get("route", []), hop]}


def routed(
    source: Event,
    result: Event,
    *,
    output_topic: str | None,
    test_topic: str,
    now: datetime,
    new_id: Callable[[], str],
) -> list[Output]:
    """Where one result of `source` goes: a copy to each topic of the routing slip's last step
    (carrying the rest of the slip), else to the output topic; each copy with its route, id,
    time, correlation and origin filled in. A test message reaching its `filteroutbeforetopic`
    goes to the test-message topic instead. No slip and no output topic: InvalidEventError."""
    slip = result.get("routingslip") or []
    if slip:
        rest, topics = slip[:-1], slip[-1]
        if not topics:
            raise InvalidEventError("the routing slip's next step names no topic")
    elif output_topic:
        rest, topics = [], [output_topic]
    else:
        raise InvalidEventError("the event has no routing slip, and the connector has no output topic")
    outputs = []
    for topic in dict.fromkeys(topics):  # a topic named twice in one step gets one copy
        event = copy.deepcopy(result)
        if event.get("routingslip") is not None:
            event["routingslip"] = copy.deepcopy(rest)
        event = linked(source, with_hop(event, "topic", topic, now), new_id)
        event.setdefault("time", timestamp(now))
        destination = topic
        if event.get("istestmessage") is True and event.get("filteroutbeforetopic") == topic:
            destination = test_topic
        key = event.get("partitionkey")
        outputs.append(Output(destination, key.encode() if isinstance(key, str) else None, event))
    return outputs


def linked(source: Event, result: Event, new_id: Callable[[], str]) -> Event:
    """A copy of a result of `source` with an id of its own, correlated with `source` and,
    when its id differs, created from it."""
    event = {**result}
    event.setdefault("id", new_id())
    if "id" in source:
        event.setdefault("correlationid", source["id"])
        if event["id"] != source["id"]:
            event["createdfrom"] = source["id"]
    return event


def error_event(
    source: Event | bytes | None,
    message: str,
    *,
    trace: str,
    origin: str,
    now: datetime,
    new_id: Callable[[], str],
) -> Event:
    """The event sent to the invalid-message topic in place of `source`: the whole source as
    its data (an unparsable record as the text it held), linked to it by `createdfrom`."""
    event: Event = {
        "specversion": "1.0",
        "id": new_id(),
        "type": "mico.error",
        "source": origin,
        "time": timestamp(now),
        "iserrormessage": True,
        "errormessage": message,
        "errortrace": trace,
    }
    if isinstance(source, dict):
        if isinstance(source.get("id"), str):
            event["createdfrom"] = source["id"]
            event["correlationid"] = source.get("correlationid") or source["id"]
        event["data"] = source
    elif source is not None:
        event["data"] = source.decode("utf-8", errors="replace")
    return event


def _instant(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEventError(f"{name} {text!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise InvalidEventError(f"{name} {text!r} has no UTC offset")
    return moment


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
