#!/usr/bin/env bash
# The test command (README, CI): set up, lint, then the whole suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check hf_transfer recipes tests benchmarks
.venv/bin/python -m pytest -q "$@"
