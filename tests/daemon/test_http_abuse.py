"""The HTTP port under abuse: a webhook flood, huge bodies, slow clients, malformed payloads.

The real server on 127.0.0.1:0 in this process, with a real Coalescer whose run records when it
started and ended. Durations are bounded only by the documented timeouts plus generous margins.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reconciler.daemon.http import Endpoints, Limits, Server
from reconciler.daemon.trigger import Coalescer
from reconciler.store import Store

SECRET = b"s3cret-for-abuse"
RUN_SECONDS = 0.2
MARGIN = 4.0  # on top of a documented timeout: a busy CI machine is slow, never this slow


@dataclass
class Daemon:
    server: Server
    coalescer: Coalescer
    runs: list[tuple[float, float]] = field(default_factory=list)  # (start, end), monotonic
    triggers: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(limits: Limits | None = None, trigger: Callable[[str], None] | None = None) -> Daemon:
        runs: list[tuple[float, float]] = []

        def run(reason: str) -> None:
            began = time.monotonic()
            time.sleep(RUN_SECONDS)
            runs.append((began, time.monotonic()))

        coalescer = Coalescer(run)
        coalescer.start()
        triggers: list[str] = []

        def record(reason: str) -> None:
            triggers.append(reason)
            coalescer.trigger(reason)

        extra = {"limits": limits} if limits is not None else {}
        endpoints = Endpoints(
            store=Store(tmp_path / f"state-{len(started)}.db"),
            trigger=trigger or record,
            ready=lambda: True,
            webhook_secret=SECRET,
            **extra,  # type: ignore[arg-type]
        )
        daemon = Daemon(endpoints.serve("127.0.0.1", 0), coalescer, runs, triggers)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.server.shutdown()
        daemon.coalescer.stop()


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()


def request(
    path: str, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "POST"
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    framed = any(name.lower() in ("content-length", "transfer-encoding") for name in headers or {})
    if method == "POST" and not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def github(body: bytes, content_type: str = "application/json", signature: str | None = None) -> bytes:
    headers = {
        "Content-Type": content_type,
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": signature or sign(body),
        "Connection": "close",
    }
    return request("/webhook/github", body, headers)


def generic(body: bytes = b"", content_type: str | None = None, token: str = SECRET.decode()) -> bytes:
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
    if content_type:
        headers["Content-Type"] = content_type
    return request("/webhook/generic", body, headers)


def read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[int, str, bytes]:
    """One response: its status, its header block and its body (by Content-Length)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    length = int(
        next(line.split(":")[1] for line in text.split("\r\n") if line.lower().startswith("content-length"))
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(text.split(" ")[1]), text, body


def exchange(port: int, raw: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        return read_response(sock)[0]


def all_closed_by_server(socks: list[socket.socket], within: float) -> int:
    """How many of `socks` the server closed within `within` seconds (what it answered is dropped)."""
    deadline, open_ = time.monotonic() + within, set(socks)
    while open_ and (left := deadline - time.monotonic()) > 0:
        for sock in select.select(list(open_), [], [], left)[0]:
            try:
                if sock.recv(65536):
                    continue
            except OSError:
                pass
            open_.discard(sock)
    return len(socks) - len(open_)


# -- a flood --------------------------------------------------------------------------------------


async def _flood(
    port: int, total: int, concurrency: int, halfway: Callable[[], None]
) -> dict[int | None, int]:
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    raw = github(body)
    codes: dict[int | None, int] = {}
    left = iter(range(total))

    async def one() -> int | None:
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 15)
            writer.write(raw)
            answer = await asyncio.wait_for(reader.read(), 15)  # Connection: close: read to the end
            return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else None
        except (TimeoutError, OSError):
            return None
        finally:
            if writer is not None:
                writer.close()

    async def client() -> None:
        for n in left:
            if n == total // 2:
                halfway()
            code = await one()
            codes[code] = codes.get(code, 0) + 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return codes


def test_a_webhook_flood_is_answered_coalesced_and_bounded(start: Callable[..., Daemon]) -> None:
    threads_before = threading.active_count()
    daemon = start()  # the default limits
    sampling = threading.Event()
    most_threads = [0]

    def sample() -> None:
        while not sampling.wait(0.005):
            most_threads[0] = max(most_threads[0], threading.active_count())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    scheduled: list[float] = []

    def schedule() -> None:  # the interval's trigger, in the middle of the flood
        scheduled.append(time.monotonic())
        daemon.coalescer.trigger("schedule")

    began = time.monotonic()
    codes = asyncio.run(_flood(daemon.port, 5000, 200, schedule))
    flood_ended = time.monotonic()
    sampling.set()
    sampler.join()
    time.sleep(RUN_SECONDS + 1.5)  # the run the flood queued, and any other that should not come

    answered = sum(n for code, n in codes.items() if code is not None)
    took = flood_ended - began
    print(f"\n{codes} in {took:.1f} s; {len(daemon.runs)} runs; at most {most_threads[0]} threads")
    assert codes.get(None, 0) == 0, f"{codes.get(None)} of 5000 requests got no answer"
    assert answered == 5000
    assert set(codes) <= {202, 503}, codes
    assert daemon.triggers, "no webhook triggered a run"
    runs = sorted(daemon.runs)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(runs)), (
        "two runs at once"
    )
    after = [run for run in runs if run[0] > flood_ended]
    assert len(after) <= 1, f"{len(after)} runs started after the flood ended: at most the one it queued"
    # the server's threads are its I/O thread and its workers, flood or not (+1: the sampler)
    assert most_threads[0] <= threads_before + Limits().workers + 1 + 1 + 1, most_threads[0]
    # a scheduled run starts within a second of the run in progress ending, and runs are not stretched
    (at,) = scheduled
    in_progress = [end for run_start, end in runs if run_start <= at < end]
    next_start = min(run_start for run_start, _ in runs if run_start >= at)
    assert next_start - max([at, *in_progress]) < 1.0, "the flood delayed a scheduled run"
    assert max(end - run_start for run_start, end in runs) < RUN_SECONDS + 1.0


