#!/usr/bin/env bash
# `make image`: the OCI image of mico-reconciler as build/mico-reconciler.oci.tar (image reference
# localhost/mico-reconciler:<version>), with no container registry:
#   1. tools from Debian's packages when missing (prerequisites.sh);
#   2. a base root filesystem made by mmdebstrap from Debian packages (minbase + Python, git,
#      ssh, CA certificates; no docs, man pages or locales), cached as a tarball in
#      ~/.cache/mico-image/base/ under a hash of everything that goes into it, and imported once
#      into the container storage (~/.cache/mico-image/storage);
#   3. wheels of the project's dependencies built on the host (cached in
#      ~/.cache/mico-image/wheels/ under a hash of the dependency list and the Python version),
#      and of the project itself from a clean copy of its sources (every time);
#   4. buildah builds dependencies.Containerfile on the base (user 65532, a venv with the
#      dependencies installed from their wheels only; cached as an image under a hash of the base
#      and the wheels), then Containerfile on that (the project's wheel, entrypoint, labels:
#      a small layer), and writes the archive.
# Tools' output goes to build/image/build.log; on a failure its last lines are printed.
# Settings: MICO_IMAGE_CACHE, MICO_IMAGE_RUNROOT (lib.sh), MICO_IMAGE_SUITE (bookworm),
# MICO_IMAGE_MIRROR (an apt sources file; default: the machine's, else mmdebstrap's default),
# MICO_IMAGE_PYTHON (python3; must be the base's Python minor version), MICO_IMAGE_SOURCE (the
# org.opencontainers.image.source label). The base is never refreshed by itself: to take newer
# Debian packages (security fixes), `rm -rf ~/.cache/mico-image/base` and build again.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_root "make image"
started=$(date +%s.%N)

mkdir -p "$repo_root/build/image" "$image_cache"
log=$repo_root/build/image/build.log
: >"$log"
say() { printf '[image %s] %s\n' "$(date +%T)" "$*"; }
fail() {
  echo "make image: $*" >&2
  exit 1
}
# Runs a step with its output in the log; on failure says which step and shows the log's tail.
quietly() {
  local what=$1
  shift
  printf '\n### %s: %s\n' "$what" "$*" >>"$log"
  if ! "$@" >>"$log" 2>&1; then
    echo "make image: $what failed; the last lines of $log:" >&2
    tail -n 25 "$log" | sed 's/^/  /' >&2
    exit 1
  fi
}
hash_of() { sha256sum | cut -c1-16; }
human() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

bash "$image_dir/prerequisites.sh"

# One build at a time per cache (they share the container storage and the cache entries).
exec 9>"$image_cache/lock"
if ! flock -n 9; then
  say "waiting for another image build using $image_cache"
  flock 9
fi

# --- 2. The base root filesystem ------------------------------------------------------------
suite=${MICO_IMAGE_SUITE:-bookworm}
# procps: GitPython finds the children of a timed-out git (git-remote-https, ssh) with ps
packages=(python3 python3-venv ca-certificates git openssh-client procps)
mirrors=()
if [[ -n ${MICO_IMAGE_MIRROR:-} ]]; then
  mirrors=("$MICO_IMAGE_MIRROR")
else
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && grep -qE "^Suites:.*[[:space:]]$suite([[:space:]]|$)" "$f" && mirrors+=("$f")
  done
fi
# shellcheck disable=SC2016  # the hook's $1 is mmdebstrap's: the root filesystem's directory
mmdebstrap_args=(
  --variant=minbase --mode=root --format=tar --skip=output/dev --quiet
  --include="$(IFS=,; echo "${packages[*]}")"
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  --customize-hook='rm -rf "$1"/var/log/* "$1"/var/cache/ldconfig/aux-cache "$1"/var/cache/debconf/*-old'
)
base_key=$({
  printf '%s\n' "$suite" "$(dpkg --print-architecture)" "${mmdebstrap_args[@]}"
  for m in "${mirrors[@]}"; do [[ -f $m ]] && cat "$m" || echo "$m"; done
} | hash_of)
base_tar=$image_cache/base/$suite-$base_key.tar
base_image=localhost/mico-reconciler-base:$suite-$base_key
if [[ -f $base_tar ]]; then
  say "base: $suite root filesystem cached ($base_tar)"
else
  say "base: mmdebstrap $suite (minbase + ${packages[*]}), cached afterwards"
  mkdir -p "$image_cache/base"
  rm -f "$base_tar.tmp"
  quietly "mmdebstrap" mmdebstrap "${mmdebstrap_args[@]}" "$suite" "$base_tar.tmp" "${mirrors[@]}"
  mv "$base_tar.tmp" "$base_tar"
fi
image_python=$(tar -tf "$base_tar" | sed -n 's#^\./usr/bin/python\(3\.[0-9][0-9]*\)$#\1#p' | head -n1)
[[ -n $image_python ]] || fail "no /usr/bin/python3.X in $base_tar (remove it to rebuild the base)"

podman() { command podman "${podman_flags[@]}" "$@"; }
if podman image exists "$base_image"; then
  say "base: $base_image in the container storage"
else
  say "base: importing $base_image into the container storage"
  quietly "importing the base" podman import --quiet "$base_tar" "$base_image"
fi

