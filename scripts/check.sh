#!/usr/bin/env bash
# The checkers, run by scripts/test.sh before pytest (so CI enforces them):
# ruff (lint, imports sorted; configured in pyproject.toml, the generated gRPC
# stubs excluded) and mypy (pyproject.toml: strict where a package takes it).
# Fails on any finding. Checks only; it rewrites nothing (ruff check --fix
# does, by hand). mypy keeps its cache in .mypy_cache: a warm run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
.venv/bin/ruff check --no-fix .
.venv/bin/mypy
