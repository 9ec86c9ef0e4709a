#!/usr/bin/env bash
# Installs IBM's network-config-analyzer (`nca`), the independent oracle used by
# kubefence's differential tests, into a virtualenv at <repo>/.venv/nca.
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail

NCA_VERSION="${NCA_VERSION:-2.1.0}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REPO_ROOT}/.venv/nca"
PYTHON="${PYTHON:-python3}"

if [ -x "${VENV}/bin/nca" ] && "${VENV}/bin/python" -m pip show network-config-analyzer 2>/dev/null \
    | grep -qx "Version: ${NCA_VERSION}"; then
    echo "network-config-analyzer ${NCA_VERSION} already installed at ${VENV}"
    exit 0
fi

if [ ! -x "${VENV}/bin/python" ]; then
    echo "creating virtualenv ${VENV}"
    "${PYTHON}" -m venv "${VENV}"
fi
"${VENV}/bin/python" -m pip install --quiet --upgrade pip
"${VENV}/bin/python" -m pip install --quiet "network-config-analyzer==${NCA_VERSION}"
echo "installed: $("${VENV}/bin/python" -m pip show network-config-analyzer | grep '^Version')"
echo "nca is at ${VENV}/bin/nca (override with KUBEFENCE_NCA=/path/to/nca)"
