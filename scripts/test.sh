#!/usr/bin/env bash
# The whole test suite: installs Solstice CI with its test extras into .venv,
# runs the checkers (scripts/check.sh: ruff and mypy, failing on a finding),
# makes sure RabbitMQ and PostgreSQL answer, the examples' tools, the VM tools
# (QEMU, mmdebstrap, ...) and Chromium (the dashboard's browser tests) are
# there and the job user of contained local jobs exists, then runs pytest,
# printing each test as it ends and the 15 slowest at the end.
# Extra arguments go to pytest (e.g. scripts/test.sh -k workflow; -q for dots).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
bash scripts/check.sh
bash scripts/ensure-services.sh
bash scripts/ensure-tools.sh
bash scripts/ensure-vm-tools.sh
bash scripts/ensure-job-user.sh
bash scripts/ensure-browser.sh
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest -v "$@"
