#!/usr/bin/env python3
"""The reconciler against its floors, measured in one run on the real local platform.

For each N (services; N/5 applications, about 3.2 objects per service, the generator of
bench/spec_bench.py) it measures, with the same objects:

- the floors: a bare `git fetch` of a new commit (and of no new commit) in a plain clone of the
  config repository; one server-side apply PATCH of one changed Deployment; the first apply of
  every rendered object by a bare concurrent client (bodies serialized beforehand, the same
  concurrency as the reconciler, no parse, render or plan), the apiserver's own limit; and
  `kubectl apply --server-side` of the same objects (first apply and a repeat).
- the reconciler, in a fresh process per layout (the daemon's engine with its list-then-watch
  cache): the first sync; a no-op resync (median of 5); the full pass one makes at least every
  10 minutes; a one-replica change (median of 5 commits, each to another application): the
  time until the object is applied and the whole run; a no-op `sync --once` (no cache). Each
  with its Kubernetes API requests (counted in the client), the stages it spent its time in and
  the work it did (files parsed, objects rendered, objects compared); peak RSS.
- the daemon (`mico-reconciler run` as users start it): 10 commits, each pushed and announced
  by a signed GitHub webhook, timed until a watch from outside sees the changed Deployment
  (p50, p90); the daemon's peak RSS.

Layouts: `files` (the main case) puts each application and the services it first uses in a file
of its own under config/ (N/5 files); `single` puts everything in one mico.yaml.

The kube-controller-manager is stopped while it measures (and started again after): the pods
that one phase's Deployments make would otherwise load the apiserver during the next phase,
unequally. The reconciler's work ends with the apply; what the cluster does next is not its.

    python bench/reconcile_bench.py --services 100 1000 5000 --plot bench/results/growth.png

Writes bench/results/reconcile.json and prints the tables the README shows (`--readme`
rewrites them there).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import urllib3
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from spec_bench import BASELINE, generate  # noqa: E402

CONCURRENCY = 8  # the reconciler's default --concurrency
REPEATS = 5
WEBHOOK_COMMITS = 10
#: The N the targets are set at (issue 13): at it, the spec benchmark runs too, and the bare
#: client applies once more with 4 times the concurrency.
TARGET_N = 1000
#: The bare client's first apply measured again just before a layout's engine (its first sync's floor).
JUST_BEFORE = "bare client first apply, just before"
SECRET = b"bench-webhook-secret"
#: Runs on an unchanged commit are triggered as the daemon's schedule triggers them; a full
#: pass as a webhook does (a webhook never repeats a settled run).
SCHEDULE, FULL = "schedule", "webhook:push"
#: kubectl's apply of one large file slows down more than linearly (over 10 minutes for
#: 16,000 objects): its baseline is measured up to this N.
KUBECTL_UP_TO = 1000


# -- the platform ---------------------------------------------------------------------------------


def platform_env() -> dict[str, str]:
    text = (ROOT / ".platform" / "env").read_text()
    return dict(re.findall(r'^export (\w+)="(.*)"$', text, flags=re.MULTILINE))


def kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [f"{env['MICO_PLATFORM_BIN']}/kubectl", f"--kubeconfig={env['KUBECONFIG']}", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def platform(*args: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "hack/platform/platform.py"), *args], check=True, capture_output=True
    )


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


_DELETED = (("apis/apps/v1", "deployments"), ("api/v1", "services"))


class Api:
    """A bare client: urllib3 with the kubeconfig's certificates, bodies as bytes."""

    def __init__(self, kubeconfig: str, pool: int = CONCURRENCY) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        self.host = configuration.host
        self.pool = urllib3.PoolManager(
            maxsize=pool,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
            ca_certs=configuration.ssl_ca_cert,
        )

    def apply(self, path: str, body: bytes) -> None:
        response = self.pool.request(
            "PATCH",
            f"{self.host}{path}?fieldManager=bench&force=true",
            body=body,
            headers={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        )
        if response.status >= 300:
            raise RuntimeError(f"PATCH {path}: {response.status} {response.data[:300]!r}")

    def delete_all(self, namespace: str) -> None:
        """Every Deployment and Service in a namespace, without the namespace controller; returns
        when they are gone, so their deletion does not load the apiserver during the next phase.
        A collection DELETE deletes only until the apiserver's 60 s request timeout (about 2,000
        Services here): it is sent again while any is left."""
        collections = [f"{self.host}/{g}/namespaces/{namespace}/{p}" for g, p in _DELETED]
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            left = [
                url
                for url in collections
                if orjson.loads(self.pool.request("GET", f"{url}?limit=1").data)["items"]
            ]
            if not left:
                return
            for url in left:
                self.pool.request("DELETE", url)
            time.sleep(1)  # objects the DELETE removed may still be listed for a moment
        sys.exit(f"{namespace}: objects still there after 30 minutes of deleting them")

    def watch(self, namespace: str, seen: Callable[[dict[str, Any]], None], stop: threading.Event) -> None:
        """Deployments of a namespace as a watch from outside sees them, from now on."""
        listed = self.pool.request(
            "GET", f"{self.host}/apis/apps/v1/namespaces/{namespace}/deployments?limit=1"
        )
        version = orjson.loads(listed.data)["metadata"]["resourceVersion"]
        response = self.pool.request(
            "GET",
            f"{self.host}/apis/apps/v1/namespaces/{namespace}/deployments?watch=true&resourceVersion={version}",
            preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=None),
        )
        buffer = b""
        for chunk in response.stream(64 * 1024):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    seen(orjson.loads(line))
            if stop.is_set():
                break
        response.release_conn()


