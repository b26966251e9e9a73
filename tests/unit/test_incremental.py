"""The daemon's incremental pipeline: a commit that changes one file parses that file alone and
renders only the objects its changes reach, and every sequence of commits gives exactly what a
cold parse, render and stamp of the same files gives (problems included)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.plan import ObjectRef, compute, stamp, tracking_id
from reconciler.render import Renderer, Settings, render
from reconciler.spec import SpecError, load
from reconciler.spec.loader import Loader
from tests.helpers import dump

SETTINGS = Settings(namespace="apps", build_namespace="builds")
TRACKING = tracking_id(repo="git://git.example/config.git", path="config", namespace="apps")
SERVICES, APPLICATIONS = 12, 4


def config() -> dict[str, Any]:
    """Services in a chain of dependencies; each application uses three of its own and shares the
    first service of the one before it (one Deployment serving both, MICO's scale-out)."""
    services = [
        {
            "shortName": f"svc-{i}",
            "version": "v1.0.0",
            "name": f"Service {i}",
            "kafkaEnabled": i % 3 == 0,
            "image": f"registry.example.com/svc-{i}:1.0.0",
            "interfaces": [{"name": "http", "ports": [{"port": 80, "targetPort": 8080}]}],
            **({"dependencies": [{"shortName": f"svc-{i - 1}", "version": "^1.0.0"}]} if i else {}),
        }
        for i in range(SERVICES)
    ]
    applications = []
    for a in range(APPLICATIONS):
        own = [f"svc-{3 * a + k}" for k in range(3)]
        names = ([f"svc-{3 * (a - 1)}"] if a else []) + own
        entries = [{"shortName": n, "version": "v1.0.0", "replicas": 1} for n in names]
        # to the service shared with the application before: defined in that one's file
        connection = {"env": "UPSTREAM", "service": names[0], "interface": "http"}
        entries[-1]["interfaceConnections"] = [connection]
        applications.append(
            {
                "shortName": f"app-{a}",
                "version": "v1.0.0",
                "name": f"Application {a}",
                "services": entries,
                "kafkaFaasConnectors": [
                    {"instance": "bridge", "inputTopic": f"in-{a}", "outputTopic": f"out-{a}"}
                ],
            }
        )
    return {"services": services, "applications": applications}


def files_of(data: dict[str, Any]) -> dict[str, bytes]:
    """One file per application with the services it owns; a file of the rest."""
    owner = {e["shortName"]: a["shortName"] for a in reversed(data["applications"]) for e in a["services"]}
    files = {}
    for app in data["applications"]:
        files[f"config/{app['shortName']}.mico.yaml"] = dump(
            {
                "apiVersion": "ust.mico/v1",
                "services": [s for s in data["services"] if owner.get(s["shortName"]) == app["shortName"]],
                "applications": [app],
            }
        )
    rest = [s for s in data["services"] if s["shortName"] not in owner]
    if rest:
        files["config/services.mico.yaml"] = dump({"apiVersion": "ust.mico/v1", "services": rest})
    return files


class Pipeline:
    """Load, render and stamp as the engine does between runs: one loader, renderer and memo."""

    def __init__(self) -> None:
        self.loader = Loader()
        self.renderer = Renderer(SETTINGS)
        self.memo: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}

    def run(self, files: dict[str, bytes]) -> list[dict[str, Any]]:
        return stamp(self.renderer.render(self.loader.load(files), built={}), TRACKING, self.memo)


