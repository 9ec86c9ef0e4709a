#!/usr/bin/env bash
# Installs Debian's chromium for the HTML report's browser test
# (crates/kubefence/tests/report_browser.rs opens the report in headless
# Chromium). Idempotent: does nothing when chromium is present. Needs root
# (apt-get); prints why and exits 1 when it cannot.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-chromium: chromium is missing; run as root or install Debian's chromium package" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: chromium is missing and there is no apt-get here; install chromium by hand" >&2
    exit 1
fi
echo "install-chromium: installing chromium" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
