#!/usr/bin/env bash
# Installs hubble-audit2policy (PyPI), the third-party script that turns
# Hubble flow logs into CiliumNetworkPolicies, into a virtualenv at
# <repo>/.venv/hubble-audit2policy. kubefence's learn benchmark runs the same
# flows through it for comparison (see benches/ of the kubefence crate and
# README "Performance"). Idempotent: does nothing when the pinned version is
# already installed.
set -euo pipefail

AUDIT2POLICY_VERSION="${AUDIT2POLICY_VERSION:-0.18.5}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REPO_ROOT}/.venv/hubble-audit2policy"
PYTHON="${PYTHON:-python3}"

if [ -x "${VENV}/bin/hubble-audit2policy" ] && "${VENV}/bin/python" -m pip show hubble-audit2policy 2>/dev/null \
    | grep -qx "Version: ${AUDIT2POLICY_VERSION}"; then
    echo "hubble-audit2policy ${AUDIT2POLICY_VERSION} already installed at ${VENV}"
    exit 0
fi

if [ ! -x "${VENV}/bin/python" ]; then
    echo "creating virtualenv ${VENV}"
    "${PYTHON}" -m venv "${VENV}"
fi
"${VENV}/bin/python" -m pip install --quiet --upgrade pip
"${VENV}/bin/python" -m pip install --quiet "hubble-audit2policy==${AUDIT2POLICY_VERSION}"
echo "installed: $("${VENV}/bin/python" -m pip show hubble-audit2policy | grep '^Version')"
echo "hubble-audit2policy is at ${VENV}/bin/hubble-audit2policy"