def test_a_full_queue_is_answered_503_at_once(start: Callable[..., Daemon]) -> None:
    release = threading.Event()
    daemon = start(Limits(workers=1, queue=1), trigger=lambda _: release.wait(10) and None)
    busy = [socket.create_connection(("127.0.0.1", daemon.port), timeout=5) for _ in range(2)]
    try:
        for sock in busy:  # one in the worker, one in the queue
            sock.sendall(generic())
            time.sleep(0.2)
        assert exchange(daemon.port, generic()) == 503
        release.set()
        assert [read_response(sock)[0] for sock in busy] == [202, 202]
    finally:
        release.set()
        for sock in busy:
            sock.close()


def test_too_many_connections_are_answered_503(start: Callable[..., Daemon]) -> None:
    daemon = start(Limits(connections=2))
    idle = [socket.create_connection(("127.0.0.1", daemon.port), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as third:
            status, head, _ = read_response(third)
            assert (status, "Retry-After: 1" in head) == (503, True)
    finally:
        for sock in idle:
            sock.close()


# -- bodies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Length": str(30 * 1024 * 1024)}, 413),
        ({"Content-Length": str(30 * 1024 * 1024), "Expect": "100-continue"}, 413),  # not 100 Continue
        ({"Content-Length": "9" * 40}, 413),
        ({"Transfer-Encoding": "chunked"}, 411),
        ({"Transfer-Encoding": "chunked", "Content-Length": "10"}, 400),
        ({"Content-Length": "-1"}, 400),
        ({"Content-Length": "5, 6"}, 400),
        ({}, 411),
    ],
    ids=["30MB", "30MB-expect", "40-digits", "chunked", "chunked-and-length", "negative", "two", "none"],
)
def test_bodies_are_judged_before_a_byte_of_them_is_sent(
    start: Callable[..., Daemon], headers: dict[str, str], status: int
) -> None:
    daemon = start()
    raw = request("/webhook/github", headers={**headers, "X-Hub-Signature-256": sign(b"")})
    raw = raw if headers else raw.replace(b"Content-Length: 0\r\n", b"")
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(raw)  # the headers only: the answer must come without the body
        answer, head, _ = read_response(sock, timeout=MARGIN)
        assert (answer, "Connection: close" in head) == (status, True)
        sock.sendall(b"x" * 65536)  # the body after all: drained, then closed, never read as a request
        assert all_closed_by_server([sock], Limits().linger_timeout + MARGIN) == 1
    assert daemon.triggers == []