# --- 3. Wheels -------------------------------------------------------------------------------
python=${MICO_IMAGE_PYTHON:-python3}
host_python=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') ||
  fail "$python does not run (set MICO_IMAGE_PYTHON to a Python $image_python)"
[[ $host_python == "$image_python" ]] ||
  fail "$python is Python $host_python, the image's is $image_python: wheels with compiled code must match; set MICO_IMAGE_PYTHON to a Python $image_python"
"$python" -m pip --version >/dev/null 2>&1 || fail "$python has no pip (needed to build the wheels)"
version=$(project_version)
work=$repo_root/build/image
rm -rf "$work/context" "$work/src"
mkdir -p "$work/context/wheels" "$work/src"
"$python" -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
  "$repo_root/pyproject.toml" >"$work/requirements.txt"
platform_tag=$("$python" -c 'import sysconfig; print(sysconfig.get_platform())')
deps_key=$({ cat "$work/requirements.txt"; echo "$host_python $platform_tag"; } | hash_of)
deps_dir=$image_cache/wheels/py$host_python-$deps_key
if [[ -f $deps_dir/requirements.txt ]]; then  # written last: the entry is complete
  say "wheels: dependencies cached ($deps_dir)"
else
  say "wheels: building the dependencies' wheels (Python $host_python, from PyPI)"
  rm -rf "$deps_dir.tmp" "$deps_dir"
  quietly "pip wheel (dependencies)" "$python" -m pip wheel --disable-pip-version-check \
    --wheel-dir "$deps_dir.tmp" --requirement "$work/requirements.txt"
  cp "$work/requirements.txt" "$deps_dir.tmp/requirements.txt"
  mv "$deps_dir.tmp" "$deps_dir"
fi
# A clean copy of what the project's wheel is made of: setuptools' build/ in the work tree could
# hold modules deleted since, which would end up in the wheel.
tar -C "$repo_root" --exclude=__pycache__ -cf - pyproject.toml README.md reconciler faas_connector | tar -C "$work/src" -xf -
say "wheels: mico-reconciler $version"
quietly "pip wheel (mico-reconciler)" "$python" -m pip wheel --disable-pip-version-check --no-deps \
  --wheel-dir "$work/context/wheels" "$work/src"
rm -rf "$work/src"

# --- 4. The image ----------------------------------------------------------------------------
buildah() { command buildah "${storage_flags[@]}" "$@"; }
build=(build --isolation chroot --network host --pull=never --quiet)
deps_image=localhost/mico-reconciler-deps:$({
  echo "$base_image $deps_key"
  cat "$image_dir/dependencies.Containerfile"
} | hash_of)
if podman image exists "$deps_image"; then
  say "dependencies: $deps_image in the container storage"
else
  say "dependencies: building $deps_image (the virtual environment's packages)"
  quietly "buildah build (dependencies)" buildah "${build[@]}" --build-arg "BASE_IMAGE=$base_image" \
    --tag "$deps_image" --file "$image_dir/dependencies.Containerfile" "$deps_dir"
fi

revision=$(git -C "$repo_root" rev-parse HEAD)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
source_url=${MICO_IMAGE_SOURCE:-$(git -C "$repo_root" config --get remote.origin.url || true)}
source_url=$(sed -E 's#^([a-z+]+://)[^/@]*@#\1#' <<<"${source_url:-https://github.com/UST-MICO}")
reference=$image_name:$version
say "image: building $reference (revision ${revision:0:12})"
quietly "buildah build" buildah "${build[@]}" --build-arg "DEPENDENCIES_IMAGE=$deps_image" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "CREATED=$created" \
  --build-arg "SOURCE=$source_url" --tag "$reference" --file "$image_dir/Containerfile" "$work/context"
# The previous build of this tag is now untagged: drop it (base and dependencies keep their tags).
quietly "removing untagged images" podman image prune --force

say "image: writing build/mico-reconciler.oci.tar"
rm -f "$image_archive.tmp"
quietly "buildah push" buildah push --quiet --format oci "$reference" "oci-archive:$image_archive.tmp:$reference"
mv "$image_archive.tmp" "$image_archive"

# Cache entries of other inputs (another package list, dependency list or Python) are stale.
for stale in "$image_cache"/base/*.tar "$image_cache"/wheels/*/; do
  if [[ -e $stale && ${stale%/} != "$base_tar" && ${stale%/} != "$deps_dir" ]]; then rm -rf "$stale"; fi
done
for current in "$deps_image" "$base_image"; do
  for stale in $(podman images --noheading --format '{{.Repository}}:{{.Tag}}' "${current%%:*}"); do
    if [[ $stale != "$current" ]]; then quietly "removing the stale image $stale" podman rmi "$stale"; fi
  done
done

compressed=$(stat -c %s "$image_archive")
uncompressed=$(podman image inspect --format '{{.Size}}' "$reference")
if [[ -n $(git -C "$repo_root" status --porcelain --untracked-files=no -- pyproject.toml README.md reconciler) ]]; then
  say "note: built from uncommitted changes; the revision label names HEAD"
fi
echo "build/mico-reconciler.oci.tar: $reference, revision $revision"
echo "image size: $(human "$compressed") compressed (the archive, $compressed bytes), $(human "$uncompressed") uncompressed ($uncompressed bytes)"
echo "done in $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", e - s }') s"
