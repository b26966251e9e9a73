"""The status page, rendered by the daemon's own endpoints from a real history file and the
example config: what each page shows, that every user-supplied string is escaped wherever it
appears, that nothing of the environment reaches a page, and the path prefix."""

from __future__ import annotations

import email.message
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from reconciler.daemon.http import Endpoints, Request, Response
from reconciler.plan import ObjectRef
from reconciler.plan.health import assess
from reconciler.render import Settings, render
from reconciler.spec import Spec
from reconciler.store import ActionRecord, AppStatusRecord, Store
from reconciler.web.pages import Pages
from tests.helpers import example_data, load_data

REALWORLD = "realworld"
BACKEND = "spring-boot-realworld-example-app"
SECRET = "s3cr3t-in-the-env"
#: What an attacker would put into a commit message, a reason, a log: markup that would run.
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>&amp;"


def spec_with(**extra: Any) -> Spec:
    data = example_data()
    app = next(a for a in data["applications"] if a["shortName"] == REALWORLD)
    app["services"][0].setdefault("env", {})["API_TOKEN"] = SECRET
    app.update(extra)
    return load_data(data)


def record(store: Store, spec: Spec, text: str = "", *, drift: bool = True) -> int:
    """One run of the example as the engine records it: statuses assessed from rendered objects
    with live state and pods, a commit, actions (one of them drift), a build and topics."""
    settings = Settings()
    desired = render(spec, settings)
    live = {}
    pods = []
    for obj in desired:
        current = json.loads(json.dumps(obj))
        if obj["kind"] == "Deployment":
            current["status"] = {"availableReplicas": obj["spec"]["replicas"]}
            pods.append(
                {
                    "metadata": {
                        "name": f"{obj['metadata']['name']}-7d9f{text}",
                        "labels": {"ust.mico/instance": obj["metadata"]["name"]},
                    },
                    "spec": {"nodeName": f"kwok-node-0{text}"},
                    "status": {
                        "phase": f"Running{text}",
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "containerStatuses": [
                            {"restartCount": 2, "state": {"waiting": {"reason": f"CrashLoopBackOff{text}"}}}
                        ],
                    },
                }
            )
        if obj["kind"] == "Service":
            current["status"] = {"loadBalancer": {"ingress": [{"ip": f"203.0.113.7{text}"}]}}
        live[ObjectRef.of(obj)] = current
    statuses = assess(
        [(a.short_name, a.version, a.deploy) for a in spec.applications], desired, live, pods, []
    )
    revision = "0123456789abcdef0123456789abcdef01234567"
    run_id = store.start_run(f"webhook{text}")
    backend = next(o for o in desired if o["kind"] == "Deployment" and BACKEND in o["metadata"]["name"])
    build = store.start_build(
        run_id=run_id,
        service=BACKEND,
        version="v1.0.0",
        fingerprint="f",
        job=f"build-backend{text}",
        attempt=1,
    )
    store.finish_build(
        build,
        outcome="failed",
        digest=f"sha256:{'a' * 64}{text}",
        reason=f"exit 1{text}",
        log_tail=f"step 1\nerror{text}",
    )
    store.record_topics(run_id, {"transform-request": ("created", f"3 partitions{text}")})
    store.finish_run(
        run_id,
        outcome="succeeded",
        revision=revision,
        error=f"one object failed{text}" if text else None,
        api_requests=7,
        actions=[
            ActionRecord(
                "Deployment",
                "mico-workspace",
                backend["metadata"]["name"] + text,
                "apply",
                "configured",
                f"spec.replicas changed in the cluster{text}",
                drift,
            )
        ],
        problems=[
            {
                "file": f"apps{text}.yaml",
                "line": 3,
                "column": 5,
                "field": f"replicas{text}",
                "message": f"bad{text}",
            }
        ]
        if text
        else [],
        statuses=[
            AppStatusRecord(s.app, s.version, s.deployment.value, s.sync.value, s.detail) for s in statuses
        ],
        commit=(f"Scale the backend{text}", f"Ada Lovelace{text}", 1_790_000_000.0),
    )
    return run_id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state.db")
    yield store
    store.close()


