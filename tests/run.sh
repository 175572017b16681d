#!/usr/bin/env bash
# The test command (README): installs what it needs, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup-env
# Azurite (Azure Storage emulator) for tests/test_blob_store.py, into .azurite/ (git-ignored);
# the tests start and stop it themselves
if command -v npm >/dev/null 2>&1 && [ ! -e .azurite/node_modules/.bin/azurite-blob ]; then
  echo "olivepipe: installing Azurite 3.37.0 into .azurite/ (tests)" >&2
  mkdir -p .azurite && printf '*\n' > .azurite/.gitignore
  npm install --prefix .azurite --no-audit --no-fund --loglevel=error azurite@3.37.0 >&2
fi
python -m pytest -q -p no:cacheprovider "$@"
