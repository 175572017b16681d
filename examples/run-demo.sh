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
echo "--- where the int4 model and its adapter are"
olivepipe show "$wf" adapters
echo "--- what int4 and the adapter cost: latency, perplexity and size through Olive's evaluators"
olivepipe metrics "$wf"
echo "--- the model the chat ran on: the select node's choice, and why (int4 also passed its quality gate)"
olivepipe show "$wf" best | grep -E '^(name|result):'
echo "--- chat report (the tiny model has random weights: its answer is noise; the pipeline is the point)"
cat examples/travel-tiny/outputs/travel-tiny/chat/report.md
