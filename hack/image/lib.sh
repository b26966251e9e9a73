# shellcheck shell=bash disable=SC2034  # variables for the scripts that source this file
# Sourced by hack/image/build.sh and hack/image/podman.sh: where the image's caches and container
# storage live, and the settings podman and buildah run with. Nothing here writes.
#   MICO_IMAGE_CACHE    caches and container storage (default ~/.cache/mico-image)
#   MICO_IMAGE_RUNROOT  podman's and buildah's run state: locks, mounts (default /run/mico-image)
image_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$image_dir/../.." && pwd)
image_cache=${MICO_IMAGE_CACHE:-$HOME/.cache/mico-image}
image_runroot=${MICO_IMAGE_RUNROOT:-/run/mico-image}
image_name=localhost/mico-reconciler
image_archive=$repo_root/build/mico-reconciler.oci.tar
export CONTAINERS_CONF=$image_dir/containers.conf
export CONTAINERS_STORAGE_CONF=$image_dir/storage.conf
# Global flags shared by podman and buildah (storage.conf cannot expand $HOME).
storage_flags=(--root "$image_cache/storage" --runroot "$image_runroot/storage")
podman_flags=("${storage_flags[@]}" --tmpdir "$image_runroot/libpod")

require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "$1: needs root (rootful podman/buildah; rootless needs /etc/subuid ranges, not set up here)" >&2
    exit 1
  fi
}

project_version() {
  "${MICO_IMAGE_PYTHON:-python3}" -c 'import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo_root/pyproject.toml"
}
