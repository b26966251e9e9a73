#!/usr/bin/env bash
# podman with this project's settings: runc, cgroupfs, events in a file, explicit ulimits
# (containers.conf), and storage in ~/.cache/mico-image (storage.conf + lib.sh). Tests and users
# share it:
#   hack/image/podman.sh load -i build/mico-reconciler.oci.tar
#   hack/image/podman.sh run --rm localhost/mico-reconciler:0.1.0 validate --help
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root "hack/image/podman.sh"
command -v podman >/dev/null || { echo "podman is missing: run bash hack/image/prerequisites.sh" >&2; exit 1; }
exec podman "${podman_flags[@]}" "$@"
