#!/usr/bin/env bash
# Makes sure the tools the examples' workflows call are installed, because the
# test suite runs every example with `cidev run` (tests/cidev/test_examples.py):
# git and python3 everywhere, and for examples/rust cargo with rustfmt and
# clippy. On a Debian machine without them it installs Debian's packages; it
# exits non-zero rather than leave a test to fail for a missing tool.
set -euo pipefail

missing=()
command -v git >/dev/null || missing+=(git)
command -v python3 >/dev/null || missing+=(python3)
command -v cargo >/dev/null || missing+=(cargo)
cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || missing+=(rust-clippy)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "ERROR: ${missing[*]} missing and this is not a Debian-like system; install it by hand." >&2
    exit 1
fi
echo "tools: installing ${missing[*]} with apt-get (the examples' workflows call them)" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
