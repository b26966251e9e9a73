"""HTTP endpoints: /metrics, /healthz, /readyz, read-only JSON API, authenticated webhooks.

Webhooks only ever trigger a run of the configured repository; their payload is never trusted
for anything else. GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the body) and the generic
webhook's shared secret are compared in constant time; anything else gets 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reconciler.plan.health import service_view
from reconciler.store import Store, StoreError

log = logging.getLogger("mico_reconciler.http")
MAX_BODY = 5 * 1024 * 1024


class Endpoints:
    def __init__(
        self,
        *,
        store: Store,
        trigger: Callable[[str], None],
        ready: Callable[[], bool],
        webhook_secret: bytes | None,
    ) -> None:
        self.store = store
        self.trigger = trigger
        self.ready = ready
        self.secret = webhook_secret

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "mico-reconciler"

            def do_GET(self) -> None:
                endpoints.answer(self, endpoints.get)

            def do_POST(self) -> None:
                endpoints.answer(self, endpoints.post)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug(format, *args)

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        return server

    def answer(
        self, request: BaseHTTPRequestHandler, handler: Callable[[BaseHTTPRequestHandler], None]
    ) -> None:
        """A damaged state database is a 500 with the cause in the log, not a traceback."""
        try:
            handler(request)
        except StoreError as err:
            log.error("%s", err)
            _json(request, 500, {"error": "the state database cannot be read"})

    def get(self, request: BaseHTTPRequestHandler) -> None:
        url = urlparse(request.path)
        query = parse_qs(url.query)
        if url.path == "/metrics":
            _send(request, 200, generate_latest(), CONTENT_TYPE_LATEST)
        elif url.path == "/healthz":
            _send(request, 200, b"ok\n", "text/plain")
        elif url.path == "/readyz":
            ok = self.ready()
            _send(request, 200 if ok else 503, b"ok\n" if ok else b"not ready\n", "text/plain")
        elif url.path == "/api/applications":
            _json(request, 200, self.store.statuses())
        elif url.path.startswith("/api/applications/"):
            name = url.path.removeprefix("/api/applications/")
            found = self.store.statuses(name)
            _json(request, 200 if found else 404, found or {"error": f"no application {name!r}"})
        elif url.path.startswith("/api/services/"):
            short_name, _, version = unquote(url.path.removeprefix("/api/services/")).partition("@")
            instances = service_view(self.store.statuses(), short_name, version or None)
            if instances:
                _json(request, 200, {"service": short_name, "instances": instances})
            else:
                _json(request, 404, {"error": "no such service"})
        elif url.path == "/api/history":
            limit = query.get("limit", ["20"])[0]
            if not (limit.isascii() and limit.isdigit()):
                _json(request, 400, {"error": "limit must be a number"})
                return
            _json(
                request,
                200,
                self.store.runs(limit=min(max(int(limit), 1), 500), app=query.get("app", [None])[0]),
            )
        else:
            _json(request, 404, {"error": "not found"})

    def post(self, request: BaseHTTPRequestHandler) -> None:
        header = request.headers.get("Content-Length") or "0"
        if not (header.isascii() and header.isdigit()):
            _json(request, 400, {"error": "bad Content-Length"})
            return
        length = int(header)
        if length > MAX_BODY:
            _json(request, 413, {"error": "payload too large"})
            return
        body = request.rfile.read(length)
        path = urlparse(request.path).path
        if path == "/webhook/github":
            authentic = self._github_signature_ok(request.headers.get("X-Hub-Signature-256", ""), body)
            event = request.headers.get("X-GitHub-Event", "push")
        elif path == "/webhook/generic":
            authentic = self._token_ok(
                request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            )
            event = "generic"
        else:
            _json(request, 404, {"error": "not found"})
            return
        if not authentic:
            log.warning("rejected a webhook with a bad or missing signature", extra={"path": path})
            _json(request, 401, {"error": "bad signature"})
            return
        if event == "ping":
            _json(request, 200, {"status": "pong"})
            return
        self.trigger(f"webhook:{event}")
        _json(request, 202, {"status": "run triggered"})

    def _github_signature_ok(self, header: str, body: bytes) -> bool:
        if not self.secret or not header.startswith("sha256="):
            return False
        expected = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, header.removeprefix("sha256="))

    def _token_ok(self, token: str) -> bool:
        return bool(self.secret) and hmac.compare_digest(token.encode(), self.secret or b"")


def _send(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def _json(request: BaseHTTPRequestHandler, status: int, value: Any) -> None:
    _send(request, status, (json.dumps(value, indent=2, default=str) + "\n").encode(), "application/json")