def test_bodies_in_memory_are_bounded_together(start: Callable[..., Daemon]) -> None:
    daemon = start(Limits(max_body=1024 * 1024, body_budget=1024 * 1024))
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as holder:
        holder.sendall(request("/webhook/github", headers={"Content-Length": str(1024 * 1024)}) + b"{")
        time.sleep(0.2)
        assert exchange(daemon.port, github(b"{}")) == 503  # the budget is held by the first
    time.sleep(0.2)
    assert exchange(daemon.port, github(b"{}")) == 202  # and released with it


# -- slow clients ---------------------------------------------------------------------------------


def test_slow_headers_are_cut_off_and_the_port_stays_usable(start: Callable[..., Daemon]) -> None:
    limits = Limits(header_timeout=1.0)
    daemon = start(limits)
    slow = []
    try:
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            sock.sendall(b"POST /webhook/github HTTP/1.1\r\nHost: test\r\nX-Hub-Sig")
            slow.append(sock)
        assert exchange(daemon.port, github(b"{}")) == 202  # served while they hang
        closed = all_closed_by_server(slow, limits.header_timeout + MARGIN)
        assert closed == 40, f"{40 - closed} of 40 slow clients still connected"
    finally:
        for sock in slow:
            sock.close()


def test_a_trickle_does_not_reset_the_header_timeout(start: Callable[..., Daemon]) -> None:
    limits = Limits(header_timeout=1.0)
    daemon = start(limits)
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(b"GET /api/history HTTP/1.1\r\n")
        began = time.monotonic()
        while time.monotonic() - began < limits.header_timeout + MARGIN:
            try:
                sock.sendall(b"X-Drip: 1\r\n")  # a header line every 0.1 s, never the end
            except OSError:
                break
            if select.select([sock], [], [], 0.1)[0]:
                status, _, _ = read_response(sock)
                assert status == 408
                break
        else:
            pytest.fail("a client trickling headers was never cut off")


def test_slow_bodies_and_idle_connections_are_closed(start: Callable[..., Daemon]) -> None:
    limits = Limits(idle_timeout=1.0, body_timeout=1.0)
    daemon = start(limits)
    with (
        socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as silent,
        socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as kept,
        socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as stalled,
    ):
        kept.sendall(request("/healthz", method="GET"))
        assert read_response(kept)[0] == 200  # HTTP/1.1: kept alive, then idle
        stalled.sendall(request("/webhook/github", headers={"Content-Length": "100"}) + b"{")
        assert all_closed_by_server([silent, kept, stalled], limits.idle_timeout + MARGIN) == 3


# -- content --------------------------------------------------------------------------------------

