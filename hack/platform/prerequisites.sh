#!/usr/bin/env bash
# System tools the platform needs. Debian packages are installed when missing (as root);
# Go (>= 1.24, for `go get -tool`), Java 17+ and Maven must come with the machine.
set -euo pipefail
# command -> Debian package; lighttpd and sshd serve the config repos over https and ssh
declare -A package=(
  [prometheus]=prometheus [openssl]=openssl [git]=git [ssh-keygen]=openssh-client
  [lighttpd]=lighttpd [/usr/lib/lighttpd/mod_openssl.so]=lighttpd-mod-openssl [/usr/sbin/sshd]=openssh-server
  [strace]=strace  # tests/integration/test_private_repos.py: every program's arguments, for credentials
)
missing=()
for tool in "${!package[@]}"; do
  if [[ $tool == /* ]]; then [[ -e $tool ]]; else command -v "$tool" >/dev/null; fi || missing+=("${package[$tool]}")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]} from Debian's packages" >&2
  # the platform starts its own servers on free loopback ports: the packages' services must not
  # start on 22 and 80 (policy-rc.d is Debian's switch for that)
  policy=/usr/sbin/policy-rc.d
  [[ -e $policy ]] || { printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && trap 'rm -f "$policy"' EXIT; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in go java mvn; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (needed to build the platform)" >&2; exit 1; }
done
