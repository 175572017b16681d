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
# two workers (pytest-xdist), each running whole test files (--dist loadfile: a file's module
# fixtures, such as an applied pipeline, are built once), handed out in conftest.py's order (the
# files that run real Olive first) rather than xdist's most-tests-first; OLIVEPIPE_TEST_WORKERS=0
# runs in one process, and `-n N` among the arguments wins
python -m pytest -q -p no:cacheprovider -n "${OLIVEPIPE_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
