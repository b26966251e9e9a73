#!/usr/bin/env bash
# System tools the platform needs. Debian packages are installed when missing (as root);
# Go (>= 1.24, for `go get -tool`), Java 17+ and Maven must come with the machine.
set -euo pipefail
missing=()
for tool in prometheus openssl git; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing: ${missing[*]} (install the Debian packages of the same names)" >&2
    exit 1
  fi
  echo "installing ${missing[*]} from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in go java mvn; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (needed to build the platform)" >&2; exit 1; }
done
