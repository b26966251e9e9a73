#!/usr/bin/env bash
# System tools the image build and its smoke test need, from Debian's packages, installed when
# missing (as root, like hack/platform/prerequisites.sh). No container registry is needed: the
# base is made by mmdebstrap from Debian packages, the image by buildah, and it runs with podman
# on runc (see containers.conf).
set -euo pipefail
declare -A package=(
  [buildah]=buildah [podman]=podman [runc]=runc [conmon]=conmon [umoci]=umoci [skopeo]=skopeo
  [mmdebstrap]=mmdebstrap [newuidmap]=uidmap [git]=git [python3]=python3
)
missing=()
for tool in "${!package[@]}"; do command -v "$tool" >/dev/null || missing+=("${package[$tool]}"); done
((${#missing[@]})) || exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [[ $(id -u) -ne 0 ]]; then
  echo "missing: ${missing[*]} (install the Debian packages of the same names as root)" >&2
  exit 1
fi
echo "installing ${missing[*]} from Debian's packages" >&2
output=$(mktemp)
trap 'rm -f "$output"' EXIT
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${missing[@]}"; } >"$output" 2>&1; then
  cat "$output" >&2
  echo "installing ${missing[*]} failed" >&2
  exit 1
fi
