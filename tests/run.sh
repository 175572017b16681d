#!/usr/bin/env bash
# The test command (README): installs what it needs, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup-env
python -m pytest -q -p no:cacheprovider "$@"