def endpoints(store: Store, spec: Spec | None, prefix: str = "") -> Endpoints:
    config = ("0123456789abcdef0123456789abcdef01234567", spec) if spec is not None else None
    return Endpoints(
        store=store,
        trigger=lambda _: None,
        ready=lambda: True,
        webhook_secret=None,
        pages=Pages(store, lambda: config, Settings(), prefix=prefix),
    )


def get(endpoints: Endpoints, target: str) -> Response:
    request = Request("GET", target, email.message.Message(), keep_alive=False)
    return endpoints.admit(request, 0) or endpoints.handle(request)


class Parsed(HTMLParser):
    """The elements, attributes, links and text of a page, as a browser's parser splits them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]
        self.links += [value or "" for name, value in attrs if name in ("href", "src", "action")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def page(endpoints: Endpoints, target: str) -> Parsed:
    answer = get(endpoints, target)
    assert answer.status == 200, answer.body[:500]
    assert answer.content_type == "text/html; charset=utf-8"
    assert dict(answer.headers)["Content-Security-Policy"].startswith("default-src 'none'")
    return Parsed(answer.body.decode())


PAGES = ("/", f"/applications/{REALWORLD}/v1.0.0", "/history", f"/history?app={REALWORLD}")


def test_the_applications_page_shows_each_application_with_its_status(store: Store) -> None:
    spec = spec_with()
    run_id = record(store, spec)
    shown = page(endpoints(store, spec), "/")
    api = json.loads(get(endpoints(store, spec), "/api/applications").body)
    for status in api:
        assert f"{status['app']} {status['version']}" in shown.plain
        assert f"/applications/{status['app']}/{status['version']}" in shown.links
    assert "✔ Deployed ✔ Synced" in shown.plain  # the sign and the word, not colour alone
    assert "01234567 Scale the backend (Ada Lovelace)" in shown.plain
    assert f"#{run_id}" in shown.plain
    assert "✔ succeeded" in shown.plain


def test_an_application_page_shows_its_graph_instances_topics_builds_and_drift(store: Store) -> None:
    spec = spec_with(description="The RealWorld demo", owner="Team Conduit")
    record(store, spec)
    shown = page(endpoints(store, spec), f"/applications/{REALWORLD}/v1.0.0")
    text = shown.plain
    assert "svg" in shown.tags
    assert "title" in shown.tags
    assert f"{BACKEND} v1.0.0" in text  # a node of the graph
    assert "The RealWorld demo" in text
    assert "Team Conduit" in text
    assert "Replicas: 1 of 1 available" in text
    assert "Running (waiting: CrashLoopBackOff) yes kwok-node-0 2" in text  # phase, ready, node, restarts
    assert "kwok-node-0" in text
    assert "203.0.113.7" in text  # an interface's external IP
    assert "Shared with" not in text  # realworld shares nothing with messaging-example
    assert "failed" in text
    assert "exit 1" in text
    assert "sha256:" + "a" * 64 in text
    assert "Drift: 1 object had been changed in the cluster." in text
    assert "spec.replicas changed in the cluster" in text
    messaging = page(endpoints(store, spec), "/applications/messaging-example/v1.0.0").plain
    assert "transform-request" in messaging
    assert "created (3 partitions)" in messaging
    assert "No builds" in messaging
    assert "No drift found." in messaging, "realworld's drift is not messaging-example's"
    assert BACKEND not in messaging.split("Latest run with this application")[1]


def test_a_build_holding_the_rollout_is_shown_once_with_its_log(store: Store) -> None:
    spec = spec_with()
    run_id = record(store, spec)
    (status,) = [s for s in store.statuses() if s["app"] == REALWORLD]
    held = {"service": BACKEND, "version": "v1.0.0", "job": "build-backend", "state": "failed"}
    held |= {"reason": "exit 1", "logTail": "step 1\nerror: no Dockerfile"}
    store.finish_run(
        store.start_run("retry"),
        outcome="succeeded",
        revision=status["revision"],
        statuses=[
            AppStatusRecord(
                s["app"], s["version"], s["deployment"], s["sync"], s["detail"] | {"builds": [held]}
            )
            for s in store.statuses()
        ],
    )
    assert run_id
    shown = page(endpoints(store, spec), f"/applications/{REALWORLD}/v1.0.0").plain
    assert shown.count("Job build-backend") == 1  # the held build is the recorded one
    assert "holds the rollout" in shown
    assert "error: no Dockerfile" in shown


def test_reloading_can_be_stopped(store: Store) -> None:
    daemon = endpoints(store, None, prefix="/mico")
    reloading = get(daemon, "/mico/history").body.decode()
    assert '<meta http-equiv="refresh" content="10">' in reloading
    assert 'href="/mico/history?refresh=0">stop reloading</a>' in reloading
    still = get(daemon, "/mico/history?refresh=0").body.decode()
    assert 'http-equiv="refresh"' not in still
    assert 'href="/mico/history">reload every 10 seconds</a>' in still


def test_the_history_is_filtered_by_application(store: Store) -> None:
    spec = spec_with()
    first = record(store, spec)
    second = record(store, spec, drift=False)
    everything = page(endpoints(store, spec), "/history").plain
    assert f"Run #{first}" in everything
    assert f"Run #{second}" in everything
    only = page(endpoints(store, spec), f"/history?app={REALWORLD}")
    assert f"History of {REALWORLD}" in only.plain
    assert ("value", REALWORLD) in only.attributes
    unknown = page(endpoints(store, spec), "/history?app=nothing-of-that-name").plain
    assert "No application nothing-of-that-name: showing all runs." in unknown


def test_every_user_string_is_escaped_everywhere(store: Store) -> None:
    """Hostile text in the commit, the actions, problems, builds, topics, pods, the error and
    the application's own description reaches every page as text, never as markup."""
    spec = spec_with(description=HOSTILE, owner=HOSTILE, name=HOSTILE[:100])
    record(store, spec, HOSTILE)
    daemon = endpoints(store, spec)
    seen = ""
    for target in PAGES:
        body = get(daemon, target).body.decode()
        shown = Parsed(body)
        assert "script" not in shown.tags
        assert "img" not in shown.tags
        assert not [name for name, _ in shown.attributes if name.startswith("on")]
        assert "<script>" not in body
        assert "<img" not in body
        seen += shown.plain
    for where in (
        "CrashLoopBackOff",
        "Scale the backend",
        "Ada Lovelace",
        "spec.replicas changed in the cluster",
        "bad",
        "exit 1",
    ):
        assert where + HOSTILE in seen, where
    assert f"apps{HOSTILE}.yaml:3:5" in seen  # a problem's FILE:LINE:COL
    assert "one object failed" + HOSTILE in seen


