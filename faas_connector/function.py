"""The call of an OpenFaaS function through its gateway, and what its answer means for the
event: results to route, a permanent failure (an error event), or a transient one (the record
is tried again later, never dropped)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import urllib3

from faas_connector.events import Event, InvalidEventError, checked, dumps, loads

#: Gateway answers that mean "not now": the function is down, scaling or overloaded.
TRANSIENT_STATUSES = frozenset({502, 503, 504})
#: What fails before an answer arrives (connection refused or reset, timeouts).
_UNREACHABLE = (
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.MaxRetryError,
)


@dataclass(frozen=True)
class Answer:
    """`events` when the call succeeded (`[]`: the event is filtered out); else `error`, and
    `transient` when trying again later may succeed."""

    events: list[Event] = field(default_factory=list)
    error: str | None = None
    transient: bool = False


def answer(status: int, body: bytes) -> Answer:
    """What a gateway's HTTP answer means."""
    if status in TRANSIENT_STATUSES:
        return Answer(error=f"the gateway answered {status}", transient=True)
    if status >= 400:
        return Answer(error=f"the function answered {status}: {_excerpt(body)}")
    try:
        results = loads(body)
    except ValueError:
        return Answer(error=f"the function's answer is not JSON: {_excerpt(body)}")
    if not isinstance(results, list):
        return Answer(error="the function's answer is not an array of events")
    try:
        return Answer(events=[checked(result) for result in results])
    except InvalidEventError as err:
        return Answer(error=f"the function answered an invalid event: {err}")


class Gateway:
    """An OpenFaaS gateway, its connections kept open between calls."""

    def __init__(self, url: str, *, timeout: float, pool: urllib3.PoolManager | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = urllib3.Timeout(connect=min(timeout, 5.0), read=timeout)
        self.pool = pool or urllib3.PoolManager(maxsize=4, retries=False)

    def call(self, function: str, event: Event) -> Answer:
        try:
            response = self.pool.request(
                "POST",
                f"{self.url}/function/{function}",
                body=dumps(event),
                headers={"Content-Type": "application/cloudevents+json"},
                timeout=self.timeout,
                preload_content=True,
            )
        except _UNREACHABLE as err:  # refused, reset, timed out: the same later may work
            return Answer(error=f"the gateway could not be reached: {_reason(err)}", transient=True)
        except urllib3.exceptions.HTTPError as err:  # an answer that cannot be read: not better later
            return Answer(error=f"the function's answer could not be read: {_reason(err)}")
        return answer(response.status, response.data)


def _reason(err: urllib3.exceptions.HTTPError) -> str:
    reason: Any = getattr(err, "reason", None) or err
    return type(reason).__name__ if not str(reason) else str(reason).split(": ", 1)[-1][:200]


def _excerpt(body: bytes) -> str:
    text = body[:200].decode("utf-8", errors="replace").strip()
    return text + ("..." if len(body) > 200 else "") if text else "(empty)"
