"""HTTP endpoints: /metrics, /healthz, /readyz, read-only JSON API (with /api/health), the
status page (`reconciler.web`), authenticated webhooks.

Webhooks only ever trigger a run of the configured repository; their payload is never trusted
for anything else. GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the body) and the generic
webhook's shared secret are compared in constant time; anything else gets 401.

The server is built to be abused without harm (a webhook port faces the internet):

- One I/O thread multiplexes every connection (`selectors`) and reads each request whole before
  anything handles it: the headers within `header_timeout` of their first byte (slow clients
  are cut off with 408, whatever their pace), the body within `body_timeout`, at most
  `max_header` bytes of headers and `max_body` of body. A body's size is judged from its
  Content-Length before a byte of it is read (413); a POST without one gets 411, chunked bodies
  411 too. Bodies held in memory at once are bounded by `body_budget` (503 beyond it).
- Complete requests wait in a queue of `queue` for `workers` handler threads; a full queue is
  answered 503 with `Retry-After`, never left unanswered. More than `connections` open
  connections are answered 503 at once. Idle keep-alive connections close after `idle_timeout`.
- /healthz and /readyz are answered by the I/O thread itself: probes never wait behind a flood.

The order of the checks: framing first (411, 400, 413: they protect the server and decide
whether a body is read at all), then authentication (401), and only then the content (415 for a
content type, 400 for malformed JSON). Nothing about an unauthenticated payload is parsed: the
JSON parser never sees attacker input, and an unauthenticated caller learns nothing but 401.
"""

from __future__ import annotations

import contextlib
import email.message
import hashlib
import hmac
import http.client
import io
import json
import logging
import queue
import re
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import cached_property
from http import HTTPStatus
from typing import Any
from urllib.parse import ParseResult, parse_qs, unquote, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reconciler.plan.health import service_view
from reconciler.store import Store, StoreError
from reconciler.web.pages import Pages

log = logging.getLogger("mico_reconciler.http")

MAX_BODY = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB
MAX_GET_BODY = 16 * 1024  # a GET's body means nothing; a small one is read and ignored
#: HEAD is answered as GET without the body (monitors and link checkers ask with it).
READS = ("GET", "HEAD")
WEBHOOKS = ("/webhook/github", "/webhook/generic")
GITHUB_TYPES = ("application/json", "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class Limits:
    """What one client, or all of them together, can take from the daemon. Times in seconds."""

    workers: int = 4  # handler threads: the handlers are short and hold the GIL
    queue: int = 128  # complete requests waiting for a worker; 503 beyond
    connections: int = 512  # open connections; 503 beyond
    backlog: int = 1024  # the kernel's listen queue (capped by net.core.somaxconn)
    idle_timeout: float = 5.0  # a connection without a request in progress (new or keep-alive)
    header_timeout: float = 10.0  # from a request's first byte to the end of its headers
    body_timeout: float = 30.0  # from the end of the headers to the end of the body
    write_timeout: float = 10.0  # to send a response
    linger_timeout: float = 2.0  # draining a refused body after the answer, so it is read, not reset
    max_header: int = 16 * 1024
    max_body: int = MAX_BODY
    body_budget: int = 32 * 1024 * 1024  # bodies buffered at once, all connections together

    def __post_init__(self) -> None:
        if self.workers < 1 or self.queue < 1 or self.connections < 1:
            raise ValueError("workers, queue and connections must be at least 1")
        if self.body_budget < self.max_body:
            raise ValueError("body_budget must hold at least one body of max_body")


@dataclass
class Request:
    method: str
    target: str
    headers: email.message.Message
    keep_alive: bool
    body: bytes | bytearray = b""

    @cached_property
    def url(self) -> ParseResult:
        return urlparse(self.target)

    @property
    def path(self) -> str:
        return self.url.path


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default=())


def _json(status: int, value: Any, *headers: tuple[str, str]) -> Response:
    body = (json.dumps(value, indent=2, default=str) + "\n").encode()
    return Response(status, body, "application/json", headers)


def _text(status: int, text: str) -> Response:
    return Response(status, text.encode(), "text/plain")


