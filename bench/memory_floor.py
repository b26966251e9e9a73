#!/usr/bin/env python3
"""The memory floor under the daemon's peak RSS: what its libraries take once imported.

Each line is a fresh process that imports one thing and reports its peak RSS (`ru_maxrss`); the
first is a bare interpreter, the last everything `mico-reconciler run` imports before its first
run. A library's own share is its line minus the bare interpreter (libraries they share, such as
urllib3 or pydantic, count in each).

    python bench/memory_floor.py
"""

from __future__ import annotations

import subprocess
import sys

IMPORTS = {
    "bare interpreter": "pass",
    "kubernetes (client and config)": "import kubernetes.client, kubernetes.config",
    "confluent-kafka (librdkafka)": "import confluent_kafka.admin",
    "pydantic": "import pydantic",
    "GitPython": "import git",
    "prometheus-client": "import prometheus_client",
    "APScheduler": "import apscheduler.schedulers.background",
    "the spec stage (models, rules)": "import reconciler.spec",
    "everything `mico-reconciler run` imports": (
        "import reconciler.cli, reconciler.engine, reconciler.daemon.service, "
        "reconciler.cluster.cache, reconciler.cluster.lease"
    ),
}


def peak_mib(statement: str) -> float:
    code = f"{statement}\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out) / 1024


def main() -> None:
    figures = {label: min(peak_mib(code) for _ in range(3)) for label, code in IMPORTS.items()}
    bare = figures["bare interpreter"]
    print(f"{'imported':<44} {'peak RSS MiB':>12} {'above bare':>10}")
    for label, mib in figures.items():
        print(f"{label:<44} {mib:>12.0f} {mib - bare:>10.0f}")


if __name__ == "__main__":
    main()
