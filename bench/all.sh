#!/usr/bin/env bash
# npm run bench: the host benchmark (shm.v1 and the fd round-trip baselines); fan-out of one 1080p60
# surface to 1-256 clients (bench/fanout.ts); GL import/draw
# and readback (bench/gl.ts); remote streaming: H.264 encode vs the bare GStreamer pipeline,
# tiles vs H.264 bandwidth, and browser end-to-end latency; the QEMU display bridge against a
# bare draining listener on QEMU 7.2 and 10.0 (bench/qemu-bridge.ts); the Windows path under wine against
# Linux with the same programs (bench/windows.ts); then the handoff benchmark inside
# the test VM, where dma-bufs exist, for dmabuf.v1 beside shm.v1. Every program records JSON
# under bench/results/. SURFACELINK_BENCH_VM=0 skips the VM part; BENCH_QUICK=1 shortens the
# GL and streaming runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# The C baseline bench/run.ts compares against (build/fd_roundtrip): a raw fd round trip over a
# socketpair. Bench-only, so it is not part of the addon's CMake build; rebuilt when its source changes.
if [ ! -x build/fd_roundtrip ] || [ bench/native/fd_roundtrip.c -nt build/fd_roundtrip ]; then
  mkdir -p build
  "${CC:-cc}" -O2 -Wall -Wextra -o build/fd_roundtrip bench/native/fd_roundtrip.c
fi
node --import tsx bench/run.ts
for program in fanout gl stream-encode stream-bandwidth stream-latency qemu-bridge windows; do
  [ -f "bench/$program.ts" ] || continue
  echo
  echo "== bench/$program.ts"
  node --import tsx "bench/$program.ts"
done
if [ "${SURFACELINK_BENCH_VM:-1}" = 0 ]; then
  echo "dma-buf benchmark skipped (SURFACELINK_BENCH_VM=0)"
elif why=$(bash scripts/vm/available.sh); then
  echo
  echo "== inside the test VM (dmabuf.v1 beside shm.v1; emulated CPU: compare ratios, not times)"
  SURFACELINK_VM_ENV=BENCH_ITERATIONS BENCH_ITERATIONS="${BENCH_ITERATIONS_VM:-1000}" \
    bash scripts/vm/run.sh --timeout 900 -- node --import tsx bench/run.ts
else
  echo "dma-buf benchmark skipped: $why"
fi
