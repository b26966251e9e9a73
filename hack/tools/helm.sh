#!/usr/bin/env bash
# Installs the chart tools (`make chart-tools`): helm and the helm-unittest plugin, both built
# from the Go module proxy (no release downloads or plugin URLs are reachable here), cached
# outside the repository in ~/.cache/mico-tools/<tool>-<version>/. Idempotent: with the cache in
# place it only checks the versions and refreshes the links. In the repository it links
#   .tools/bin/helm      -> the cached helm binary
#   .tools/helm-plugins  -> a HELM_PLUGINS directory holding the unittest plugin
# so the chart tests (tests/chart, tests/integration/test_chart.py) and you can run
#   HELM_PLUGINS=.tools/helm-plugins .tools/bin/helm unittest charts/mico-reconciler
set -euo pipefail

HELM_VERSION=v3.22.0
UNITTEST_VERSION=v1.1.2
# helm-unittest's go.mod replaces this module; `go install pkg@version` ignores replace
# directives, so the plugin is built in a wrapper module that repeats it.
UNITTEST_REPLACE="github.com/vmware-labs/yaml-jsonpath v0.3.2 => github.com/helm-unittest/yaml-jsonpath v0.4.0"

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${MICO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mico-tools}
HELM_DIR=$CACHE/helm-$HELM_VERSION
HELM=$HELM_DIR/bin/helm
UNITTEST_DIR=$CACHE/helm-unittest-$UNITTEST_VERSION
PLUGINS=$UNITTEST_DIR/plugins # a HELM_PLUGINS directory
PLUGIN=$PLUGINS/unittest

log() { printf 'helm.sh: %s\n' "$*" >&2; }
command -v go >/dev/null || { log "go is needed (Go >= 1.26, as for the platform)"; exit 2; }
start=$SECONDS

# Helm's release ldflags: the version, and the Kubernetes version `helm template` and
# `helm lint` assume without a cluster (client-go's minor + 1, as helm's Makefile computes it).
if [[ ! -x $HELM ]] || [[ $("$HELM" version --template '{{.Version}}' 2>/dev/null) != "$HELM_VERSION" ]]; then
  log "building helm $HELM_VERSION from the Go module proxy (a few minutes on 2 cores) ..."
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # Find client-go's version in helm's go.mod (module download only, no build).
  gomod=$(cd "$tmp" && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  k8s_minor=$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2] }' "$gomod")
  [[ $k8s_minor =~ ^[0-9]+$ ]] || { log "cannot read k8s.io/client-go's version from $gomod"; exit 2; }
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  mkdir -p "$HELM_DIR/bin"
  (cd "$tmp" && CGO_ENABLED=0 GOBIN="$HELM_DIR/bin" GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
  rm -rf "$tmp"
  trap - EXIT
fi

goos=$(go env GOOS)
goarch=$(go env GOARCH)
case $goos in darwin) binary=untt-macos-$goarch ;; *) binary=untt-$goos-$goarch ;; esac
if [[ ! -x $PLUGIN/$binary || ! -f $PLUGIN/plugin.yaml ]] \
  || ! grep -q "^version: \"${UNITTEST_VERSION#v}\"" "$PLUGIN/plugin.yaml"; then
  log "building helm-unittest $UNITTEST_VERSION from the Go module proxy ..."
  src=$UNITTEST_DIR/src # the wrapper module, kept for reference (a few hundred bytes)
  rm -rf "$src" "$PLUGIN" "$PLUGIN.tmp"
  mkdir -p "$src" "$PLUGIN.tmp"
  cat >"$src/go.mod" <<EOF
module mico-reconciler.local/tools/helm-unittest

go 1.26.0

require github.com/helm-unittest/helm-unittest $UNITTEST_VERSION

replace $UNITTEST_REPLACE
EOF
  (
    cd "$src"
    export GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0
    go get "github.com/helm-unittest/helm-unittest/cmd/helm-unittest@$UNITTEST_VERSION"
    go build -trimpath -o "$PLUGIN.tmp/$binary" \
      -ldflags "-s -w -X github.com/helm-unittest/helm-unittest/internal/build.version=${UNITTEST_VERSION#v}" \
      github.com/helm-unittest/helm-unittest/cmd/helm-unittest
    moddir=$(go list -m -f '{{.Dir}}' "github.com/helm-unittest/helm-unittest")
    cp "$moddir/plugin.yaml" "$PLUGIN.tmp/plugin.yaml"
    chmod u+w "$PLUGIN.tmp/plugin.yaml"
  )
  mv "$PLUGIN.tmp" "$PLUGIN"
fi

# The plugin must answer through helm itself.
HELM_PLUGINS=$PLUGINS "$HELM" unittest --help >/dev/null \
  || { log "helm unittest does not run from $PLUGINS"; exit 1; }

mkdir -p "$REPO/.tools/bin"
ln -sfn "$HELM" "$REPO/.tools/bin/helm"
ln -sfn "$PLUGINS" "$REPO/.tools/helm-plugins"

cat <<EOF
helm $("$HELM" version --template '{{.Version}}') ($HELM), helm-unittest $(sed -n 's/^version: "\(.*\)"/v\1/p' "$PLUGIN/plugin.yaml") ($PLUGIN), ready in $((SECONDS - start)) s
  $REPO/.tools/bin/helm -> $HELM
  $REPO/.tools/helm-plugins -> $PLUGINS
  use: HELM_PLUGINS=.tools/helm-plugins .tools/bin/helm unittest charts/mico-reconciler
EOF