PUSH = json.dumps({"ref": "refs/heads/main"}).encode()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (github(PUSH), 202),
        (github(b"payload=" + PUSH.replace(b'"', b"%22"), "application/x-www-form-urlencoded"), 202),
        (github(b"{not json"), 400),
        (github(b"[1, 2]"), 400),
        (github(b"[" * 100_000), 400),
        (github(b"\xff\xfe{}"), 400),
        (github(b"ref=main", "application/x-www-form-urlencoded"), 400),
        (github(b"payload=%7Bnot", "application/x-www-form-urlencoded"), 400),
        (github(PUSH, "text/plain"), 415),
        (github(PUSH, ""), 415),
        # authentication first: a bad signature is 401 whatever the payload
        (github(b"{not json", signature="sha256=" + "0" * 64), 401),
        (github(PUSH, "text/plain", signature="sha256=" + "0" * 64), 401),
        (github(PUSH, signature="sha1=abc"), 401),
        (generic(), 202),
        (generic(b"", "application/x-www-form-urlencoded"), 202),  # curl -d ''
        (generic(b'{"any": "thing"}', "application/json; charset=utf-8"), 202),
        (generic(b"{", "application/json"), 400),
        (generic(b"x", "text/plain"), 415),
        (generic(b"{", "application/json", token="wrong"), 401),
        (generic(b"x", "text/plain", token="wrong"), 401),
        (request("/webhook/other", PUSH), 404),
        (b"BREW /webhook/github HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 501),
        (b"POST /webhook/github HTTP/2.0\r\nContent-Length: 0\r\n\r\n", 505),
        (b"POST  /webhook/github HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
    ],
    ids=[
        "json",
        "form",
        "malformed-json",
        "json-array",
        "deep-nesting",
        "not-utf8",
        "form-without-payload",
        "form-malformed-payload",
        "text-plain",
        "no-content-type",
        "bad-signature-malformed",
        "bad-signature-text-plain",
        "sha1-signature",
        "generic-empty",
        "generic-curl-d",
        "generic-json",
        "generic-malformed",
        "generic-text-plain",
        "generic-bad-token-malformed",
        "generic-bad-token-text",
        "unknown-path",
        "unknown-method",
        "http2",
        "bad-request-line",
        "huge-header",
    ],
)
def test_payloads_are_checked_after_authentication(
    start: Callable[..., Daemon], raw: bytes, status: int
) -> None:
    daemon = start()
    assert exchange(daemon.port, raw) == status
    assert len(daemon.triggers) == (status == 202)


def test_probes_and_the_api_still_answer(start: Callable[..., Daemon]) -> None:
    daemon = start()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        for path, status in [("/healthz", 200), ("/readyz", 200), ("/api/history", 200), ("/nope", 404)]:
            sock.sendall(request(path, method="GET"))  # one kept-alive connection
            assert read_response(sock)[0] == status, path
        sock.sendall(request("/healthz", method="GET") * 3)  # pipelined: three answers, in order
        answers = b""
        while answers.count(b"HTTP/1.1 200 OK\r\n") < 3 and (chunk := sock.recv(65536)):
            answers += chunk
        assert answers.count(b"HTTP/1.1 200 OK\r\n") == 3


def test_head_is_answered_as_get_without_the_body(start: Callable[..., Daemon]) -> None:
    """Pipelined behind HEAD, the next answer follows HEAD's headers at once: no body between."""
    daemon = start()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        # /metrics: its counters move between two requests, so its length may too
        for path, same_length in (("/healthz", True), ("/api/history", True), ("/metrics", False)):
            sock.sendall(request(path, method="GET"))
            status, _, body = read_response(sock)
            assert (status, len(body) > 0) == (200, True), path
            sock.sendall(request(path, method="HEAD") + request("/api/health", method="GET"))
            data = b""
            while data.count(b"\r\n\r\n") < 2 and (chunk := sock.recv(65536)):
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n"), path
            assert b"Content-Length: " in head, path
            if same_length:
                assert f"Content-Length: {len(body)}".encode() in head, path  # GET's length
            assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), (path, rest[:80])
            length = int(rest.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
            received = len(rest.partition(b"\r\n\r\n")[2])
            while received < length and (chunk := sock.recv(65536)):
                received += len(chunk)
