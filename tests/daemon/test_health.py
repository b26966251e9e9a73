"""What the probes and /api/health say while the state database takes no writes: alive and
ready (the runs go on), with the reason in a line of the probes' bodies and in /api/health."""

from __future__ import annotations

import email.message
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.daemon.http import Endpoints, Request, Response
from reconciler.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state.db")
    yield store
    store.close()


def get(endpoints: Endpoints, path: str) -> Response:
    """As the server answers a GET: the I/O thread's answer (probes), else a worker's."""
    request = Request("GET", path, email.message.Message(), keep_alive=False)
    return endpoints.admit(request, 0) or endpoints.handle(request)


def test_probes_stay_up_and_say_why_runs_are_not_recorded(store: Store) -> None:
    endpoints = Endpoints(store=store, trigger=lambda _: None, ready=lambda: True, webhook_secret=None)
    assert (get(endpoints, "/healthz").status, get(endpoints, "/healthz").body) == (200, b"ok\n")
    health = json.loads(get(endpoints, "/api/health").body)
    assert (health["status"], health["ready"], health["history"]["writable"]) == ("ok", True, True)

    store._db.execute("PRAGMA query_only = ON")
    assert store.start_run("schedule") < 0
    for probe in ("/healthz", "/readyz"):
        answer = get(endpoints, probe)
        assert answer.status == 200, "a restart would not make the file writable"
        first, warning = answer.body.decode().splitlines()
        assert first == "ok"
        assert warning.startswith("warning: runs are not recorded since ")
        assert "the state database takes no writes (read-only)" in warning
    health = json.loads(get(endpoints, "/api/health").body)
    assert health["status"] == "degraded"
    history = health["history"]
    assert (history["writable"], history["failing"], history["reason"]) == (False, "read_only", "read-only")
    assert history["write_errors"] == {"read_only": 1}
    assert "readonly" in history["last_error"]

    store._db.execute("PRAGMA query_only = OFF")
    assert store.start_run("schedule") > 0
    assert get(endpoints, "/readyz").body == b"ok\n"
    assert json.loads(get(endpoints, "/api/health").body)["status"] == "ok"
