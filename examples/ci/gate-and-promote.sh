#!/usr/bin/env bash
# Train a candidate model, estimate its A/B test against production from the
# logs, and promote it to the live test (the `candidate` alias) only when the
# gate says ship. Every other outcome has one documented action (docs/ci.md):
#
#   exit of recsim abtest   action              this script exits
#   0 ship                  promote             0 (or promote's code if it refuses)
#   1 do not ship           reject              1
#   3 inconclusive          collect-more-data   0, nothing promoted
#   4 invalid               investigate         1
#   2, 70, other            fail                that code
#
# Usage: gate-and-promote.sh NAME [extra `recsim train` options...]
# Settings (environment): RECSIM (the command, default `recsim`), RECSIM_DATA
# (dataset, default recsim-data), RECSIM_REGISTRY (default recsim-models),
# GATE (default gate.toml), OUT (report folder, default gate-out).
# In GitHub Actions the Markdown summary is appended to $GITHUB_STEP_SUMMARY.
set -uo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 NAME [recsim train options...]" >&2
    exit 2
fi
name="$1"
shift
recsim="${RECSIM:-recsim}"
data="${RECSIM_DATA:-recsim-data}"
registry="${RECSIM_REGISTRY:-recsim-models}"
gate="${GATE:-gate.toml}"
out="${OUT:-gate-out}"
mkdir -p "$out"
rm -f "$out/report.json" "$out/summary.md" "$out/action"

act() {  # record the action taken, print it, exit with the given status
    echo "$1" > "$out/action"
    echo "gate-and-promote: $2"
    exit "$3"
}

$recsim train "$name" --data "$data" --registry "$registry" --force "$@" \
    || act fail "training $name failed; see the error above." 2

$recsim abtest --control production --treatment "$name" \
    --data "$data" --registry "$registry" --gate "$gate" \
    --report "$out/report.json" --markdown "$out/summary.md"
code=$?

if [ -n "${GITHUB_STEP_SUMMARY:-}" ] && [ -f "$out/summary.md" ]; then
    cat "$out/summary.md" >> "$GITHUB_STEP_SUMMARY"
fi

case "$code" in
    0)
        $recsim promote "$name" --to candidate --gate-report "$out/report.json" \
            --registry "$registry" --reason "gate passed in CI" \
            || act fail "the gate said ship but promotion was refused; see the reason above." $?
        act promote "$name is now the candidate (the live test); see $out/summary.md." 0
        ;;
    1)
        act reject "$name does not ship: the gate rejected it; production stays." 1
        ;;
    3)
        act collect-more-data "inconclusive: nothing promoted; run again when more logs are in." 0
        ;;
    4)
        act investigate "the experiment is invalid (a health check failed); read $out/summary.md." 1
        ;;
    *)
        act fail "recsim abtest failed with exit $code; see the error above." "$code"
        ;;
esac
