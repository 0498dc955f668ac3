#!/usr/bin/env bash
# Install Debian's Chromium for the web UI tests (tests/integration/test_web_ui.py) if it is missing.
# Idempotent; needs root (CI and the dev machines run as root). No browser download of its own:
# the tests drive /usr/bin/chromium over the DevTools protocol.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
