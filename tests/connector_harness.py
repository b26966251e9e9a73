"""What the connector's tests and benchmark run it against: a real HTTP server standing in for
the OpenFaaS gateway (running real functions), the connector as its own process, and an
auditor that reads every topic it writes from the beginning."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

Event = dict[str, Any]


def dispatch(event: Event) -> list[Event]:
    """The test function: what it does is asked by the event's data (`op`)."""
    data = event.get("data") or {}
    op = data.get("op", "transform")
    if op == "filter":
        return []
    if op == "split":
        return [
            {**event, "id": f"{event['id']}-part-{n}", "data": {"op": "split", "part": n}}
            for n in range(data.get("parts", 2))
        ]
    if op == "route":
        return [{**event, "routingslip": data["to"]}]
    if op == "huge":  # more than a record may hold
        return [{**event, "data": "x" * 1_100_000}]
    return [{**event, "data": {**data, "transformed": True}}]


class Gateway:
    """OpenFaaS's gateway as the connector sees it: POST /function/<name>. `mode` breaks the
    function on demand: "down" answers 502 (the function's pods are gone), "error" 500, "hang"
    holds the answer for `hang_seconds`."""

    def __init__(self, functions: dict[str, Callable[[Event], list[Event]]] | None = None) -> None:
        self.functions = functions if functions is not None else {"dispatch": dispatch}
        self.mode = "up"
        self.hang_seconds = 30.0
        self.calls = 0
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body of small answers leave at once

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                gateway.calls += 1
                name = self.path.removeprefix("/function/")
                if name not in gateway.functions:
                    return self.answer(404, b"Not Found")
                if gateway.mode == "down":
                    return self.answer(502, b"Bad Gateway")
                if gateway.mode == "error":
                    return self.answer(500, b"function crashed")
                if gateway.mode == "hang":
                    time.sleep(gateway.hang_seconds)
                return self.answer(200, orjson.dumps(gateway.functions[name](orjson.loads(body))))

            def answer(self, status: int, body: bytes) -> None:
                head = (
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                self.wfile.write(head + body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ConnectorProcess:
    """`mico-kafka-faas-connector` in a process of its own, configured by `env`."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        full = {**os.environ, **env, "CONNECTOR_HTTP_PORT": str(self.port)}
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "faas_connector"], env=full, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 30
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the connector did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def healthy(self) -> bool:
        return self.get("/healthz")[0] == 200

    def metric(self, name: str) -> float:
        """The sum of a metric's samples whose line starts with `name`."""
        _, text = self.get("/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    )
    for future in futures.values():
        future.result(timeout=30)


def event(data: Any = None, **attributes: Any) -> Event:
    found: Event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tests",
        "type": "test",
        "time": datetime.now(UTC).isoformat(),
    }
    if data is not None:
        found["data"] = data
    return {**found, **attributes}


def produce(bootstrap: str, topic: str, values: Iterable[Event | bytes], key: bytes | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    failures: list[str] = []
    for value in values:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        producer.produce(topic, raw, key=key, on_delivery=lambda err, _m: err and failures.append(str(err)))
    assert producer.flush(30) == 0
    assert not failures, failures


class Auditor:
    """Reads topics from their beginning (committed records only) into `seen`: topic -> events."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"auditor-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.consumer.subscribe(topics)
        self.seen: dict[str, list[Event]] = {t: [] for t in topics}
        self.keys: dict[str, list[bytes | None]] = {t: [] for t in topics}

    def read_until(self, done: Callable[[dict[str, list[Event]]], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.seen):
            if time.monotonic() > deadline:
                counts = {t: len(e) for t, e in self.seen.items()}
                raise AssertionError(f"not everything arrived within {timeout:.0f} s: {counts}")
            for record in self.consumer.consume(num_messages=1000, timeout=0.2):
                if record.error() is None:
                    self.seen[record.topic()].append(orjson.loads(record.value()))
                    self.keys[record.topic()].append(record.key())

    def settle(self, seconds: float = 2.0) -> None:
        """Reads on for `seconds` more: anything written late (a duplicate) shows up too."""
        end = time.monotonic() + seconds
        self.read_until(lambda _seen: time.monotonic() > end, seconds + 5)

    def close(self) -> None:
        self.consumer.close()


def origins(found: list[Event]) -> list[str]:
    """The input event each output stands for: an error event names it in `createdfrom`, any
    other output in `correlationid` (the input's id, when the input had none)."""
    return [
        str(item.get("createdfrom") if item.get("iserrormessage") else item.get("correlationid"))
        for item in found
    ]
