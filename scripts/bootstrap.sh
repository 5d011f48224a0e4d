#!/usr/bin/env bash
# Creates .venv (if missing) and installs Solstice CI into it, editable, with the
# server extra (the orchestrator, the integration, the single node, ciadm, cidev:
# the base set alone is the runner's, pyproject.toml) and EXTRA if given.
# Usage: scripts/bootstrap.sh [EXTRA]   e.g. scripts/bootstrap.sh test
#
# Installs nothing when nothing changed: .venv/.solstice-installed records the
# pyproject.toml, the checkout and the extras of the last install. Installs
# hold .venv/.install.lock, so two scripts started at once (serve.sh while
# test.sh runs) never run pip over each other: the second waits, then finds
# the venv up to date and touches nothing, and the console scripts stay in
# place. Only a changed pyproject.toml reinstalls.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "ERROR: Solstice CI needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1))." >&2
    echo "       On Debian: apt-get install python3 python3-venv" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        echo "python3-venv missing; installing it with apt-get" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        rm -rf .venv
        "$PYTHON" -m venv .venv
    fi
fi

extra=${1:-}
stamp=.venv/.solstice-installed
key="$(sha256sum pyproject.toml | cut -d' ' -f1) $PWD"
exec 9>>.venv/.install.lock
flock 9

up_to_date() {
    [ -f "$stamp" ] && [ "$(head -n 1 "$stamp")" = "$key" ] || return 1
    [ -z "$extra" ] || grep -qxF "extra $extra" "$stamp" || return 1
    for script in solstice ciadm cidev solstice-runner; do
        [ -x ".venv/bin/$script" ] || return 1
    done
}
if up_to_date; then
    exit 0
fi

spec=".[server]"
[ -n "$extra" ] && spec=".[server,$extra]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
{
    echo "$key"
    # Extras installed earlier for the same pyproject.toml are still there.
    if [ -f "$stamp" ] && [ "$(head -n 1 "$stamp")" = "$key" ]; then tail -n +2 "$stamp"; fi
    [ -z "$extra" ] || echo "extra $extra"
} > "$stamp.new"
mv "$stamp.new" "$stamp"