def test_no_page_shows_an_environment_value(store: Store) -> None:
    spec = spec_with()
    record(store, spec)
    daemon = endpoints(store, spec)
    for target in PAGES:
        assert SECRET not in get(daemon, target).body.decode(), target


def test_under_a_path_prefix_every_link_keeps_it(store: Store) -> None:
    spec = spec_with()
    record(store, spec)
    daemon = endpoints(store, spec, prefix="/mico")
    for target in PAGES:
        shown = page(daemon, "/mico" + target)
        own = [link for link in shown.links if link != "data:,"]  # the empty icon: no request
        assert own
        assert all(link.startswith("/mico/") for link in own), own
    css = get(daemon, "/mico/style.css")
    assert (css.status, css.content_type) == (200, "text/css; charset=utf-8")
    assert get(daemon, "/mico/api/applications").status == 200
    assert get(daemon, "/healthz").status == 200  # probes stay at the root


def test_before_the_first_run_and_for_an_unknown_application(store: Store) -> None:
    daemon = endpoints(store, None)
    assert "No run yet." in page(daemon, "/").plain
    assert "No runs recorded." in page(daemon, "/history").plain
    missing = get(daemon, "/applications/nothing/v1.0.0")
    assert missing.status == 404
    assert "No application nothing v1.0.0" in Parsed(missing.body.decode()).plain
    record(store, spec_with())
    without_config = page(daemon, f"/applications/{REALWORLD}/v1.0.0").plain
    assert "has not loaded a config with this application" in without_config
