#!/usr/bin/env bash
# The demo (README): installs what it needs, then validates, plans and applies the
# tiny travel pipeline end to end on the CPU, then applies again (nothing runs).
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup-env
wf=examples/travel-tiny/workflow.yaml
olivepipe validate "$wf"
olivepipe plan "$wf"
olivepipe apply "$wf"
echo "--- second apply: everything is cached"
olivepipe apply "$wf"
echo "--- chat report"
cat examples/travel-tiny/outputs/travel-tiny/chat/report.md
