#!/usr/bin/env python3
"""Benchmark of the reconciler against the real local platform (`make platform` first).

For N services in N/5 applications (the generator of bench/spec_bench.py) it measures, in one
run, as the daemon runs them (with its list-then-watch cache): (a) the first sync, (b) a no-op
resync, (c) a one-replica change (commit + run); and a no-op `sync --once` (no cache, one LIST
per kind): wall time, Kubernetes API requests (counted in the client) and peak RSS; and, as the
baseline, `kubectl apply --server-side` of the same rendered objects into fresh namespaces
(first apply and a repeat), with its requests counted from kubectl's own request log (-v=6).
Each N runs in a fresh child process so RSS figures do not mix. Services the generator builds
from source get a ready image here: on the platform a build is a KWOK-simulated pod, so timing
it would measure the simulation's delay, not the reconciler (builds have their own tests).

    python bench/reconcile_bench.py --services 100 1000
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))


def platform_env() -> dict[str, str]:
    text = (ROOT / ".platform" / "env").read_text()
    return dict(re.findall(r'^export (\w+)="(.*)"$', text, flags=re.MULTILINE))


def kubectl(env: dict[str, str], *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [f"{env['MICO_PLATFORM_BIN']}/kubectl", f"--kubeconfig={env['KUBECONFIG']}", *args],
        capture_output=True,
        text=True,
        check=False,
        **kwargs,
    )


def git(*args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
        check=True,
        capture_output=True,
    )


def child(services: int) -> dict[str, Any]:
    """One N, in this (fresh) process."""
    from spec_bench import generate

    from reconciler.cluster.cache import ObjectCache
    from reconciler.cluster.client import connect
    from reconciler.cluster.resources import DEPLOYMENT, POD, SERVICE
    from reconciler.engine import SELECTOR, Engine, Options
    from reconciler.plan import tracking_id
    from reconciler.render import Settings, render
    from reconciler.render.manifest import to_documents
    from reconciler.source.git import GitSource
    from reconciler.spec import load
    from reconciler.store import Store

    env = platform_env()
    tag = uuid.uuid4().hex[:6]
    workload, builds = f"bench-{services}-{tag}", f"bench-{services}-{tag}-b"
    for namespace in (workload, builds):
        kubectl(env, "create", "namespace", namespace)
    data = generate(services)
    for service in data[
        "services"
    ]:  # builds are KWOK-simulated here: measure the reconciler, not the stage delay
        if service.pop("source", None) is not None:
            service["image"] = f"registry.example.com/team/{service['shortName']}:1.0.0"
    scratch = Path(tempfile.mkdtemp())
    repo = Path(env["GIT_ROOT"]) / f"bench-{services}-{tag}.git"
    git("init", "-q", "--bare", "-b", "main", str(repo))
    work = scratch / "work"
    git("init", "-q", "-b", "main", str(work))
    (work / "mico.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    git("-C", str(work), "add", "-A")
    git("-C", str(work), "commit", "-q", "-m", "bench")
    url = f"{env['GIT_BASE_URL']}/{repo.name}"
    git("-C", str(work), "push", "-q", url, "main")
    settings = Settings(
        namespace=workload,
        build_namespace=builds,
        kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        invalid_message_topic=f"{workload}.InvalidMessage",
        dead_letter_topic=f"{workload}.DeadLetter",
        test_message_output_topic=f"{workload}.TestMessagesOutput",
    )
    tracking = tracking_id(repo=url, path=".", namespace=workload)

    def engine(state: str, *, watch: bool) -> Engine:
        api, counter = connect(env["KUBECONFIG"], pool_size=8)
        objects = None
        if watch:  # the daemon keeps a list-then-watch cache; `sync --once` lists every run
            objects = ObjectCache(
                api, [(DEPLOYMENT, workload), (SERVICE, workload), (POD, workload)], SELECTOR
            )
            objects.start()
        return Engine(
            source=GitSource(url, workdir=scratch / f"repo-{state}"),
            api=api,
            counter=counter,
            store=Store(scratch / state),
            objects=objects,
            options=Options(settings=settings, tracking=tracking),
        )

    daemon = engine("daemon.db", watch=True)
    results: dict[str, Any] = {"services": services}
    for label in ("first sync", "no-op resync"):
        run = daemon.run("bench")
        assert run.outcome.value == "succeeded", run.error
        results[label] = {"seconds": run.duration, "requests": run.api_requests}
    data["applications"][0]["services"][0]["replicas"] += 1
    (work / "mico.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    git("-C", str(work), "commit", "-q", "-am", "one replica more")
    git("-C", str(work), "push", "-q", url, "main")
    run = daemon.run("bench")
    writes = sum(1 for _, outcome, _ in run.executed if outcome.value in ("created", "configured", "deleted"))
    results["one-replica change"] = {"seconds": run.duration, "requests": run.api_requests, "writes": writes}
    results["objects"] = len(run.plan.unchanged) + len(run.plan.actions) if run.plan else 0
    single = engine("sync.db", watch=False).run(
        "bench"
    )  # a fresh `sync --once` against the converged cluster
    if single.outcome.value != "succeeded" or single.plan is None or single.plan.actions:
        sys.exit(f"the no-op sync --once was not a no-op: {single.error}")
    results["no-op sync --once"] = {"seconds": single.duration, "requests": single.api_requests}
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # baseline: kubectl apply --server-side of the same objects, into fresh namespaces
    base_w, base_b = f"{workload}-k", f"{builds}-k"
    for namespace in (base_w, base_b):
        kubectl(env, "create", "namespace", namespace)
    objects = render(
        load({"mico.yaml": (work / "mico.yaml").read_bytes()}),
        Settings(namespace=base_w, build_namespace=base_b),
    )
    manifest = scratch / "objects.yaml"
    manifest.write_text(to_documents(objects))
    for label in ("kubectl first apply", "kubectl repeat apply"):
        started = time.monotonic()
        applied = kubectl(env, "apply", "--server-side", "--field-manager=bench", "-v=6", "-f", str(manifest))
        seconds = time.monotonic() - started
        assert applied.returncode == 0, applied.stderr[-2000:]
        requests = len(re.findall(r'"Response" verb="|\] (GET|POST|PATCH|PUT|DELETE) https', applied.stderr))
        results[label] = {"seconds": seconds, "requests": requests}
    for namespace in (workload, builds, base_w, base_b):
        kubectl(env, "delete", "namespace", namespace, "--wait=false")
    subprocess.run(["rm", "-rf", str(repo), str(scratch)], check=False)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    rows = []
    for services in args.services:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(services)], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            sys.exit(out.stderr[-3000:])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'N':>5} {'objects':>7}  {'measure':<22} {'seconds':>8} {'API requests':>12} {'x kubectl':>9}")
    for row in rows:
        for label, baseline in (
            ("first sync", "kubectl first apply"),
            ("no-op resync", "kubectl repeat apply"),
            ("one-replica change", "kubectl repeat apply"),
            ("no-op sync --once", "kubectl repeat apply"),
            ("kubectl first apply", None),
            ("kubectl repeat apply", None),
        ):
            m = row[label]
            ratio = f"{m['seconds'] / row[baseline]['seconds']:.2f}" if baseline else "1.00"
            print(
                f"{row['services']:>5} {row['objects']:>7}  {label:<22} {m['seconds']:>8.2f} "
                f"{m['requests']:>12} {ratio:>9}"
            )
        print(
            f"{row['services']:>5} {'':>7}  peak RSS of the reconciler: {row['peak_rss_mib']:.0f} MiB; "
            f"writes for the one-replica change: {row['one-replica change']['writes']}"
        )


if __name__ == "__main__":
    main()
