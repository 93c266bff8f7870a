#!/usr/bin/env bash
# Install rsyslog with RELP and TLS, and openssl (it makes the test CA), from Debian packages, for
# the syslog sink's real-server tests.
#
# Idempotent and fast when everything is there: `dpkg -s` is asked first, and apt is touched
# only for what is missing (`apt-get update` once, then `apt-get install -y
# --no-install-recommends`). Uses sudo only when not root. Prints what it did.
# The tests start their own rsyslogd (`rsyslogd -n -f <conf>`) on a loopback port; the system
# service this package may enable is not needed, and is not started here.
set -euo pipefail

packages=(rsyslog rsyslog-relp rsyslog-gnutls openssl)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg -s "$package" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "ensure-rsyslog: already installed: ${packages[*]}"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "ensure-rsyslog: missing ${missing[*]}, and not root and no sudo to install them" >&2
    exit 1
fi

echo "ensure-rsyslog: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Debian's package scripts must not start or restart the system's rsyslog service here (a
# container has no init to ask): policy-rc.d answers 101, "action forbidden", while we install.
policy=/usr/sbin/policy-rc.d
added_policy=false
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    added_policy=true
fi
cleanup() {
    if [ "$added_policy" = true ]; then
        "${as_root[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT

"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
version=$(rsyslogd -v 2>/dev/null | head -n 1 || true)
echo "ensure-rsyslog: installed ${missing[*]} (${version:-rsyslogd})"
