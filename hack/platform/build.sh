#!/usr/bin/env bash
# Builds the platform's binaries from the registries (Go module proxy, Maven Central) into
# ~/.cache/mico-platform/<versions>/bin. Idempotent: a component already built is skipped.
# Honours KUBEBUILDER_ASSETS (the envtest convention: a directory with etcd, kube-apiserver and
# kubectl): those are not built; controller-manager and scheduler still are (envtest lacks them).
# Standard output carries exactly one line, the cache directory: every tool's own output (Go,
# Maven's colour codes on a cold build) is sent to standard error.
set -euo pipefail
exec 3>&1 1>&2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache_root=${MICO_PLATFORM_CACHE:-$HOME/.cache/mico-platform}
key="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_kafka-${KAFKA_VERSION}"
cache="$cache_root/$key"
bin="$cache/bin"
mkdir -p "$bin" "$cache/work"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { printf '[build %s] %s\n' "$(date +%T)" "$*" >&2; }
provided() { [[ -n ${KUBEBUILDER_ASSETS:-} && -x $KUBEBUILDER_ASSETS/$1 ]]; }

build_etcd() {
  provided etcd && return
  [[ -x $bin/etcd ]] && return
  log "etcd $ETCD_VERSION"
  local w="$cache/work/etcd"; rm -rf "$w"; mkdir -p "$w"; cd "$w"
  go mod init local/etcdbin >/dev/null 2>&1
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$bin/etcd.tmp" "$bin/etcd"
}

build_kubernetes() {
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubectl) missing=()
  for b in "${want[@]}"; do provided "$b" || [[ -x $bin/$b ]] || missing+=("$b"); done
  ((${#missing[@]})) || return 0
  log "kubernetes $K8S_VERSION: ${missing[*]}"
  local sv="v0.${K8S_VERSION#v1.}" minor; minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  local w="$cache/work/k8s"; rm -rf "$w"; mkdir -p "$w"; cd "$w"
  go mod init local/k8sbins >/dev/null 2>&1
  local gomod; gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  local m
  for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod"); do
    go mod edit -replace="$m=$m@$sv"
  done
  local pkgs=()
  for b in "${missing[@]}"; do
    if [[ $b == kubectl ]]; then pkgs+=(k8s.io/kubernetes/cmd/kubectl); else pkgs+=("k8s.io/kubernetes/cmd/$b"); fi
  done
  local p; for p in "${pkgs[@]}"; do go get -tool "$p@$K8S_VERSION"; done
  local v="-X k8s.io/component-base/version" c="-X k8s.io/client-go/pkg/version"
  local ldf="-s -w $v.gitVersion=$K8S_VERSION $v.gitMajor=1 $v.gitMinor=$minor $v.gitTreeState=clean $v.buildDate=1970-01-01T00:00:00Z $c.gitVersion=$K8S_VERSION $c.gitMajor=1 $c.gitMinor=$minor $c.gitTreeState=clean"
  for p in "${pkgs[@]}"; do
    log "go build $p"
    go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldf" -o "$bin/.$(basename "$p").tmp" "$p"
    mv "$bin/.$(basename "$p").tmp" "$bin/$(basename "$p")"
  done
}

build_kwok() {
  [[ -x $bin/kwok && -d $cache/kwok-stages ]] && return
  log "kwok $KWOK_VERSION"
  GOBIN="$bin" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # kwok's default stages ship in its module (kustomize/stage); the binary needs them as --config
  local src; src=$(go list -m -f '{{.Dir}}' "sigs.k8s.io/kwok@$KWOK_VERSION" 2>/dev/null || true)
  [[ -n $src ]] || src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
  rm -rf "$cache/kwok-stages.tmp"; mkdir -p "$cache/kwok-stages.tmp"
  cp "$src"/kustomize/stage/node/fast/node-initialize.yaml "$src"/kustomize/stage/node/heartbeat/node-heartbeat.yaml \
     "$src"/kustomize/stage/pod/fast/pod-{ready,delete}.yaml "$cache/kwok-stages.tmp/"
  chmod u+w "$cache"/kwok-stages.tmp/*
  mv "$cache/kwok-stages.tmp" "$cache/kwok-stages"
}

fetch_kafka() {
  [[ -f $cache/kafka/.complete ]] && return
  log "kafka $KAFKA_VERSION jars"
  local w="$cache/work/kafka"; rm -rf "$w" "$cache/kafka"; mkdir -p "$w" "$cache/kafka/libs"; cd "$w"
  cat >pom.xml <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local</groupId><artifactId>kafka-libs</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$cache/kafka/libs"
  touch "$cache/kafka/.complete"
}

build_etcd
build_kwok
fetch_kafka
build_kubernetes
log "done in $SECONDS s"
echo "$cache" >&3
