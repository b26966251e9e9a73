#!/usr/bin/env bash
# Measures the platform's cold build (empty Go module, Go build and platform caches, in a
# temporary directory) and its warm start (all parts stopped, then `platform.py up`).
# Downloads ~1 GB of Go modules and Maven jars; takes 10-20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
start=$(date +%s)
GOMODCACHE=$scratch/gomod GOCACHE=$scratch/gocache MICO_PLATFORM_CACHE=$scratch/platform \
  MAVEN_OPTS="-Dmaven.repo.local=$scratch/m2" bash hack/platform/build.sh >/dev/null 2>"$scratch/build.log" \
  || { tail -20 "$scratch/build.log"; exit 1; }
cold=$(( $(date +%s) - start ))
python3 hack/platform/platform.py down >/dev/null 2>&1
warm=$(python3 -c 'import subprocess, sys, time
t = time.monotonic()
subprocess.run([sys.executable, "hack/platform/platform.py", "up"], check=True, capture_output=True)
print(f"{time.monotonic() - t:.1f}")')
printf 'cold build (empty caches): %d min %02d s\nwarm start (built, all parts stopped): %s s\n' \
  $((cold / 60)) $((cold % 60)) "$warm"
