"""What a held application keeps, read back from a real git repository (served from a local
path) and a real state database: the config at the revision it last rolled out at, with the
images its builds pinned then."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.plan.builds import decide, pinned_image
from reconciler.render import Settings, builds_needed
from reconciler.source.git import GitSource
from reconciler.source.previous import PreviousConfigs
from reconciler.store import Store
from tests.helpers import commit, example_data, load_data, new_repo

SETTINGS = Settings()
APP = "realworld@v1.0.0"
BACKEND = ("spring-boot-realworld-example-app", "v1.0.0")
DIGEST = "sha256:" + "cd" * 32
BUILD = ({"job": "build-spring-boot-realworld-example-app-v1-0-0", "state": "failed", "reason": "x"},)


def with_revision(revision: str, replicas: int) -> dict[str, Any]:
    data = example_data()
    data["services"][0]["source"]["revision"] = revision
    data["applications"][0]["services"][0]["replicas"] = replicas
    return data


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return new_repo(tmp_path / "origin")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db")


def fetched(origin: Path, workdir: Path) -> tuple[GitSource, str]:
    """A source that fetched the example, committed to `origin` as its only commit."""
    first = commit(origin, example_data(), "first")
    source = GitSource(str(origin), path="config", workdir=workdir)
    source.fetch()
    return source, first


def rolled_out(store: Store, data: dict[str, Any], revision: str) -> None:
    """What a run that built the backend and rolled the application out records."""
    (decision,) = decide(builds_needed(load_data(data)), {}, settings=SETTINGS, now=0)
    run = store.start_run("test")
    build = store.start_build(
        run_id=run,
        service=decision.service,
        version=decision.version,
        fingerprint=decision.fingerprint,
        job=decision.job,
        attempt=1,
    )
    store.finish_build(build, outcome="succeeded", digest=DIGEST)
    store.record_rollouts(run, {APP: revision})
    store.finish_run(run, outcome="succeeded", revision=revision)


def test_a_held_application_keeps_the_config_and_images_of_its_last_rollout(
    origin: Path, store: Store, tmp_path: Path
) -> None:
    old = with_revision("v1.0.0", replicas=1)
    first = commit(origin, old, "first")
    source = GitSource(str(origin), path="config", workdir=tmp_path / "work")
    assert source.fetch().revision == first
    rolled_out(store, old, first)
    commit(origin, with_revision("hotfix", replicas=3), "second")
    source.fetch()
    held = PreviousConfigs(source, store, SETTINGS).held({APP: BUILD})[APP]
    assert (held.revision, held.problem, held.builds) == (first, None, BUILD)
    assert held.config is not None
    assert [a.key for a in held.config.applications] == [APP]
    assert held.config.applications[0].services[0].replicas == 1
    assert held.images == {BACKEND: pinned_image(SETTINGS, BACKEND[0], DIGEST)}


def test_a_restart_on_an_empty_work_directory_fetches_that_revision_by_id(
    origin: Path, store: Store, tmp_path: Path
) -> None:
    old = with_revision("v1.0.0", replicas=1)
    first = commit(origin, old, "first")
    rolled_out(store, old, first)
    commit(origin, with_revision("hotfix", replicas=3), "second")
    restarted = GitSource(str(origin), path="config", workdir=tmp_path / "fresh")
    restarted.fetch()  # shallow: the first commit is not in this clone
    held = PreviousConfigs(restarted, store, SETTINGS).held({APP: BUILD})[APP]
    assert (held.revision, held.problem) == (first, None)
    assert held.config is not None


def test_an_application_that_never_rolled_out_keeps_nothing(
    origin: Path, store: Store, tmp_path: Path
) -> None:
    source, _ = fetched(origin, tmp_path / "work")
    held = PreviousConfigs(source, store, SETTINGS).held({APP: BUILD})[APP]
    assert (held.revision, held.config, held.problem) == (None, None, None)
    assert PreviousConfigs(source, store, SETTINGS).held({}) == {}


def test_a_revision_gone_from_the_repository_keeps_the_objects_as_they_are(
    origin: Path, store: Store, tmp_path: Path
) -> None:
    source, _ = fetched(origin, tmp_path / "work")
    gone = "f" * 40
    store.record_rollouts(store.start_run("test"), {APP: gone})
    held = PreviousConfigs(source, store, SETTINGS).held({APP: BUILD})[APP]
    assert held.config is None
    assert held.problem is not None
    assert held.problem.startswith(f"its revision {gone[:12]} cannot be read again: ")


def test_a_revision_whose_build_is_no_longer_recorded_keeps_the_objects_as_they_are(
    origin: Path, store: Store, tmp_path: Path
) -> None:
    source, first = fetched(origin, tmp_path / "work")
    store.record_rollouts(store.start_run("test"), {APP: first})
    held = PreviousConfigs(source, store, SETTINGS).held({APP: BUILD})[APP]
    assert held.config is None
    assert held.problem == (
        f"no successful build of build-spring-boot-realworld-example-app-v1-0-0 at its revision {first[:12]} "
        "is recorded"
    )


def test_rollouts_are_remembered_and_forgotten(store: Store) -> None:
    store.record_rollouts(store.start_run("test"), {APP: "a" * 40, "x@1": "a" * 40, "y@1": "a" * 40})
    store.record_rollouts(store.start_run("test"), {APP: "b" * 40, "x@1": None})
    assert list(store.rollouts().items()) == [(APP, "b" * 40), ("y@1", "a" * 40)], "the most recent first"


def test_of_two_held_applications_the_most_recently_rolled_out_comes_first(
    origin: Path, store: Store, tmp_path: Path
) -> None:
    """compose() keeps the first part's definition of a shared instance: the later one."""
    source, first = fetched(origin, tmp_path / "work")
    second = commit(origin, with_revision("v1.0.0", replicas=2), "second")
    source.fetch()
    other = "messaging-example@v1.0.0"
    store.record_rollouts(store.start_run("test"), {other: first, APP: first})
    store.record_rollouts(store.start_run("test"), {other: second})
    held = PreviousConfigs(source, store, SETTINGS).held({APP: BUILD, other: BUILD})
    assert [(app, h.revision) for app, h in held.items()] == [(other, second), (APP, first)]
