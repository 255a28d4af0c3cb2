#!/usr/bin/env bash
# install-chromium.sh: make sure Debian's chromium and chromium-driver are installed, for the test
# that opens the HTML report in a real headless browser (tests/test_report_browser.py).
#
# Exit status 3: this machine cannot have them (not root, no apt-get, or the install failed); the
# test skips on it (fails when CI=true). Idempotent: installs only what is missing.
set -euo pipefail

log() { printf '[install-chromium] %s\n' "$*"; }
unsupported() { log "UNSUPPORTED: $*"; exit 3; }

pkgs=(chromium chromium-driver)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || unsupported "${missing[*]} missing and not root, so cannot apt-get install them"
    command -v apt-get >/dev/null || unsupported "${missing[*]} missing and no apt-get to install them"
    log "installing: ${missing[*]}"
    apt_log=${TMPDIR:-/tmp}/install-chromium.apt.log
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
        unsupported "could not apt-get install ${missing[*]} (see $apt_log)"
    fi
    log "packages installed"
fi
for b in chromium chromedriver; do command -v $b >/dev/null || unsupported "$b not found after installing"; done
log "ready: $(chromedriver --version)"
