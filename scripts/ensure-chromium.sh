#!/usr/bin/env bash
# Install Debian's chromium package, for the dashboard's browser test
# (tests/dashboard/test_browser.py drives it with Playwright for Python; Playwright's own browser
# download is never used).
#
# Idempotent and fast when it is there: `command -v chromium` is asked first, and apt is touched
# only when it is missing (`apt-get update` once, then `apt-get install -y
# --no-install-recommends chromium`). Uses sudo only when not root. Prints what it did.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "ensure-chromium: already installed: $(chromium --version 2>/dev/null || echo chromium)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "ensure-chromium: chromium is missing, and not root and no sudo to install it" >&2
    exit 1
fi

echo "ensure-chromium: installing chromium"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "ensure-chromium: installed $(chromium --version 2>/dev/null || echo chromium)"
