"""Atomic application rollout in the pure core: which applications a build holds back, how a
held application's previous objects and the released ones make one desired state, and what is
remembered as rolled out."""

from __future__ import annotations

import copy
from typing import Any

from reconciler.plan import ObjectRef
from reconciler.plan.builds import BuildDecision, decide
from reconciler.plan.health import DeploymentStatus, SyncStatus, assess
from reconciler.plan.rollout import NO_ROLLOUT, Held, keep_live, rollouts, waiting
from reconciler.render import Settings, build_gates, builds_needed, compose, render
from reconciler.spec import Spec
from tests.helpers import example_data, load_data

SETTINGS = Settings()
DIGEST = "sha256:" + "ab" * 32
WORKER = ("worker", "v1.0.0")
BACKEND = ("spring-boot-realworld-example-app", "v1.0.0")


def config(*, worker_revision: str = "v1.0.0", shared_replicas: int = 1, own_replicas: int = 1) -> Spec:
    """The example plus `second`: a source-built `worker`, and `msg-validator` shared with
    messaging-example (one Deployment, replicas summed)."""
    data = example_data()
    data["services"].append(
        {
            "shortName": "worker",
            "version": "v1.0.0",
            "name": "Worker",
            "source": {"git": "https://git.example/team/worker.git", "revision": worker_revision},
            "kafkaEnabled": True,
        }
    )
    validator = copy.deepcopy(data["applications"][1]["services"][1])
    data["applications"][1]["services"][1]["replicas"] = own_replicas
    data["applications"].append(
        {
            "shortName": "second",
            "version": "v1.0.0",
            "name": "Second",
            "services": [
                {**validator, "replicas": shared_replicas},
                {"shortName": "worker", "version": "v1.0.0", "env": {"MODE": worker_revision}},
            ],
        }
    )
    return load_data(data)


def decisions(spec: Spec, history: dict[Any, Any] | None = None) -> dict[tuple[str, str], BuildDecision]:
    found = decide(builds_needed(spec), history or {}, settings=SETTINGS, now=10_000)
    return {d.key: d for d in found}


def succeeded(spec: Spec, key: tuple[str, str], digest: str = DIGEST) -> dict[str, Any]:
    (decision,) = [d for d in decisions(spec).values() if d.key == key]
    return {"fingerprint": decision.fingerprint, "outcome": "succeeded", "digest": digest, "finished": 1.0}


def failed(spec: Spec, key: tuple[str, str]) -> dict[str, Any]:
    (decision,) = [d for d in decisions(spec).values() if d.key == key]
    return {
        "fingerprint": decision.fingerprint,
        "outcome": "failed",
        "digest": None,
        "finished": 9_999.0,
        "reason": "BackoffLimitExceeded: exit status 2",
        "log_tail": "error building image",
    }


def by_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def validator(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("msg-")]
    return found


def test_a_build_holds_back_exactly_the_applications_that_use_it() -> None:
    spec = config()
    history = {BACKEND: [succeeded(spec, BACKEND)], WORKER: [failed(spec, WORKER)]}
    held = waiting(spec, decisions(spec, history))
    assert list(held) == ["second@v1.0.0"]
    (build,) = held["second@v1.0.0"]
    assert (build["job"], build["state"], build["reason"]) == (
        "build-worker-v1-0-0",
        "failed",
        "BackoffLimitExceeded: exit status 2",
    )
    assert build["logTail"] == "error building image"
    starting = waiting(spec, decisions(spec))
    assert sorted(starting) == ["realworld@v1.0.0", "second@v1.0.0"]
    assert {b["state"] for builds in starting.values() for b in builds} == {"building"}


def test_an_undeployed_application_is_never_held() -> None:
    spec = config()
    data = example_data()
    data["applications"][0]["deploy"] = False
    assert waiting(load_data(data), decisions(spec)) == {}


def test_the_preview_annotates_each_build_job_with_the_applications_it_gates() -> None:
    data = example_data()
    data["applications"][1]["services"].append(
        {"shortName": BACKEND[0], "version": "v1.0.0", "instance": "messaging"}
    )
    spec = load_data(data)
    assert build_gates(spec) == {BACKEND: ("messaging-example@v1.0.0", "realworld@v1.0.0")}
    (job,) = [o for o in render(spec, SETTINGS) if o["kind"] == "Job"]
    assert job["metadata"]["annotations"]["ust.mico/gates"] == "messaging-example@v1.0.0,realworld@v1.0.0"


def test_a_held_application_keeps_its_previous_objects_and_its_share_of_a_shared_instance() -> None:
    old = config(worker_revision="v1.0.0", shared_replicas=1, own_replicas=1)
    new = config(worker_revision="hotfix", shared_replicas=4, own_replicas=2)
    history = {BACKEND: [succeeded(old, BACKEND)], WORKER: [succeeded(old, WORKER)]}
    before = render(old, SETTINGS, built={BACKEND: "b@" + DIGEST, WORKER: "w@" + DIGEST})
    held = waiting(new, decisions(new, history))  # the worker's new source needs a build
    assert list(held) == ["second@v1.0.0"]
    released = new.only({a.key for a in new.applications} - held.keys())
    desired = compose(
        [
            render(released, SETTINGS, built={BACKEND: "b@" + DIGEST}),
            render(old.only(held.keys()), SETTINGS, built={WORKER: "w@" + DIGEST}),
        ]
    )
    shared = validator(desired)
    assert shared["spec"]["replicas"] == 2 + 1, "messaging-example's new replicas plus second's previous ones"
    assert (
        shared["metadata"]["annotations"]["ust.mico/applications"] == "messaging-example@v1.0.0,second@v1.0.0"
    )
    previous, now = by_name(before), by_name(desired)
    (worker,) = [key for key in now if key[0] == "Deployment" and key[1].startswith("worker-")]
    assert now[worker] == previous[worker], "the held application's own objects are exactly the previous ones"
    assert now[worker]["spec"]["template"]["spec"]["containers"][0]["env"][0] == {
        "name": "MODE",
        "value": "v1.0.0",
    }
    assert set(now) == set(previous)