def cold(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return stamp(render(load(files), SETTINGS, built={}), TRACKING)


def test_a_commit_to_one_file_parses_it_alone_and_renders_only_what_it_reaches() -> None:
    data = config()
    pipeline = Pipeline()
    first = pipeline.run(files_of(data))
    assert pipeline.loader.files_parsed == APPLICATIONS
    assert pipeline.renderer.objects_rendered == len(first)
    # app-3's own third service: one Deployment and its Service, nothing else
    data["applications"][3]["services"][2]["replicas"] = 4
    second = pipeline.run(files_of(data))
    assert pipeline.loader.files_parsed == APPLICATIONS + 1
    changed = [b for a, b in zip(first, second, strict=True) if a != b]
    assert [(o["kind"], o["spec"].get("replicas")) for o in changed] == [("Deployment", 4)]
    # app-3 itself changed: each object of its instances and its connector is rendered again
    app3 = [o for o in second if "app-3@v1.0.0" in o["metadata"]["annotations"]["ust.mico/applications"]]
    assert pipeline.renderer.objects_rendered == len(first) + len(app3)
    assert len(app3) < len(first) / 2
    # objects nothing reached are the same objects, stamped once
    untouched = [
        b
        for a, b in zip(first, second, strict=True)
        if b["metadata"]["name"] not in {o["metadata"]["name"] for o in app3}
    ]
    assert untouched
    assert all(any(b is a for a in first) for b in untouched)
    assert second == cold(files_of(data))


def test_the_same_files_again_parse_and_render_nothing() -> None:
    pipeline = Pipeline()
    first = pipeline.run(files_of(config()))
    parsed, rendered = pipeline.loader.files_parsed, pipeline.renderer.objects_rendered
    again = pipeline.run(files_of(config()))
    assert (pipeline.loader.files_parsed, pipeline.renderer.objects_rendered) == (parsed, rendered)
    assert all(a is b for a, b in zip(first, again, strict=True))


def test_a_service_changed_in_another_file_renders_what_reads_it_again() -> None:
    """app-1's last entry (svc-5) connects to svc-0, which app-0's file defines: a new port of
    svc-0 must reach svc-5's environment although app-1's file did not change."""
    data = config()
    pipeline = Pipeline()
    pipeline.run(files_of(data))
    data["services"][0]["interfaces"][0]["ports"][0]["port"] = 8081
    result = pipeline.run(files_of(data))
    assert result == cold(files_of(data))
    (svc5,) = [o for o in result if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("svc-5-")]
    env = svc5["spec"]["template"]["spec"]["containers"][0]["env"]
    (upstream,) = [e for e in env if e["name"] == "UPSTREAM"]
    assert upstream["value"].endswith(":8081")


def test_a_file_with_a_problem_is_parsed_again_and_reported_like_a_cold_load() -> None:
    loader = Loader()
    files = files_of(config())
    loader.load(files)
    broken = dict(files)
    name = "config/app-2.mico.yaml"
    broken[name] = broken[name].replace(b"replicas: 1", b"replicas: -1", 1)
    for _ in range(2):
        with pytest.raises(SpecError) as incremental:
            loader.load(broken)
        with pytest.raises(SpecError) as fresh:
            load(broken)
        assert [str(p) for p in incremental.value.problems] == [str(p) for p in fresh.value.problems]
    assert loader.files_parsed == APPLICATIONS + 2


def test_the_plan_compares_only_objects_not_verified_at_their_version() -> None:
    desired = cold(files_of(config()))
    live = {}
    for obj in copy.deepcopy(desired):
        obj["metadata"]["resourceVersion"] = "7"
        live[ObjectRef.of(obj)] = obj
    first = compute(desired, live, tracking=TRACKING, last_applied={})
    assert first.compared == len(desired)
    assert not first.actions
    verified = {
        r: (live[r]["metadata"]["annotations"]["ust.mico/desired-hash"], "7") for r in first.unchanged
    }
    moved = next(iter(live))
    live[moved]["metadata"]["resourceVersion"] = "8"  # a watch event: this object alone is compared
    second = compute(desired, live, tracking=TRACKING, last_applied={}, verified=verified)
    assert second.compared == 1
    assert not second.actions


# -- property: any sequence of commits gives what a cold run gives ---------------------------------


def _replicas(data: dict[str, Any], a: int, e: int, value: int) -> None:
    entries = data["applications"][a % len(data["applications"])]["services"]
    entries[e % len(entries)]["replicas"] = value


def _env(data: dict[str, Any], a: int, e: int, value: int) -> None:
    entries = data["applications"][a % len(data["applications"])]["services"]
    entries[e % len(entries)]["env"] = {"LEVEL": str(value)}


def _port(data: dict[str, Any], s: int, _: int, value: int) -> None:
    data["services"][s % len(data["services"])]["interfaces"][0]["ports"][0]["port"] = 1 + value


def _drop_application(data: dict[str, Any], a: int, _: int, __: int) -> None:
    if len(data["applications"]) > 1:
        data["applications"].pop(a % len(data["applications"]))


def _undeploy(data: dict[str, Any], a: int, _: int, value: int) -> None:
    data["applications"][a % len(data["applications"])]["deploy"] = value % 2 == 0


def _image(data: dict[str, Any], s: int, _: int, value: int) -> None:
    data["services"][s % len(data["services"])]["image"] = f"registry.example.com/other:{value}"


def _break(data: dict[str, Any], a: int, _: int, __: int) -> None:
    """An invalid commit: a reference to a service version nobody defines."""
    data["applications"][a % len(data["applications"])]["services"][0]["version"] = "v9.0.0"


MUTATIONS = [_replicas, _env, _port, _drop_application, _undeploy, _image, _break]
commits = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(MUTATIONS),
            st.integers(0, 20),
            st.integers(0, 5),
            st.integers(0, 6),
        ),
        min_size=1,
        max_size=3,
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(commits)
def test_any_sequence_of_commits_gives_what_a_cold_run_gives(sequence: list[list[Any]]) -> None:
    data = config()
    pipeline = Pipeline()
    pipeline.run(files_of(data))
    for commit in sequence:
        for mutation, first, second, value in commit:
            mutation(data, first, second, value)
        files = files_of(data)
        expected = _outcome(cold, files)
        assert _outcome(pipeline.run, files) == expected
        if expected[0] == "problems":
            for app in data["applications"]:  # the next commit fixes it
                for entry in app["services"]:
                    entry["version"] = "v1.0.0"


def _outcome(run: Any, files: dict[str, bytes]) -> tuple[str, list[Any]]:
    """("objects", the objects) or ("problems", the problems as lines)."""
    try:
        return "objects", list(run(files))
    except SpecError as err:
        return "problems", [str(p) for p in err.problems]


def test_a_problem_naming_an_unchanged_file_points_where_a_cold_load_points() -> None:
    """The positions of a valid file are not kept, but found again: a later commit that defines a
    service twice names the line of the first definition exactly as a cold load does."""
    loader = Loader()
    files = files_of(config())
    loader.load(files)
    twice = dict(files)
    service = dict(config()["services"][4])
    twice["config/zz-late.mico.yaml"] = dump({"apiVersion": "ust.mico/v1", "services": [service]})
    with pytest.raises(SpecError) as incremental:
        loader.load(twice)
    with pytest.raises(SpecError) as fresh:
        load(twice)
    lines = [str(p) for p in incremental.value.problems]
    assert lines == [str(p) for p in fresh.value.problems]
    assert any("defined twice; also at config/app-1.mico.yaml:" in line for line in lines), lines
