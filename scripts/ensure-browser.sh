#!/usr/bin/env bash
# Makes sure Debian's chromium and its chromedriver are installed: the dashboard's browser
# tests (tests/dashboard/test_browser.py) drive a real headless Chromium through them.
# Installs them with apt-get when missing; exits non-zero rather than leave a test to fail
# for a missing browser. Nothing is downloaded from anywhere but Debian's archive.
set -euo pipefail

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "ERROR: ${missing[*]} missing and this is not a Debian-like system; install Chromium and its" \
         "chromedriver by hand (the dashboard's browser tests need them)." >&2
    exit 1
fi
echo "browser: installing ${missing[*]} with apt-get (the dashboard's browser tests drive it)" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