class Endpoints:
    def __init__(
        self,
        *,
        store: Store,
        trigger: Callable[[str], None],
        ready: Callable[[], bool],  # called by the I/O thread: it must not block
        webhook_secret: bytes | None,
        limits: Limits | None = None,
        pages: Pages | None = None,
    ) -> None:
        self.store = store
        self.trigger = trigger
        self.ready = ready
        self.secret = webhook_secret
        self.limits = limits or Limits()
        self.pages = pages
        self._rejections = _Throttled(log)

    def serve(self, host: str, port: int) -> Server:
        """Listen (an OSError if the address cannot be bound) and serve in daemon threads."""
        return Server(host, port, admit=self.admit, handle=self.handle, limits=self.limits)

    # -- in the I/O thread, once the headers are in and before the body is read -------------------

    def admit(self, request: Request, length: int) -> Response | None:
        """An answer that needs neither the body nor a worker, or None to read the body and queue.

        Runs in the I/O thread: cheap and non-blocking only."""
        path = request.path
        if request.method in READS:
            if length > MAX_GET_BODY:
                return _json(413, {"error": "payload too large"})
            if path == "/healthz":
                return self._healthz()
            if path == "/readyz":
                return self._readyz()
            return None
        if request.method != "POST":
            return _json(501, {"error": f"unsupported method {request.method}"})
        if path not in WEBHOOKS:
            return _json(404, {"error": "not found"})
        if length > self.limits.max_body:
            return _json(413, {"error": f"payload too large (at most {self.limits.max_body} bytes)"})
        if path == "/webhook/generic" and not self._token_ok(request):
            return self._unauthenticated(path)  # its secret is in a header: no need to read the body
        return None

    # -- in a worker, with the whole body --------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """A damaged state database is a 500 with the cause in the log, not a traceback."""
        try:
            return self.get(request) if request.method in READS else self.post(request)
        except StoreError as err:
            log.error("%s", err)
            return _json(500, {"error": "the state database cannot be read"})

    def get(self, request: Request) -> Response:
        path, query = request.path, parse_qs(request.url.query)
        prefix = self.pages.prefix if self.pages is not None else ""
        if prefix and (path == prefix or path.startswith(prefix + "/")):  # behind an ingress path
            path = path[len(prefix) :] or "/"
        if path == "/metrics":
            return Response(200, generate_latest(), CONTENT_TYPE_LATEST)
        if path == "/api/applications":
            return _json(200, self.store.statuses())
        if path.startswith("/api/applications/"):
            name = path.removeprefix("/api/applications/")
            found = self.store.statuses(name)
            return _json(200 if found else 404, found or {"error": f"no application {name!r}"})
        if path.startswith("/api/services/"):
            short_name, _, version = unquote(path.removeprefix("/api/services/")).partition("@")
            instances = service_view(self.store.statuses(), short_name, version or None)
            if instances:
                return _json(200, {"service": short_name, "instances": instances})
            return _json(404, {"error": "no such service"})
        if path == "/api/history":
            limit = query.get("limit", ["20"])[0]
            if not (limit.isascii() and limit.isdigit()):
                return _json(400, {"error": "limit must be a number"})
            runs = self.store.runs(limit=min(max(int(limit), 1), 500), app=query.get("app", [None])[0])
            return _json(200, runs)
        if path == "/api/health":
            history = self.store.health.snapshot()
            status = "ok" if history["writable"] else "degraded"
            return _json(200, {"status": status, "ready": self.ready(), "history": history})
        # /healthz and /readyz are answered by admit(), unless they came with a body
        if path == "/healthz":
            return self._healthz()
        if path == "/readyz":
            return self._readyz()
        page = self.pages.get(path, query) if self.pages is not None else None
        if page is not None:
            return Response(page.status, page.body, page.content_type, page.headers)
        return _json(404, {"error": "not found"})

    # -- probes: cheap and non-blocking (the I/O thread answers them) ------------------------------

    def _healthz(self) -> Response:
        """Alive, even when the state database takes no writes: a restart would not give it
        space or make it writable (and a daemon that cannot write it at start refuses to)."""
        return _text(200, "ok\n" + self._history_warning())

    def _readyz(self) -> Response:
        """Ready to take webhooks: runs go on when their history cannot be written."""
        ok = self.ready()
        return _text(200 if ok else 503, ("ok\n" if ok else "not ready\n") + self._history_warning())

    def _history_warning(self) -> str:
        history = self.store.health.snapshot()
        if history["writable"]:
            return ""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(history["since"]))
        return (
            f"warning: runs are not recorded since {since}: the state database takes no writes "
            f"({history['reason']}); see /api/health\n"
        )

    def post(self, request: Request) -> Response:
        path = request.path
        if path == "/webhook/github":
            if not self._github_signature_ok(request.headers.get("X-Hub-Signature-256", ""), request.body):
                return self._unauthenticated(path)
            refusal = _github_payload_refusal(request)
            event = request.headers.get("X-GitHub-Event", "push")
        elif path == "/webhook/generic":
            if not self._token_ok(request):
                return self._unauthenticated(path)
            refusal = _generic_payload_refusal(request)
            event = "generic"
        else:
            return _json(404, {"error": "not found"})
        if refusal is not None:
            self._rejections.warning("refused", "refused a webhook: %s", refusal.body.decode().strip())
            return refusal
        if event == "ping":
            return _json(200, {"status": "pong"})
        self.trigger(f"webhook:{event}")
        return _json(202, {"status": "run triggered"})

    def _unauthenticated(self, path: str) -> Response:
        self._rejections.warning("401", "rejected a webhook with a bad or missing signature", path=path)
        return _json(401, {"error": "bad signature"})

    def _github_signature_ok(self, header: str, body: bytes | bytearray) -> bool:
        if not self.secret or not header.startswith("sha256="):
            return False
        expected = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, header.removeprefix("sha256="))

    def _token_ok(self, request: Request) -> bool:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return bool(self.secret) and hmac.compare_digest(token.encode(), self.secret or b"")