def test_compose_keeps_the_first_parts_definition_and_never_changes_its_input() -> None:
    first = render(config(own_replicas=2).only({"messaging-example@v1.0.0"}), SETTINGS, built={})
    second = render(config(shared_replicas=3).only({"second@v1.0.0"}), SETTINGS, built={})
    validator(second)["spec"]["template"]["spec"]["containers"][0]["image"] = "other:1"
    untouched = copy.deepcopy((first, second))
    joined = validator(compose([first, second]))
    assert joined["spec"]["replicas"] == 5
    assert joined["spec"]["template"]["spec"]["containers"][0]["image"] == image_of(validator(first))
    assert (first, second) == untouched
    assert compose([first]) == first
    services = [o for o in compose([first, second]) if o["kind"] == "Service"]
    assert [s["metadata"]["annotations"]["ust.mico/applications"] for s in services] == [
        "messaging-example@v1.0.0,second@v1.0.0"
    ]


def image_of(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def live(objects: list[dict[str, Any]]) -> dict[ObjectRef, dict[str, Any]]:
    found = {}
    for obj in copy.deepcopy(objects):
        obj["metadata"]["resourceVersion"] = "7"
        found[ObjectRef.of(obj)] = obj
    return found


def test_a_held_application_that_cannot_be_rendered_again_keeps_its_live_objects() -> None:
    before = render(
        config(shared_replicas=3), SETTINGS, built={BACKEND: "b@" + DIGEST, WORKER: "w@" + DIGEST}
    )
    actual = live(before)
    new = config(own_replicas=2)
    released = render(
        new.only({"realworld@v1.0.0", "messaging-example@v1.0.0"}), SETTINGS, built={BACKEND: "b"}
    )
    held = {"second@v1.0.0": Held(({"state": "failed"},), "a" * 40, problem="its revision cannot be read")}
    kept, desired = keep_live(held, released, actual)
    shared = validator(desired)
    assert shared == actual[ObjectRef.of(shared)], "the shared instance stays exactly as it is live"
    assert shared["spec"]["replicas"] == 1 + 3
    assert kept == held
    others = [o for o in desired if o is not shared and o["kind"] == "Deployment"]
    assert all("resourceVersion" not in o["metadata"] for o in others), "the rest is the new revision"
    never = {"second@v1.0.0": Held(({"state": "failed"},))}
    assert keep_live(never, released, actual)[0]["second@v1.0.0"].problem == NO_ROLLOUT
    assert keep_live(never, released, {})[0]["second@v1.0.0"].problem is None
    ready = {"second@v1.0.0": Held(({"state": "failed"},), "a" * 40, config(), {})}
    assert keep_live(ready, released, actual) == (ready, released)


def test_only_released_applications_whose_objects_applied_are_remembered() -> None:
    spec = config()
    changes = rollouts(
        spec,
        "c" * 40,
        held={"second@v1.0.0"},
        incomplete={"messaging-example@v1.0.0"},
        recorded={"realworld@v1.0.0": "b" * 40, "gone@v1.0.0": "a" * 40},
    )
    assert changes == {"realworld@v1.0.0": "c" * 40, "gone@v1.0.0": None}
    unchanged = rollouts(
        spec,
        "c" * 40,
        held=(),
        incomplete=(),
        recorded=dict.fromkeys(("realworld@v1.0.0", "messaging-example@v1.0.0", "second@v1.0.0"), "c" * 40),
    )
    assert unchanged == {}


def test_status_of_a_held_application() -> None:
    spec = config()
    history = {BACKEND: [succeeded(spec, BACKEND)], WORKER: [failed(spec, WORKER)]}
    builds = waiting(spec, decisions(spec, history))["second@v1.0.0"]
    hold = Held(builds, "d" * 40, problem=None)
    apps = [(a.short_name, a.version, a.deploy) for a in spec.applications]
    statuses = {s.app: s for s in assess(apps, [], {}, [], [], held={"second@v1.0.0": hold})}
    second = statuses["second"]
    assert (second.deployment, second.sync) == (DeploymentStatus.INCOMPLETE, SyncStatus.OUT_OF_SYNC)
    assert second.detail["heldAt"] == {"revision": "d" * 40, "problem": None}
    assert second.detail["builds"][0]["reason"] == "BackoffLimitExceeded: exit status 2"
    running = Held(tuple({**b, "state": "building"} for b in builds))
    statuses = {s.app: s for s in assess(apps, [], {}, [], [], held={"second@v1.0.0": running})}
    assert statuses["second"].deployment == DeploymentStatus.PENDING
    assert statuses["realworld"].deployment == DeploymentStatus.UNDEPLOYED
