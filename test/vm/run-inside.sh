#!/usr/bin/env bash
# Runs inside the throw-away VM (scripts/vm/run.sh): the native dma-buf smoke checks, then
# the dma-buf mocha suite. Its last line is mocha's "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."
status=0
echo "== native dma-buf / sync_file smoke checks"
node --expose-gc test/vm/native-dmabuf.smoke.js || status=1
echo "== dmabuf.v1 suite, and the conformance suite for dmabuf.v1"
SURFACELINK_CONFORMANCE_MECHANISMS=dmabuf.v1 node node_modules/mocha/bin/mocha.js --config test/vm/.mocharc.json || status=1
exit $status