def _media_type(request: Request) -> str:
    return request.headers.get("Content-Type", "").partition(";")[0].strip().lower()


def _json_refusal(text: bytes | bytearray | str, *, want_object: bool) -> Response | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _json(400, {"error": "the body is not valid JSON"})
    if want_object and not isinstance(value, dict):
        return _json(400, {"error": "the payload must be a JSON object"})
    return None


def _github_payload_refusal(request: Request) -> Response | None:
    """GitHub sends a JSON object as application/json, or form-encoded in its `payload` field."""
    media = _media_type(request)
    if media == "application/json":
        return _json_refusal(request.body, want_object=True)
    if media == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(request.body.decode("ascii"), strict_parsing=True, max_num_fields=16)
        except (ValueError, UnicodeDecodeError):
            form = {}
        if len(form.get("payload", [])) != 1:
            return _json(400, {"error": "a form-encoded delivery must have one payload field"})
        return _json_refusal(form["payload"][0], want_object=True)
    return _json(415, {"error": f"Content-Type must be one of {', '.join(GITHUB_TYPES)}"})


def _generic_payload_refusal(request: Request) -> Response | None:
    """The generic webhook needs no body; one that is sent must be JSON (and is then ignored)."""
    if not request.body:
        return None
    if _media_type(request) != "application/json":
        return _json(415, {"error": "a body must be application/json (or send none)"})
    return _json_refusal(request.body, want_object=False)


class _Throttled:
    """At most one log line per kind and `period`, saying how many it held back: a flood of bad
    requests must not become a flood of log lines."""

    def __init__(self, logger: logging.Logger, period: float = 10.0) -> None:
        self._log, self._period = logger, period
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object, **extra: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -self._period) < self._period:
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        self._log.warning(message, *args, extra={**extra, "similar_suppressed": held})


# -- the server ------------------------------------------------------------------------------------

_IDLE, _HEAD, _BODY, _WAIT, _WRITE, _LINGER, _CLOSED = range(7)
_CHUNK = 64 * 1024
_HEADERS_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TARGET = re.compile(r"[\x21-\x7e]+")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_LISTENER, _WAKE = object(), object()


class _Connection:
    __slots__ = ("after", "body", "buffer", "deadline", "events", "got", "output", "request", "reserved",
                 "scan", "sock", "state")  # fmt: skip

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.state = _IDLE
        self.deadline = deadline
        self.events = 0  # what the selector watches for
        self.buffer = bytearray()  # received, not yet consumed
        self.scan = 0  # where to look for the end of the headers next
        self.request: Request | None = None
        self.body = bytearray()  # the body being read, allocated whole from its Content-Length
        self.got = 0  # bytes of it received
        self.reserved = 0  # bytes of body_budget held
        self.output = memoryview(b"")
        self.after = _IDLE  # once the response is sent: _IDLE (keep-alive), _LINGER or _CLOSED


