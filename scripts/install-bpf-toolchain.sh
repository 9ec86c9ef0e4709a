#!/usr/bin/env bash
# Installs what the node agent's eBPF program needs at build time: Debian's
# clang (compiles crates/kubefence-agent/bpf/*.c to a BPF object) and
# libbpf-dev (the bpf_helpers.h header); and nftables (`nft`), with which the
# conntrack fallback's real-traffic test turns connection tracking on in its
# own network namespace. Idempotent: does nothing when all are present. Needs root (apt-get); prints why and exits 1 when it cannot.
set -euo pipefail

missing=()
command -v clang >/dev/null 2>&1 || missing+=(clang)
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-bpf-toolchain: missing ${missing[*]}; run as root or install them with your package manager" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-bpf-toolchain: missing ${missing[*]} and no apt-get here; install clang and the libbpf headers by hand" >&2
    exit 1
fi
echo "install-bpf-toolchain: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
