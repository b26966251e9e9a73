#!/usr/bin/env python3
"""Benchmark of the pure core: `validate` and `render` on a generated config.

Generates N services in N/5 applications (Kafka services, shared instances, connectors,
source builds), then times the real CLI commands end to end (fresh process each run, the
way CI calls them) and, as the baseline measured in the same run, a bare libyaml `yaml.load` of
the same file in a fresh process. Reports the median of --runs, ratios to the baseline and
peak RSS. Beside them, in this process, the plan's cost per object: every rendered object
compared with an identical live copy (the worst case, nothing verified before), best of --runs,
so the growth of the pure core can be told apart from the apiserver's. The pure core makes no
Kubernetes API request, so none are counted here.

    python bench/spec_bench.py --services 1000
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


def generate(services: int) -> dict[str, Any]:
    docs_services = []
    for i in range(services):
        kafka = i % 4 == 0
        service: dict[str, Any] = {
            "shortName": f"service-{i:04d}",
            "version": f"v1.{i % 3}.0",
            "name": f"Service {i}",
            "description": "generated for the benchmark",
            "kafkaEnabled": kafka,
            "interfaces": [
                {"name": "http", "ports": [{"port": 80, "targetPort": 8080}]},
                {"name": "metrics", "public": False, "ports": [{"port": 9090, "targetPort": 9090}]},
            ],
        }
        if i % 10 == 0:
            service["source"] = {"git": f"https://git.example.com/team/service-{i:04d}.git"}
        else:
            service["image"] = f"registry.example.com/team/service-{i:04d}:1.{i % 3}.0"
        if i > 0:
            service["dependencies"] = [{"shortName": f"service-{i - 1:04d}", "version": ">=1.0.0 <2.0.0"}]
        docs_services.append(service)
    applications = []
    for a in range(services // 5):
        members = [docs_services[(a * 5 + k) % services] for k in range(5)]
        if a > 0:  # every application also shares the first service of the previous one
            members[0] = docs_services[(a - 1) * 5]
        entries = []
        for k, member in enumerate(members):
            entry: dict[str, Any] = {
                "shortName": member["shortName"],
                "version": member["version"],
                "replicas": 1 + k % 3,
                "labels": {"team": "bench"},
                "env": {"LOG_LEVEL": "info"},
            }
            if member["kafkaEnabled"]:
                entry["topics"] = [{"name": f"topic-{member['shortName']}", "role": "INPUT"}]
            entries.append(entry)
        # the shared first entry must stay identical across applications; the second connects
        entries[1]["interfaceConnections"] = [
            {"env": "UPSTREAM", "service": members[2]["shortName"], "interface": "http"}
        ]
        applications.append(
            {
                "shortName": f"application-{a:03d}",
                "version": "v1.0.0",
                "name": f"Application {a}",
                "services": _dedupe(entries),
                "kafkaFaasConnectors": [
                    {"instance": "bridge", "inputTopic": f"in-{a}", "outputTopic": f"out-{a}"}
                ],
            }
        )
    return {"apiVersion": "ust.mico/v1", "services": docs_services, "applications": applications}


def _dedupe(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    result = []
    for entry in entries:
        if entry["shortName"] not in seen:
            seen.add(entry["shortName"])
            result.append(entry)
    for entry in result:  # connections may only name members of the same application
        entry["interfaceConnections"] = [
            c for c in entry.get("interfaceConnections", []) if c["service"] in seen
        ]
    return result


def timed(command: list[str]) -> tuple[float, int, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return elapsed, result.returncode, result.stdout


def measure(services: int, runs: int) -> dict[str, Any]:
    """Median seconds of each command over `runs` fresh processes, its ratio to the libyaml parse
    of the same file, and the peak RSS of the slowest child."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mico.yaml"
        config.write_text(yaml.safe_dump(generate(services), sort_keys=False))
        cli = [sys.executable, "-m", "reconciler"]
        commands = {
            BASELINE: [
                sys.executable,
                "-c",
                f"import yaml; yaml.load(open({str(config)!r}), Loader=yaml.CSafeLoader)",
            ],
            "mico-reconciler validate": [*cli, "validate", str(config)],
            "mico-reconciler render": [*cli, "render", str(config)],
        }
        medians: dict[str, float] = {}
        outputs: dict[str, str] = {}
        for name, command in commands.items():
            times = []
            for _ in range(runs):
                elapsed, _, out = timed(command)
                times.append(elapsed)
            medians[name] = statistics.median(times)
            outputs[name] = out
        lines = config.read_text().count("\n")
        plan_cost = plan_seconds_per_object(config.read_text(), runs)
    return {
        "services": services,
        "lines": lines,
        "objects": outputs["mico-reconciler render"].count("\n---\n") + 1,
        "runs": runs,
        "seconds": medians,
        "ratios": {name: seconds / medians[BASELINE] for name, seconds in medians.items()},
        "plan microseconds per object": plan_cost * 1e6,
        "peak RSS MiB": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def plan_seconds_per_object(config: str, runs: int) -> float:
    from reconciler.plan import ObjectRef, compute, stamp
    from reconciler.render import Settings, render
    from reconciler.spec import load

    desired = stamp(render(load({"mico.yaml": config.encode()}), Settings(), built={}), "bench")
    live = {}
    for version, obj in enumerate(desired):
        copied = copy.deepcopy(obj)
        copied["metadata"]["resourceVersion"] = str(version)
        live[ObjectRef.of(obj)] = copied
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        plan = compute(desired, live, tracking="bench", last_applied={})
        best = min(best, time.perf_counter() - started)
    if plan.actions or plan.compared != len(desired):
        sys.exit(f"the plan of identical objects is not empty: {len(plan.actions)} actions")
    return best / len(desired)


BASELINE = "baseline: yaml.load (libyaml)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    found = measure(args.services, args.runs)
    apps = args.services // 5
    print(
        f"config: {args.services} services, {apps} applications, {found['lines']} YAML lines "
        f"-> {found['objects']} objects"
    )
    print(f"median of {args.runs} runs, each a fresh process; Kubernetes API requests: 0 (pure core)")
    print(f"{'command':<28} {'seconds':>8} {'x baseline':>11}")
    for name, seconds in found["seconds"].items():
        print(f"{name:<28} {seconds:>8.2f} {found['ratios'][name]:>11.2f}")
    per_object = found["plan microseconds per object"]
    print(f"plan, every object compared with its live copy: {per_object:.1f} µs per object")
    print(f"peak RSS of the slowest child: {found['peak RSS MiB']:.0f} MiB")


if __name__ == "__main__":
    main()