class Server:
    """Read requests in one I/O thread, handle them in a bounded pool; see the module's doc."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        admit: Callable[[Request, int], Response | None],
        handle: Callable[[Request], Response],
        limits: Limits,
    ) -> None:
        self.limits = limits
        self._admit, self._handle = admit, handle
        host = host.removeprefix("[").removesuffix("]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=limits.backlog)
        self._listener.setblocking(False)
        self.server_address: tuple[Any, ...] = self._listener.getsockname()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wake_in, selectors.EVENT_READ, _WAKE)
        self._queue: queue.Queue[tuple[_Connection, Request] | None] = queue.Queue(limits.queue)
        self._done: deque[tuple[_Connection, Response]] = deque()
        self._ready: deque[_Connection] = deque()  # with pipelined bytes to go on with
        self._connections: set[_Connection] = set()
        self._body_bytes = 0
        self._accept_paused_until = 0.0
        self._stopping = False
        self._throttled = _Throttled(log)
        self._io = threading.Thread(target=self._loop, name="http", daemon=True)
        self._workers = [
            threading.Thread(target=self._work, name=f"http-worker-{n}", daemon=True)
            for n in range(limits.workers)
        ]
        for thread in (self._io, *self._workers):
            thread.start()

    def shutdown(self) -> None:
        """Stop serving: close the listener and every connection, end the threads."""
        self._stopping = True
        self._wake()
        self._io.join(timeout=5)
        for _ in self._workers:
            try:
                self._queue.put(None, timeout=1)
            except queue.Full:
                break
        self._wake_out.close()

    # -- workers -----------------------------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            connection, request = item
            try:
                response = self._handle(request)
            except Exception:
                log.exception("the handler of %s %s failed", request.method, request.path)
                response = _json(500, {"error": "internal error"})
            self._done.append((connection, response))
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (the I/O thread will look anyway) or closed (stopped)
            self._wake_out.send(b"\0")

    # -- the I/O thread ------------------------------------------------------------------------------

    def _loop(self) -> None:
        next_sweep = 0.0
        try:
            while not self._stopping:
                for key, events in self._selector.select(timeout=0.25):
                    if key.data is _LISTENER:
                        self._accept()
                    elif key.data is _WAKE:
                        self._drain_wake()
                    else:
                        self._guarded(key.data, events)
                while self._done:
                    connection, response = self._done.popleft()
                    self._guarded(connection, 0, response)
                while self._ready:
                    connection = self._ready.popleft()
                    if connection.state == _IDLE:
                        self._guarded(connection, 0)
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + 0.25
        except Exception:
            log.exception("the HTTP server stopped")
        finally:
            for connection in list(self._connections):
                self._close(connection)
            for sock in (self._listener, self._wake_in):
                sock.close()
            self._selector.close()

    def _guarded(self, connection: _Connection, events: int, response: Response | None = None) -> None:
        """One connection's failure closes that connection, never the server."""
        try:
            if response is not None:
                self._finished(connection, response)
            elif events & selectors.EVENT_WRITE:
                self._send(connection)
            elif events & selectors.EVENT_READ:
                self._receive(connection)
            else:
                self._advance(connection)
        except Exception:
            log.exception("an HTTP connection failed")
            self._close(connection)

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_in.recv(4096):
                pass

    def _accept(self) -> None:
        now = time.monotonic()
        if now < self._accept_paused_until:
            return
        for _ in range(64):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # e.g. out of file descriptors: wait instead of spinning
                self._throttled.warning("accept", "cannot accept HTTP connections: %s", err)
                self._accept_paused_until = now + 0.1
                return
            sock.setblocking(False)
            connection = _Connection(sock, now + self.limits.idle_timeout)
            self._connections.add(connection)
            if len(self._connections) > self.limits.connections:
                # answered at once; drained before closing unless far too many are open
                self._throttled.warning("connections", "too many HTTP connections: answered 503")
                linger = len(self._connections) <= 2 * self.limits.connections
                self._respond(connection, _busy(), keep_alive=False, linger=linger)
            else:
                self._watch(connection, selectors.EVENT_READ)

    def _receive(self, connection: _Connection) -> None:
        """Read what is there: a body straight into its buffer, headers never past max_header."""
        try:
            if connection.state == _BODY:
                received = connection.sock.recv_into(memoryview(connection.body)[connection.got :])
                data = b""
            else:
                room = self.limits.max_header + 4 - len(connection.buffer)  # +4: the end of the headers
                data = connection.sock.recv(_CHUNK if connection.state == _LINGER else max(room, 1))
                received = len(data)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            received = 0
        if not received:  # the client closed (or reset) its side
            self._close(connection)
        elif connection.state == _BODY:
            connection.got += received
            self._advance(connection)
        elif connection.state != _LINGER:  # lingering: read and forget
            connection.buffer += data
            self._advance(connection)

    def _advance(self, connection: _Connection) -> None:
        """Go on with what the buffer holds: the headers, then the body, then queue the request."""
        limits = self.limits
        if connection.state == _IDLE:
            del connection.buffer[: len(connection.buffer) - len(connection.buffer.lstrip(b"\r\n"))]
            if not connection.buffer:  # RFC 9112 2.2: empty lines before a request are ignored
                return
            connection.state = _HEAD
            connection.deadline = time.monotonic() + limits.header_timeout
            connection.scan = 0
        if connection.state == _HEAD:
            end = _HEADERS_END.search(connection.buffer, connection.scan)
            if end is None or end.start() > limits.max_header:
                if len(connection.buffer) > limits.max_header:
                    self._refuse(connection, 431, "request headers too large")
                connection.scan = max(0, len(connection.buffer) - 3)
                return
            head = bytes(connection.buffer[: end.start()])
            del connection.buffer[: end.end()]
            self._begin(connection, head)
        if connection.state == _BODY and connection.got == len(connection.body):
            self._dispatch(connection)

    def _begin(self, connection: _Connection, head: bytes) -> None:
        """A request's headers are in: frame it, admit it, and read its body or answer it."""
        lines = [line.removesuffix(b"\r") for line in head.split(b"\n")]
        parts = lines[0].decode("latin-1").split(" ")
        version = _VERSION.fullmatch(parts[-1])
        if len(parts) != 3 or not (_TOKEN.fullmatch(parts[0]) and _TARGET.fullmatch(parts[1]) and version):
            self._refuse(connection, 400, "malformed request line")
            return
        if version[1] != "1":
            self._refuse(connection, 505, "HTTP/1.0 and HTTP/1.1 only")
            return
        try:
            headers = http.client.parse_headers(io.BytesIO(b"\r\n".join([*lines[1:], b"", b""])))
        except http.client.HTTPException:
            self._refuse(connection, 431, "too many request headers")
            return
        tokens = {t.strip().lower() for v in headers.get_all("Connection", []) for t in v.split(",")}
        keep_alive = "keep-alive" in tokens if version[2] == "0" else "close" not in tokens
        request = connection.request = Request(parts[0], parts[1], headers, keep_alive)
        # framing: how long the body is, from the headers alone
        lengths = {v.strip() for value in headers.get_all("Content-Length", []) for v in value.split(",")}
        problem = _framing_problem(request.method, headers.get_all("Transfer-Encoding"), lengths)
        if problem is not None:
            self._refuse(connection, *problem)
            return
        text = lengths.pop() if lengths else "0"
        length = int(text) if len(text) <= 15 else 10**15
        answer = self._admit(request, length)
        if answer is None and length > self.limits.max_body:
            answer = _json(413, {"error": "payload too large"})
        if answer is None and self._body_bytes + length > self.limits.body_budget:
            self._throttled.warning("budget", "request bodies in memory at their limit: answered 503")
            answer = _busy()
        if answer is not None:  # the body, if any, stays unread: drain it after answering, then close
            self._respond(connection, answer, keep_alive=keep_alive and not length, linger=bool(length))
            return
        self._body_bytes += length
        connection.reserved = length
        connection.state = _BODY
        connection.body, connection.got = bytearray(length), min(length, len(connection.buffer))
        connection.body[: connection.got] = connection.buffer[: connection.got]  # sent with the headers
        del connection.buffer[: connection.got]
        connection.deadline = time.monotonic() + self.limits.body_timeout
        expect = headers.get("Expect", "").lower()
        if expect == "100-continue" and version[2] == "1" and connection.got < length:
            with contextlib.suppress(OSError):
                connection.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _dispatch(self, connection: _Connection) -> None:
        request = connection.request
        assert request is not None
        request.body, connection.body = connection.body, bytearray()
        connection.state, connection.deadline = _WAIT, float("inf")
        self._watch(connection, 0)
        try:
            self._queue.put_nowait((connection, request))
        except queue.Full:
            self._release(connection)
            self._throttled.warning("queue", "the HTTP request queue is full: answered 503")
            self._respond(connection, _busy(), keep_alive=False, linger=False)

    def _finished(self, connection: _Connection, response: Response) -> None:
        """A worker's answer, or a 408 from the sweep (which closes the connection)."""
        self._release(connection)
        if connection.state == _WAIT and connection.request is not None:
            self._respond(connection, response, keep_alive=connection.request.keep_alive, linger=False)
        elif connection.state in (_HEAD, _BODY):
            self._respond(connection, response, keep_alive=False, linger=False)

    def _refuse(self, connection: _Connection, status: int, message: str) -> None:
        """A request that cannot be read any further: answer, drain what the client still sends."""
        self._respond(connection, _json(status, {"error": message}), keep_alive=False, linger=True)

    def _respond(
        self, connection: _Connection, response: Response, *, keep_alive: bool, linger: bool
    ) -> None:
        keep = keep_alive and not self._stopping
        status = HTTPStatus(response.status)
        head = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            "Server: mico-reconciler",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            *(f"{name}: {value}" for name, value in response.headers),
            *([] if keep else ["Connection: close"]),
        ]
        if connection.request is not None and log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %d", connection.request.method, connection.request.target, status.value)
        body = (
            b"" if connection.request is not None and connection.request.method == "HEAD" else response.body
        )
        connection.output = memoryview(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        connection.after = _IDLE if keep else _LINGER if linger else _CLOSED
        connection.state = _WRITE
        connection.deadline = time.monotonic() + self.limits.write_timeout
        self._send(connection)

    def _send(self, connection: _Connection) -> None:
        try:
            sent = connection.sock.send(connection.output)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(connection)
            return
        connection.output = connection.output[sent:]
        if connection.output:
            self._watch(connection, selectors.EVENT_WRITE)
            return
        if connection.after == _CLOSED:
            self._close(connection)
            return
        if connection.after == _LINGER:
            try:
                connection.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(connection)
                return
            connection.buffer.clear()
            connection.state = _LINGER
            connection.deadline = time.monotonic() + self.limits.linger_timeout
        else:
            connection.state, connection.request = _IDLE, None
            connection.deadline = time.monotonic() + self.limits.idle_timeout
            if connection.buffer:  # a pipelined request: the loop goes on with it
                self._ready.append(connection)
        self._watch(connection, selectors.EVENT_READ)

    def _sweep(self, now: float) -> None:
        for connection in [c for c in self._connections if c.deadline <= now]:
            if connection.state in (_HEAD, _BODY):
                self._throttled.warning("timeout", "an HTTP client was too slow: answered 408")
                self._release(connection)
                timeout = _json(408, {"error": "request timeout"})
                self._guarded(connection, 0, timeout)
            else:  # idle, a response the client does not read, or a drained refusal
                self._close(connection)

    def _watch(self, connection: _Connection, events: int) -> None:
        if events == connection.events:
            return
        if not connection.events:
            self._selector.register(connection.sock, events, connection)
        elif not events:
            self._selector.unregister(connection.sock)
        else:
            self._selector.modify(connection.sock, events, connection)
        connection.events = events

    def _release(self, connection: _Connection) -> None:
        self._body_bytes -= connection.reserved
        connection.reserved, connection.body = 0, bytearray()

    def _close(self, connection: _Connection) -> None:
        if connection.state == _CLOSED:
            return
        self._release(connection)
        if connection.events:
            self._selector.unregister(connection.sock)
            connection.events = 0
        connection.sock.close()
        connection.state = _CLOSED
        self._connections.discard(connection)


def _framing_problem(method: str, encodings: list[str] | None, lengths: set[str]) -> tuple[int, str] | None:
    """How long the body is must be known from the headers alone, or the request is refused."""
    if encodings:  # RFC 9112 6.3: a server may refuse these; 411 asks for a length instead
        if lengths:
            return 400, "Content-Length and Transfer-Encoding together"
        return 411, "chunked bodies are not accepted: send a Content-Length"
    if len(lengths) > 1 or not all(v.isascii() and v.isdigit() for v in lengths):
        return 400, "bad Content-Length"
    if not lengths and method == "POST":
        return 411, "a POST needs a Content-Length (0 for no body)"
    return None


def _busy() -> Response:
    return _json(503, {"error": "busy, retry later"}, ("Retry-After", "1"))
