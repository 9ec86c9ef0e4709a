#!/usr/bin/env bash
# Builds the kube-apiserver, kube-controller-manager and etcd binaries that
# the operator's end-to-end tests run against
# (crates/kubefence-operator/tests/support/apiserver.rs), from their published
# Go modules, and caches them outside the source tree:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kubefence/test-apiserver/<k8s>-<etcd>/{kube-apiserver,kube-controller-manager,etcd}
#
# kube-controller-manager runs only its garbage collector in the tests, so
# that deleting an owner really deletes what it owns (ownerReferences).
#
# Idempotent: does nothing when every binary of the pinned versions is cached,
# and builds only the missing ones otherwise. Prints the directory on its last
# line. `--dir` only prints it (building nothing): the tests ask the script
# where the binaries are, so the pinned versions live here alone.
# KUBEFENCE_TEST_APISERVER_DIR overrides the place.
#
# Needs Go and a Go module proxy. No binary or source ends up in the repository:
# the build happens in a throwaway module in a temporary directory. The first
# build takes 10 to 30 minutes on two cores (see README, Tests); the result is
# reproducible (-trimpath, no VCS stamp: two builds give identical binaries).
#
# Overrides: KUBEFENCE_K8S_VERSION (v1.X.Y; staging modules follow as v0.X.Y),
# KUBEFENCE_ETCD_VERSION, KUBEFENCE_GO_JOBS (compile jobs, default 2).
set -euo pipefail

K8S_VERSION="${KUBEFENCE_K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${KUBEFENCE_ETCD_VERSION:-v3.6.16}"
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/apiserver,
# ...) at v0.0.0 and replaces them with ./staging in its own repository; those
# replaces do not apply to a dependent module, so ours points every one of them
# at the release published alongside: v1.X.Y -> v0.X.Y.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/kubefence/test-apiserver"
OUT="${KUBEFENCE_TEST_APISERVER_DIR:-${CACHE_ROOT}/${K8S_VERSION}-${ETCD_VERSION}}"

if [ "${1:-}" = "--dir" ]; then
    echo "${OUT}"
    exit 0
elif [ $# -gt 0 ]; then
    echo "usage: $0 [--dir]" >&2
    exit 2
fi

BINARIES=(etcd kube-apiserver kube-controller-manager)
missing=()
for binary in "${BINARIES[@]}"; do
    [ -x "${OUT}/${binary}" ] || missing+=("${binary}")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "kube-apiserver, kube-controller-manager ${K8S_VERSION} and etcd ${ETCD_VERSION} already built"
    echo "${OUT}"
    exit 0
fi

command -v go >/dev/null || {
    echo "error: Go is needed to build the test API server (https://go.dev/dl/)" >&2
    exit 1
}

# Static binaries, reproducible paths, and module resolution allowed to update
# the throwaway go.mod. Two compile jobs at a low priority: the machines this
# runs on are small and usually compile Rust at the same time.
export CGO_ENABLED=0
export GOFLAGS="-mod=mod -trimpath"
export GOWORK=off
JOBS="${KUBEFENCE_GO_JOBS:-2}"
NICE=(nice -n 10)

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
mkdir -p "${OUT}.partial"

# A throwaway module requiring k8s.io/kubernetes; every command of it is
# built from this one module (made once per run).
kubernetes_module() {
    local mod="${WORK}/kubernetes"
    if [ -f "${mod}/go.mod" ]; then
        cd "${mod}"
        return 0
    fi
    mkdir -p "${mod}"
    cd "${mod}"
    go mod init kubefence.test/kubernetes >/dev/null 2>&1
    # Every staging module k8s.io/kubernetes's go.mod requires at v0.0.0.
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
    [ -n "${gomod}" ] || {
        echo "error: could not download k8s.io/kubernetes@${K8S_VERSION}" >&2
        return 1
    }
    local staging
    staging="$(awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// { print $1 }' "${gomod}" | sort -u)"
    [ -n "${staging}" ] || {
        echo "error: no staging modules found in ${gomod}" >&2
        return 1
    }
    local module
    for module in ${staging}; do
        go mod edit -replace "${module}=${module}@${STAGING_VERSION}"
    done
    go mod edit -require "k8s.io/kubernetes@${K8S_VERSION}"
    # The main module decides the GODEBUG defaults: take kubernetes's own.
    go mod edit -go "$(awk '$1 == "go" { print $2; exit }' "${gomod}")"
    local setting
    for setting in $(awk '$1 == "godebug" && $2 != "(" { print $2 }' "${gomod}"); do
        go mod edit -godebug "${setting}"
    done
}

# Builds k8s.io/kubernetes/cmd/$1 into the partial directory.
build_kubernetes_command() {
    kubernetes_module
    # The version the server reports (/version, and the emulation version
    # checks that derive from it) instead of v0.0.0-master.
    local pkg=k8s.io/component-base/version
    local minor="${K8S_VERSION#v1.}"
    minor="${minor%%.*}"
    "${NICE[@]}" go build -p "${JOBS}" \
        -ldflags "-s -w -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean" \
        -o "${OUT}.partial/$1" "k8s.io/kubernetes/cmd/$1"
}

build_etcd() {
    local mod="${WORK}/etcd"
    mkdir -p "${mod}"
    cd "${mod}"
    go mod init kubefence.test/etcd >/dev/null 2>&1
    go mod edit -require "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
    # The etcd server's main package is the module root.
    "${NICE[@]}" go build -p "${JOBS}" -ldflags "-s -w" \
        -o "${OUT}.partial/etcd" go.etcd.io/etcd/server/v3
}

start=$(date +%s)
for binary in "${missing[@]}"; do
    if [ "${binary}" = etcd ]; then
        echo "building etcd ${ETCD_VERSION} (go.etcd.io/etcd/server/v3)"
        build_etcd
    else
        echo "building ${binary} ${K8S_VERSION} (k8s.io/kubernetes/cmd/${binary}, staging ${STAGING_VERSION})"
        build_kubernetes_command "${binary}"
    fi
done
# Binaries already cached stay; the new ones join them.
mkdir -p "${OUT}"
for binary in "${missing[@]}"; do
    mv "${OUT}.partial/${binary}" "${OUT}/${binary}"
done
rm -rf "${OUT}.partial"
echo "built in $(($(date +%s) - start)) s: $(cd "${OUT}" && du -h "${missing[@]}" | awk '{ printf "%s %s  ", $2, $1 }')"
echo "${OUT}"
