#!/usr/bin/env bash
# Installs Solstice CI into .venv and runs the main job on embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/cidev validate examples/*/.solstice/workflow.kdl "$@"