def path_of(obj: dict[str, Any]) -> str:
    group = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
    plural = {"Deployment": "deployments", "Service": "services"}[obj["kind"]]
    return f"{group}/namespaces/{obj['metadata']['namespace']}/{plural}/{obj['metadata']['name']}"


# -- the config repository ------------------------------------------------------------------------


def config_of(services: int) -> dict[str, Any]:
    """The generated config; services built from source get a ready image: on the platform a
    build is a KWOK-simulated pod, and its delay is the simulation's (builds have their tests)."""
    data = generate(services)
    for service in data["services"]:
        if service.pop("source", None) is not None:
            service["image"] = f"registry.example.com/team/{service['shortName']}:1.0.0"
        for interface in service["interfaces"]:  # a LoadBalancer takes one of 2,768 node ports
            interface["public"] = False
    return data


def layout(data: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Files by path: `single`, one mico.yaml; `files`, one per application under config/, each
    with the services that application is the first to use."""
    if kind == "single":
        return {"mico.yaml": data}
    owner: dict[str, int] = {}
    for index, app in enumerate(data["applications"]):
        for entry in app["services"]:
            owner.setdefault(entry["shortName"], index)
    files = {}
    for index, app in enumerate(data["applications"]):
        mine = [s for s in data["services"] if owner.get(s["shortName"]) == index]
        files[f"config/{app['shortName']}.mico.yaml"] = {
            "apiVersion": data["apiVersion"],
            "services": mine,
            "applications": [app],
        }
    rest = [s for s in data["services"] if s["shortName"] not in owner]
    if rest:
        files["config/services.mico.yaml"] = {"apiVersion": data["apiVersion"], "services": rest}
    return files


class ConfigRepo:
    """A bare repository on the platform's git daemon and a working copy that commits to it."""

    def __init__(
        self, env: dict[str, str], name: str, data: dict[str, Any], kind: str, scratch: Path
    ) -> None:
        self.data, self.kind = data, kind
        self.bare = Path(env["GIT_ROOT"]) / f"{name}.git"
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        self.url = f"{env['GIT_BASE_URL']}/{self.bare.name}"
        self.work = scratch / f"{name}-work"
        git("init", "-q", "-b", "main", str(self.work))
        self.path = "config" if kind == "files" else "."
        self.commit("the generated config")

    def commit(self, message: str) -> None:
        for path, content in layout(self.data, self.kind).items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            text = yaml.safe_dump(content, sort_keys=False)
            if not target.exists() or target.read_text() != text:
                target.write_text(text)
        git("-C", str(self.work), "add", "-A")
        git("-C", str(self.work), "commit", "-q", "-m", message)
        git("-C", str(self.work), "push", "-q", self.url, "main")

    def one_replica_more(self, application: int) -> str:
        """One more replica of an entry no other application shares; the Deployment's name."""
        from reconciler.spec.names import instance_name

        applications = self.data["applications"]
        entry = applications[application % len(applications)]["services"][2]
        entry["replicas"] += 1
        self.commit(f"one replica more for application {application}")
        version = next(s["version"] for s in self.data["services"] if s["shortName"] == entry["shortName"])
        return instance_name(entry["shortName"], version, None)


# -- floors ---------------------------------------------------------------------------------------


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def git_fetch_floors(repo: ConfigRepo, scratch: Path) -> dict[str, float]:
    """A bare `git fetch` in a plain clone: of a new commit (median of REPEATS) and of nothing new."""
    clone = scratch / "floor-clone"
    git("clone", "-q", "--bare", repo.url, str(clone))
    fetch = ["git", f"--git-dir={clone}", "fetch", "-q", "--no-tags", "origin", "main"]
    new, nothing = [], []
    for index in range(REPEATS):
        repo.one_replica_more(index)
        new.append(timed(lambda: subprocess.run(fetch, check=True)))
        nothing.append(timed(lambda: subprocess.run(fetch, check=True)))
    return {
        "git fetch (new commit)": statistics.median(new),
        "git fetch (nothing new)": statistics.median(nothing),
    }


def control_plane_seconds() -> float:
    """CPU seconds used so far by kube-apiserver and etcd (from /proc)."""
    total = 0
    for part in ("kube-apiserver", "etcd"):
        pid = (ROOT / ".platform" / "pids" / f"{part}.pid").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def bare_apply(api: Api, bodies: list[tuple[str, bytes]], concurrency: int) -> dict[str, Any]:
    """Every body applied by `concurrency` threads; how busy the control plane was meanwhile."""
    cpu, own = control_plane_seconds(), time.process_time()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        seconds = timed(lambda: list(pool.map(lambda b: api.apply(*b), bodies)))
    return {
        "seconds": seconds,
        "requests": len(bodies),
        "control plane cores busy": (control_plane_seconds() - cpu) / seconds,
        "client CPU seconds": time.process_time() - own,
        "concurrency": concurrency,
    }


def bodies_in(objects: list[dict[str, Any]], namespace: str) -> list[tuple[str, bytes]]:
    """Each object's path and serialized body, moved into `namespace`."""
    moved = [{**o, "metadata": {**o["metadata"], "namespace": namespace}} for o in objects]
    return [(path_of(m), orjson.dumps(m)) for m in moved]


def bare_apply_again(env: dict[str, str], objects: list[dict[str, Any]], namespace: str) -> dict[str, Any]:
    """The bare first apply once more, just before an engine's first sync: the apiserver's speed
    drifts within a run (etcd's history of the phases before grows until it is compacted), so
    each first sync is set against a floor measured next to it."""
    api = Api(env["KUBECONFIG"], pool=CONCURRENCY)
    result = bare_apply(api, bodies_in(objects, namespace), CONCURRENCY)
    api.delete_all(namespace)
    return result


def apply_floors(
    env: dict[str, str], objects: list[dict[str, Any]], namespace: str, *, wider: bool
) -> dict[str, Any]:
    """The bare concurrent first apply of every object (`wider`: again, into a second namespace,
    with 4 times the concurrency), then one PATCH of one changed Deployment."""
    api = Api(env["KUBECONFIG"], pool=4 * CONCURRENCY)
    results = {"bare client first apply": bare_apply(api, bodies_in(objects, namespace), CONCURRENCY)}
    if wider:
        kubectl(env, "create", "namespace", f"{namespace}-w")
        results["bare client first apply, 4x concurrency"] = bare_apply(
            api, bodies_in(objects, f"{namespace}-w"), 4 * CONCURRENCY
        )
        api.delete_all(f"{namespace}-w")
        kubectl(env, "delete", "namespace", f"{namespace}-w", "--wait=false")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    patches = []
    for replicas in range(2, 2 + REPEATS):
        changed = {**deployment, "metadata": {**deployment["metadata"], "namespace": namespace}}
        changed["spec"] = {**deployment["spec"], "replicas": replicas}
        body = orjson.dumps(changed)
        patches.append(timed(lambda b=body, c=changed: api.apply(path_of(c), b)))  # type: ignore[misc]
    api.delete_all(namespace)
    return {**results, "one PATCH": statistics.median(patches)}


def kubectl_applies(
    env: dict[str, str], objects: list[dict[str, Any]], namespace: str, scratch: Path
) -> dict[str, Any]:
    from reconciler.render.manifest import to_documents

    moved = [{**o, "metadata": {**o["metadata"], "namespace": namespace}} for o in objects]
    manifest = scratch / "objects.yaml"
    manifest.write_text(to_documents(moved))
    results = {}
    for label in ("kubectl first apply", "kubectl repeat apply"):
        started = time.perf_counter()
        applied = kubectl(env, "apply", "--server-side", "--field-manager=bench", "-v=6", "-f", str(manifest))
        seconds = time.perf_counter() - started
        if applied.returncode != 0:
            sys.exit(applied.stderr[-2000:])
        requests = len(re.findall(r'"Response" verb="|\] (GET|POST|PATCH|PUT|DELETE) https', applied.stderr))
        results[label] = {"seconds": seconds, "requests": requests}
    Api(env["KUBECONFIG"]).delete_all(namespace)
    return results


# -- the reconciler, in a process of its own --------------------------------------------------------


def engine_child(args: argparse.Namespace) -> dict[str, Any]:
    """First sync, no-op resyncs, a full pass, one-replica changes and a no-op sync --once."""
    from reconciler.cluster.cache import ObjectCache
    from reconciler.cluster.client import connect
    from reconciler.cluster.resources import POD
    from reconciler.engine import SELECTOR, Engine, Options, RunResult, observed
    from reconciler.plan import tracking_id
    from reconciler.source.git import GitSource
    from reconciler.store import Store

    env = platform_env()
    settings = settings_for(env, args.namespace)
    repo = ConfigRepo.__new__(ConfigRepo)
    repo.data, repo.kind = json.loads(Path(args.data).read_text()), args.layout
    repo.url, repo.work = args.url, Path(args.work)
    repo.path = "config" if args.layout == "files" else "."
    scratch = Path(tempfile.mkdtemp())
    options = Options(
        settings=settings, tracking=tracking_id(repo=repo.url, path=repo.path, namespace=args.namespace)
    )

    def engine(state: str, *, watch: bool) -> Engine:
        api, counter = connect(env["KUBECONFIG"], pool_size=CONCURRENCY)
        objects = None
        if watch:  # the daemon's list-then-watch cache; `sync --once` lists every run
            objects = ObjectCache(api, [*observed(options), (POD, args.namespace)], SELECTOR)
            objects.start()
        return Engine(
            source=GitSource(repo.url, path=repo.path, workdir=scratch / f"repo-{state}"),
            api=api,
            counter=counter,
            store=Store(scratch / state),
            objects=objects,
            options=options,
        )

    def figures(run: RunResult, cpu: float | None = None) -> dict[str, Any]:
        if run.outcome.value != "succeeded":
            sys.exit(f"a run failed: {run.error}")
        writes = sum(
            1 for _, outcome, _ in run.executed if outcome.value in ("created", "configured", "deleted")
        )
        return {
            "seconds": run.duration,
            "applied after": run.applied_after,
            "requests": run.api_requests,
            "writes": writes,
            "stages": run.stages,
            "work": run.work,
            "repeated": run.repeated,
            **({"CPU seconds": cpu} if cpu is not None else {}),
        }

    def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
        """The run in the middle (an odd number of runs), all of its figures."""
        return sorted(runs, key=lambda r: r["applied after"] or r["seconds"])[len(runs) // 2]

    daemon = engine("daemon.db", watch=True)
    own = time.process_time()  # the engine's threads and its cache's watches
    first = daemon.run(FULL)
    results: dict[str, Any] = {"first sync": figures(first, time.process_time() - own)}
    daemon.run(FULL)  # compares each object once, after the first sync
    results["full pass"] = figures(daemon.run(FULL))
    resyncs = [figures(daemon.run(SCHEDULE)) for _ in range(REPEATS)]
    if not all(r["repeated"] for r in resyncs):
        sys.exit("a no-op resync did not repeat the run before it: the namespace was not quiet")
    results["no-op resync"] = median(resyncs)
    changes = []
    for index in range(REPEATS):
        repo.one_replica_more(10 + index)
        changes.append(figures(daemon.run(SCHEDULE)))
    results["one-replica change"] = median(changes)
    single = engine("sync.db", watch=False).run(FULL)  # a fresh `sync --once`, converged cluster
    if single.plan is None or single.plan.actions:
        sys.exit(f"the no-op sync --once was not a no-op: {single.error}")
    results["no-op sync --once"] = figures(single)
    results["peak RSS MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.data).write_text(json.dumps(repo.data))  # the commits made here, for the next phase
    return results


def settings_for(env: dict[str, str], namespace: str) -> Any:
    from reconciler.render import Settings

    return Settings(
        namespace=namespace,
        build_namespace=f"{namespace}-b",
        kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        invalid_message_topic=f"{namespace}.InvalidMessage",
        dead_letter_topic=f"{namespace}.DeadLetter",
        test_message_output_topic=f"{namespace}.TestMessagesOutput",
    )


def run_child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the daemon and its webhook ---------------------------------------------------------------------


def webhook_commits(env: dict[str, str], repo: ConfigRepo, namespace: str, scratch: Path) -> dict[str, Any]:
    """`mico-reconciler run` on the converged namespace; each commit announced by a signed
    webhook, timed from the webhook's send until a watch from outside sees its Deployment."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (scratch / "secret").write_bytes(SECRET)
    settings = settings_for(env, namespace)
    log = open(scratch / "daemon.log", "wb")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "run",
            "--repo",
            repo.url,
            "--path",
            repo.path,
            "--kubeconfig",
            env["KUBECONFIG"],
            "--namespace",
            namespace,
            "--build-namespace",
            settings.build_namespace,
            "--kafka-bootstrap-servers",
            settings.kafka_bootstrap_servers,
            "--invalid-message-topic",
            settings.invalid_message_topic,
            "--dead-letter-topic",
            settings.dead_letter_topic,
            "--test-message-output-topic",
            settings.test_message_output_topic,
            "--state-db",
            str(scratch / "serve.db"),
            "--workdir",
            str(scratch / "serve-repo"),
            "--listen",
            f"127.0.0.1:{port}",
            "--interval",
            "3600",
            "--webhook-secret-file",
            str(scratch / "secret"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    http = urllib3.PoolManager()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if http.request("GET", f"{base}/readyz", retries=False).status == 200:
                    break
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.2)
        else:
            sys.exit("the daemon did not get ready: " + (scratch / "daemon.log").read_text()[-2000:])
        wanted: dict[str, Any] = {}
        arrived = threading.Event()
        seen_at: list[float] = []

        def seen(event: dict[str, Any]) -> None:
            obj = event["object"]
            if obj.get("metadata", {}).get("name") == wanted.get("name") and (
                obj.get("spec", {}).get("replicas") == wanted.get("replicas")
            ):
                seen_at.append(time.perf_counter())
                arrived.set()

        stop = threading.Event()
        api = Api(env["KUBECONFIG"])
        threading.Thread(target=api.watch, args=(namespace, seen, stop), daemon=True).start()
        time.sleep(1)
        latencies = []
        for index in range(WEBHOOK_COMMITS):
            application = 20 + index
            name = repo.one_replica_more(application)
            applications = repo.data["applications"]
            entry = applications[application % len(applications)]["services"][2]
            wanted.update(
                name=name,
                replicas=sum(
                    e["replicas"]
                    for a in repo.data["applications"]
                    for e in a["services"]
                    if e["shortName"] == entry["shortName"] and e["version"] == entry["version"]
                ),
            )
            arrived.clear()
            body = json.dumps({"ref": "refs/heads/main"}).encode()
            signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
            sent = time.perf_counter()
            answer = http.request(
                "POST",
                f"{base}/webhook/github",
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-Hub-Signature-256": signature,
                },
            )
            if answer.status != 202:
                sys.exit(f"webhook answered {answer.status}")
            if not arrived.wait(60):
                sys.exit("the change did not arrive: " + (scratch / "daemon.log").read_text()[-2000:])
            latencies.append(seen_at[-1] - sent)
            time.sleep(0.5)  # commits arrive apart, as people push them
        stop.set()
        status = Path(f"/proc/{daemon.pid}/status").read_text()
        peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()
    latencies.sort()
    return {
        "webhook commit to applied": {
            "p50": statistics.median(latencies),
            "p90": latencies[int(0.9 * (len(latencies) - 1))],
            "all": latencies,
        },
        "daemon peak RSS MiB": peak,
    }


# -- one N ----------------------------------------------------------------------------------------


def one_n(services: int, layouts: list[str]) -> dict[str, Any]:
    env = platform_env()
    tag = uuid.uuid4().hex[:6]
    scratch = Path(tempfile.mkdtemp())
    data = config_of(services)
    result: dict[str, Any] = {"services": services, "applications": len(data["applications"])}
    namespaces = {name: f"bench-{services}-{tag}-{name}" for name in ("floor", "kubectl", *layouts)}
    for namespace in namespaces.values():
        kubectl(env, "create", "namespace", namespace)
        kubectl(env, "create", "namespace", f"{namespace}-b")
    platform("stop", "kube-controller-manager")
    try:
        repos = {
            kind: ConfigRepo(
                env, f"bench-{services}-{tag}-{kind}", json.loads(json.dumps(data)), kind, scratch
            )
            for kind in layouts
        }
        main = repos[layouts[0]]
        from reconciler.plan import stamp, tracking_id

        objects = stamp(
            render_objects(main, namespaces["floor"], env),
            tracking_id(repo=main.url, path=main.path, namespace=namespaces["floor"]),
        )
        result["objects"] = len(objects)
        result["config files"] = len(layout(main.data, main.kind))
        result["yaml lines"] = sum(
            yaml.safe_dump(c, sort_keys=False).count("\n") for c in layout(main.data, main.kind).values()
        )
        result["floors"] = apply_floors(env, objects, namespaces["floor"], wider=services == TARGET_N)
        result["floors"].update(git_fetch_floors(main, scratch))
        if services <= KUBECTL_UP_TO:
            result.update(kubectl_applies(env, objects, namespaces["kubectl"], scratch))
        for kind, repo in repos.items():
            state = scratch / f"{kind}.json"
            state.write_text(json.dumps(repo.data))
            just_before = bare_apply_again(env, objects, namespaces["floor"])
            result[kind] = run_child(
                "--child",
                "--layout",
                kind,
                "--namespace",
                namespaces[kind],
                "--url",
                repo.url,
                "--work",
                str(repo.work),
                "--data",
                str(state),
            )
            result[kind][JUST_BEFORE] = just_before
            repo.data = json.loads(state.read_text())
        result[layouts[0]].update(webhook_commits(env, main, namespaces[layouts[0]], scratch))
        for kind in layouts:
            Api(env["KUBECONFIG"]).delete_all(namespaces[kind])
    finally:
        platform("up")
        for namespace in namespaces.values():
            kubectl(env, "delete", "namespace", namespace, f"{namespace}-b", "--wait=false")
        subprocess.run(["rm", "-rf", str(scratch)], check=False)
        for repo in Path(env["GIT_ROOT"]).glob(f"bench-{services}-{tag}-*.git"):
            subprocess.run(["rm", "-rf", str(repo)], check=False)
    return result


def render_objects(repo: ConfigRepo, namespace: str, env: dict[str, str]) -> list[dict[str, Any]]:
    from reconciler.render import render
    from reconciler.spec import load

    files = {
        path: yaml.safe_dump(c, sort_keys=False).encode() for path, c in layout(repo.data, repo.kind).items()
    }
    return render(load(files), settings_for(env, namespace), built={})


# -- report ---------------------------------------------------------------------------------------


def ratio(value: float, floor: float | None) -> str:
    return "" if floor is None else f"{value / floor:.2f}x"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def work(measure: dict[str, Any]) -> str:
    done = measure["work"]
    return " / ".join(str(done.get(k, 0)) for k in ("files_parsed", "objects_rendered", "objects_compared"))


def report(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        floors = row["floors"]
        fetch, nothing = floors["git fetch (new commit)"], floors["git fetch (nothing new)"]
        patch, bare = floors["one PATCH"], floors["bare client first apply"]
        unmeasured = {"seconds": None, "requests": None}
        kube_first = row.get("kubectl first apply", unmeasured)
        kube_repeat = row.get("kubectl repeat apply", unmeasured)
        lines.append(
            f"\nN = {row['services']:,} services, {row['applications']:,} applications, "
            f"{row['objects']:,} objects ({row['config files']} files, {row['yaml lines']:,} YAML lines "
            "in the `files` layout)\n"
        )
        lines += table(
            ["floor, measured in the same run", "seconds", "API requests"],
            [
                ["`git fetch` of a new commit", f"{fetch:.3f}", ""],
                ["`git fetch`, nothing new", f"{nothing:.3f}", ""],
                ["one server-side apply PATCH", f"{patch:.3f}", "1"],
                ["bare concurrent client, first apply", f"{bare['seconds']:.2f}", f"{bare['requests']:,}"],
                *(
                    [
                        f"bare concurrent client, first apply again, just before the `{kind}` engine's",
                        f"{row[kind][JUST_BEFORE]['seconds']:.2f}",
                        f"{row[kind][JUST_BEFORE]['requests']:,}",
                    ]
                    for kind in ("files", "single")
                    if JUST_BEFORE in row.get(kind, {})
                ),
                *(
                    [f"`kubectl apply --server-side`, {which}", f"{m['seconds']:.2f}", f"{m['requests']:,}"]
                    for which, m in (("first", kube_first), ("repeat", kube_repeat))
                    if m["seconds"] is not None
                ),
            ],
        )
        lines.append("")
        measured = []
        layouts = [k for k in ("files", "single") if k in row]
        for kind in layouts:
            r = row[kind]
            change, first = r["one-replica change"], r["first sync"]
            beside = r.get(JUST_BEFORE, bare)["seconds"]
            cases = [
                ("first sync, until applied", first, first["applied after"], beside, kube_first),
                ("first sync, whole run (topics too)", first, first["seconds"], beside, kube_first),
                (
                    "one-replica change, until applied",
                    change,
                    change["applied after"],
                    fetch + patch,
                    kube_repeat,
                ),
                ("one-replica change, whole run", change, change["seconds"], fetch + patch, kube_repeat),
                ("no-op resync", r["no-op resync"], r["no-op resync"]["seconds"], nothing, kube_repeat),
                (
                    "no-op full pass (at least every 10 min)",
                    r["full pass"],
                    r["full pass"]["seconds"],
                    nothing,
                    kube_repeat,
                ),
                (
                    "no-op `sync --once`",
                    r["no-op sync --once"],
                    r["no-op sync --once"]["seconds"],
                    nothing,
                    kube_repeat,
                ),
            ]
            for label, m, seconds, floor, kube in cases:
                measured.append(
                    [
                        label,
                        kind,
                        f"{seconds:.3f}",
                        ratio(seconds, floor),
                        ratio(seconds, kube["seconds"]),
                        f"{m['requests']:,}",
                        work(m),
                    ]
                )
            if "webhook commit to applied" in r:
                hook = r["webhook commit to applied"]
                measured.append(
                    [
                        f"webhook commit to applied, p50 of {WEBHOOK_COMMITS} (p90 {hook['p90']:.3f})",
                        kind,
                        f"{hook['p50']:.3f}",
                        ratio(hook["p50"], fetch + patch),
                        ratio(hook["p50"], kube_repeat["seconds"]),
                        "",
                        "",
                    ]
                )
        lines += table(
            [
                "reconciler",
                "layout",
                "seconds",
                "x floor",
                "x kubectl",
                "API requests",
                "parsed / rendered / compared",
            ],
            measured,
        )
        lines.append("")
        rss = ", ".join(f"the `{k}` engine {row[k]['peak RSS MiB']:.0f} MiB" for k in layouts)
        if "daemon peak RSS MiB" in row[layouts[0]]:
            rss += f"; the daemon (`run`, `{layouts[0]}`) {row[layouts[0]]['daemon peak RSS MiB']:.0f} MiB"
        lines.append(
            f"Peak RSS: {rss}. The floor of a first sync is the bare client's first apply measured just "
            "before it; of a change, "
            "`git fetch` of a new commit plus one PATCH; of a no-op, `git fetch` with nothing new."
        )
    for row in rows:
        if "spec" in row:
            lines += ["", f"Targets at N = {row['services']:,} (`files` layout):", "", *targets(row)]
    if len(rows) > 1:
        lines.append("\nHow cost grows (`files` layout):\n")
        growth = []
        for row in rows:
            r = row["files"]
            first = r["first sync"]
            growth.append(
                [
                    f"{row['services']:,}",
                    f"{row['objects']:,}",
                    f"{first['seconds']:.2f}",
                    f"{1000 * first['seconds'] / row['objects']:.2f}",
                    f"{first['requests']:,}",
                    f"{r['one-replica change']['applied after']:.3f}",
                    f"{r['no-op resync']['seconds']:.3f}",
                    f"{r['full pass']['seconds']:.3f}",
                    f"{r['webhook commit to applied']['p50']:.3f}",
                    f"{r['daemon peak RSS MiB']:.0f}",
                ]
            )
        lines += table(
            [
                "N",
                "objects",
                "first sync s",
                "ms per object",
                "requests",
                "change applied s",
                "no-op s",
                "full pass s",
                "webhook p50 s",
                "daemon RSS MiB",
            ],
            growth,
        )
        lines += ["", *growth_summary(rows)]
    return "\n".join(lines)


def growth_summary(rows: list[dict[str, Any]]) -> list[str]:
    """Each cost's growth from one N to the next, beside the objects' growth and the floor's."""
    sentences = []
    for before, after in itertools.pairwise(rows):
        a, b = before["files"], after["files"]

        def grew(
            pick: Callable[[dict[str, Any]], float], a: dict[str, Any] = a, b: dict[str, Any] = b
        ) -> str:
            return f"{pick(b) / pick(a):.1f}x"

        bare = (
            after["floors"]["bare client first apply"]["seconds"]
            / before["floors"]["bare client first apply"]["seconds"]
        )
        sentences.append(
            f"From N = {before['services']:,} to {after['services']:,} the objects grew "
            f"{after['objects'] / before['objects']:.1f}x: the first sync "
            f"{grew(lambda r: r['first sync']['applied after'])} "
            f"(the bare client's first apply {bare:.1f}x), "
            f"a change until applied {grew(lambda r: r['one-replica change']['applied after'])}, "
            f"the no-op resync {grew(lambda r: r['no-op resync']['seconds'])}, "
            f"the full pass {grew(lambda r: r['full pass']['seconds'])}, "
            f"the webhook p50 {grew(lambda r: r['webhook commit to applied']['p50'])}, "
            f"the daemon's peak RSS {grew(lambda r: r['daemon peak RSS MiB'])}."
        )
    return sentences


def targets(row: dict[str, Any]) -> list[str]:
    """Each target of issue 13 beside what this run measured."""
    floors, r, spec = row["floors"], row["files"], row["spec"]
    change_floor = floors["git fetch (new commit)"] + floors["one PATCH"]
    bare = r.get(JUST_BEFORE, floors["bare client first apply"])["seconds"]
    kube = row["kubectl first apply"]["seconds"]
    first = r["first sync"]["applied after"]

    def check(label: str, value: float, limit: float, unit: str = "x") -> list[str]:
        shown = f"{value:.2f}{unit}" if unit == "x" else f"{value:.0f} {unit}"
        bound = f"{limit:.2f}{unit}" if unit == "x" else f"{limit:.0f} {unit}"
        return [label, f"at most {bound}", shown, "met" if value <= limit else "**not met**"]

    checks = [
        check(
            "one-replica change until applied, x (fetch + PATCH floor)",
            r["one-replica change"]["applied after"] / change_floor,
            2.0,
        ),
        check(
            "webhook commit to applied p50, x (fetch + PATCH floor)",
            r["webhook commit to applied"]["p50"] / change_floor,
            3.0,
        ),
        check(
            "no-op resync, x `git fetch` floor",
            r["no-op resync"]["seconds"] / floors["git fetch (nothing new)"],
            1.5,
        ),
        check("first sync, x bare concurrent client", first / bare, 1.25),
        check("first sync, x kubectl first apply", first / kube, 0.35),
        check("validate, x libyaml parse", spec["ratios"]["mico-reconciler validate"], 1.5),
        check("render, x libyaml parse", spec["ratios"]["mico-reconciler render"], 2.0),
        check("peak RSS of the daemon", r["daemon peak RSS MiB"], 120, "MiB"),
    ]
    lines = table(["target", "limit", "measured", ""], checks)
    wide = floors.get("bare client first apply, 4x concurrency")
    seconds = spec["seconds"]
    if wide:
        plain = floors["bare client first apply"]
        lines += [
            "",
            f"The apiserver's own limit: the bare client's first apply took {plain['seconds']:.2f} s at "
            f"concurrency {plain['concurrency']} and {wide['seconds']:.2f} s at {wide['concurrency']}, "
            f"the control plane (kube-apiserver + etcd) keeping {plain['control plane cores busy']:.2f} and "
            f"{wide['control plane cores busy']:.2f} of the machine's {os.cpu_count()} cores busy; "
            f"`kubectl` took {kube:.2f} s. The pure core: "
            f"`validate` {seconds['mico-reconciler validate']:.2f} s, "
            f"`render` {seconds['mico-reconciler render']:.2f} s, the libyaml parse "
            f"{spec['seconds'][BASELINE]:.2f} s (median of {spec['runs']} fresh processes, single file, "
            f"{spec['lines']:,} lines).",
        ]
    beside = r.get(JUST_BEFORE)
    if beside and "CPU seconds" in r["first sync"]:
        lines += [
            "",
            f"CPU of the first sync at this N: the engine's process {r['first sync']['CPU seconds']:.2f} s "
            f"(its apply threads, the watches of its cache, parse, render, plan and record) for "
            f"{first:.2f} s until applied; the bare client's {beside['client CPU seconds']:.2f} s for its "
            f"{beside['seconds']:.2f} s, the control plane keeping {beside['control plane cores busy']:.2f} "
            f"of the {os.cpu_count()} cores busy meanwhile.",
        ]
    return lines


def plot(rows: list[dict[str, Any]], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [row["services"] for row in rows]
    figure, (time_axis, rss_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, pick in (
        ("first sync", lambda r: r["files"]["first sync"]["seconds"]),
        ("bare client first apply", lambda r: r["floors"]["bare client first apply"]["seconds"]),
        ("one-replica change, applied", lambda r: r["files"]["one-replica change"]["applied after"]),
        ("webhook commit to applied, p50", lambda r: r["files"]["webhook commit to applied"]["p50"]),
        ("no-op resync", lambda r: r["files"]["no-op resync"]["seconds"]),
        ("git fetch, new commit", lambda r: r["floors"]["git fetch (new commit)"]),
    ):
        time_axis.plot(n, [pick(r) for r in rows], marker="o", label=label)
    time_axis.set(xscale="log", yscale="log", xlabel="services", ylabel="seconds", title="time")
    time_axis.legend(fontsize=7)
    rss_axis.plot(n, [r["files"]["daemon peak RSS MiB"] for r in rows], marker="o", label="daemon (run)")
    rss_axis.plot(n, [r["files"]["peak RSS MiB"] for r in rows], marker="o", label="engine, first sync")
    rss_axis.set(xscale="log", xlabel="services", ylabel="MiB", title="peak RSS")
    rss_axis.legend(fontsize=7)
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=110)


def update_readme(text: str) -> None:
    readme = ROOT / "README.md"
    begin, end = "<!-- bench:reconcile begin -->", "<!-- bench:reconcile end -->"
    content = readme.read_text()
    if begin not in content:
        sys.exit(f"README.md has no {begin} marker")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{text.strip()}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, nargs="+", default=[1000])
    parser.add_argument(
        "--single-up-to", type=int, default=1000, help="also the single-file layout up to this N"
    )
    parser.add_argument("--plot", type=Path, help="write the growth plot (PNG) here")
    parser.add_argument("--readme", action="store_true", help="rewrite the README's tables")
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="measure nothing: the tables (and --plot, --readme) from bench/results/reconcile.json",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for option in ("--layout", "--namespace", "--url", "--work", "--data"):
        parser.add_argument(option, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(engine_child(args)))
        return
    rows = []
    if args.from_results:
        saved = RESULTS / "reconcile.json"
        if not saved.is_file():
            sys.exit(f"{saved}: no results saved yet; run the benchmark first")
        rows = json.loads(saved.read_text())
    for services in [] if args.from_results else args.services:
        layouts = ["files", "single"] if services <= args.single_up_to else ["files"]
        rows.append(one_n(services, layouts))
        if services == TARGET_N:  # the pure core, with the platform's CPU otherwise idle
            from spec_bench import measure

            rows[-1]["spec"] = measure(services, runs=5)
        RESULTS.mkdir(parents=True, exist_ok=True)  # what was measured survives a later failure
        (RESULTS / "reconcile.json").write_text(json.dumps(rows, indent=1))
        print(f"N = {services:,} measured", file=sys.stderr)
    if not args.from_results:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "reconcile.json").write_text(json.dumps(rows, indent=1))
    text = report(rows)
    print(text)
    if args.plot:
        plot(rows, args.plot)
    if args.readme:
        update_readme(text)


if __name__ == "__main__":
    main()
