"""A throttled request (429, API Priority and Fairness) is tried again after Retry-After."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from reconciler.cluster.client import MAX_RETRY_AFTER, THROTTLED_ATTEMPTS, RequestCounter, counted

URL = "https://127.0.0.1:6443/apis/apps/v1/namespaces/ns/deployments/web"


class Response:
    def __init__(self, status: int, retry_after: str | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        self.read_called = False

    def getheader(self, name: str, default: Any = None) -> Any:
        return self.retry_after if name == "Retry-After" else default

    def read(self) -> bytes:
        self.read_called = True
        return b""


def test_a_throttled_request_waits_retry_after_and_succeeds() -> None:
    answers = [Response(429, "2"), Response(429, "junk"), Response(429, "600"), Response(200)]
    slept: list[float] = []
    counter = RequestCounter()
    send = counted(lambda *a, **k: answers.pop(0), counter, slept.append)
    assert send("PATCH", URL).status == 200
    assert slept == [2.0, 1.0, MAX_RETRY_AFTER]
    assert counter.by_method["PATCH"] == 4, "every attempt is counted"


def test_a_throttled_exception_is_retried_too_and_other_errors_are_not() -> None:
    slept: list[float] = []
    calls = {"n": 0}

    def request(*_: Any, **__: Any) -> Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise client.ApiException(status=429, reason="Too Many Requests")
        raise client.ApiException(status=500, reason="boom")

    with pytest.raises(client.ApiException) as raised:
        counted(request, RequestCounter(), slept.append)("GET", URL)
    assert (raised.value.status, calls["n"], slept) == (500, 2, [1.0])


def test_throttling_gives_up_after_a_bounded_number_of_attempts() -> None:
    slept: list[float] = []
    send = counted(lambda *a, **k: Response(429, "0"), RequestCounter(), slept.append)
    assert send("GET", URL).status == 429
    assert len(slept) == THROTTLED_ATTEMPTS - 1
    assert slept[0] == 0.1, "never a busy loop"
