from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client

from reconciler.cluster.builder import Builder
from reconciler.plan.builds import BuildState, decide
from reconciler.render import Settings, builds_needed
from reconciler.render.builds import source_fingerprint
from reconciler.store import Store
from tests.helpers import example_data, load_data

DIGEST = "sha256:" + "ab" * 32
SETTINGS = Settings(registry="registry.local/team")


def needed(revision: str = "v1.0.0") -> list[Any]:
    data = example_data()
    data["services"][0]["source"]["revision"] = revision
    return builds_needed(load_data(data))


def record(
    outcome: str, *, revision: str = "v1.0.0", finished: float = 1000.0, **extra: Any
) -> dict[str, Any]:
    (service,) = needed(revision)
    return {
        "fingerprint": source_fingerprint(service.source, service.version),
        "outcome": outcome,
        "finished": finished,
        "digest": None,
        "reason": None,
        "log_tail": None,
        **extra,
    }


KEY = ("spring-boot-realworld-example-app", "v1.0.0")


def test_only_services_built_from_source_of_deployed_applications_need_builds() -> None:
    assert [(s.short_name, s.version) for s in needed()] == [KEY]
    data = example_data()
    data["applications"][0]["deploy"] = False
    assert builds_needed(load_data(data)) == []


def test_first_build_starts_with_the_job_name_mico_used() -> None:
    (decision,) = decide(needed(), {}, settings=SETTINGS, now=0)
    assert decision.state == BuildState.START
    assert (decision.job, decision.attempt) == ("build-spring-boot-realworld-example-app-v1-0-0", 1)
    assert decision.reason == "first build of this source"


def test_a_successful_build_of_the_same_source_is_ready_and_pinned_by_digest() -> None:
    (decision,) = decide(needed(), {KEY: [record("succeeded", digest=DIGEST)]}, settings=SETTINGS, now=0)
    assert decision.state == BuildState.READY
    assert decision.image == f"registry.local/team/spring-boot-realworld-example-app@{DIGEST}"


def test_a_changed_source_for_a_built_version_rebuilds() -> None:
    history = {KEY: [record("succeeded", digest=DIGEST)]}
    (decision,) = decide(needed("feature-branch"), history, settings=SETTINGS, now=0)
    assert decision.state == BuildState.START
    assert decision.reason.startswith("the source of an already built version changed")


def test_failures_back_off_exponentially() -> None:
    one = [record("failed", reason="BackoffLimitExceeded", finished=1000)]
    (waiting,) = decide(needed(), {KEY: one}, settings=SETTINGS, now=1010, backoff_seconds=30)
    assert (waiting.state, waiting.retry_at) == (BuildState.BACKOFF, 1030)
    assert waiting.last_failure is not None
    (retry,) = decide(needed(), {KEY: one}, settings=SETTINGS, now=1030, backoff_seconds=30)
    assert (retry.state, retry.attempt) == (BuildState.START, 2)
    assert retry.reason == "retry 1 after: BackoffLimitExceeded"
    three = [record("failed", reason="x", finished=2000)] * 3
    (longer,) = decide(needed(), {KEY: three}, settings=SETTINGS, now=2000, backoff_seconds=30)
    assert longer.retry_at == 2000 + 30 * 4


def test_a_reported_value_that_is_not_a_digest_is_never_used() -> None:
    (decision,) = decide(
        needed(), {KEY: [record("succeeded", digest="latest; rm -rf /")]}, settings=SETTINGS, now=0
    )
    assert decision.state == BuildState.START


def test_interrupting_while_the_build_watch_has_just_been_released_is_quiet(tmp_path: Path) -> None:
    """SIGTERM may arrive just as a watch ends: ending it again must not break the hand-over."""
    builder = Builder(client.ApiClient(), Store(tmp_path / "state.db"), SETTINGS, "tracking")
    watch = urllib3.HTTPResponse(body=io.BytesIO(b""), preload_content=False)
    watch.release_conn()
    builder._watch = watch
    builder.interrupt()  # urllib3 refuses to shut a released response down (ValueError)
    assert builder._stopping.is_set()
