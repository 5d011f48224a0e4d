#!/usr/bin/env bash
# Installs Solstice CI into .venv and runs the single node (`solstice serve`) on
# embedded defaults: SQLite state in $SOLSTICE_DATA_DIR (default
# ~/.local/state/solstice), webhooks and job pages on $SOLSTICE_LISTEN
# (127.0.0.1:8080), runners and ciadm on $SOLSTICE_GRPC (127.0.0.1:50051), the
# local driver for every runs_on label. Extra arguments go to `solstice serve`
# (e.g. --config solstice.yaml). Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/solstice serve "$@"
