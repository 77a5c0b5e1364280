#!/usr/bin/env bash
# npm run flake-hunt -- [options]: run the whole suite again and again, each worker in its own
# fresh clone of one commit, and report which tests ever failed, how often, and under what load.
# A flake rejects a good change and teaches everyone to ignore red; this is how they are found
# (docs/testing.md says how to read the result and what was found so far).
#
#   --runs N        runs in all, shared by the workers (default 10)
#   --parallel P    workers at once (default 1). Two on a 2-CPU machine load it past its CPUs,
#                   which is what shakes out the timing assumptions; more than that mostly slows
#                   the VM suite (TCG) past its own limit.
#   --ref REF       the commit to test (default HEAD; uncommitted changes are not tested)
#   --out DIR       where clones, logs and the summary go (default a new directory under $TMPDIR)
#   --setup WHAT    what each clone does once before its runs: "ci" (default) does what .ci/run
#                   does before its tests: SURFACELINK_WERROR=1 npm ci, npm run prebuild (all five
#                   addons: the package and Windows suites need them) and the QEMU 10.0 unpack;
#                   "none" does nothing (for --command that needs no install)
#   --command CMD   what one run is (default: CI=true npm test); run with bash -c in the clone
#
# Each run writes DIR/wK/run-N.log and, through test/summary-reporter.cjs, DIR/wK/run-N.json (each
# test's outcome); DIR/summary.tsv gets a line per run (worker, run, commit, exit, passed, failed,
# skipped, median 1-minute load, minutes, the failed tests' titles). Progress goes to stderr, a
# line per run. At the end: runs green and red, the longest green streak in finishing order, and
# each test that failed with its count. Exit 0 only when every run passed.
# `touch DIR/STOP` ends the hunt after the runs in progress; Ctrl-C ends it at once, with the report of the runs
# that finished (exit 130).
set -euo pipefail
# All of it in one block, which bash reads whole before running any of it: a hunt runs for hours, and the
# tree it came from (this file too) is edited meanwhile; a script read line by line as it runs would then
# go on with the edited file's text at its old offsets.
{
RUNS=10 PARALLEL=1 REF=HEAD OUT="" SETUP=ci COMMAND="CI=true npm test"
die() {
  echo "flake-hunt: $*" >&2
  exit 2
}
SRC=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel 2>/dev/null) ||
  die "$(dirname "$0")/.. is not a git repository: the hunt tests commits, each in a fresh clone"
posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || [[ $1 == -h || $1 == --help ]] || die "$1 needs a value"
  case $1 in
    --runs) posint "$1" "$2"; RUNS=$2; shift 2 ;;
    --parallel) posint "$1" "$2"; PARALLEL=$2; shift 2 ;;
    --ref) REF=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --setup) [[ $2 == ci || $2 == none ]] || die "--setup is ci or none, got '$2'"; SETUP=$2; shift 2 ;;
    --command) COMMAND=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (--help lists them)" ;;
  esac
done
COMMIT=$(git -C "$SRC" rev-parse --verify --quiet "$REF^{commit}") || die "no commit '$REF' in $SRC"
SHORT=${COMMIT:0:7}
[ -n "$OUT" ] || OUT=$(mktemp -d "${TMPDIR:-/tmp}/surfacelink-flake-hunt.XXXXXX")
mkdir -p "$OUT/claims"
OUT=$(cd "$OUT" && pwd)
[ -e "$OUT/summary.tsv" ] && die "$OUT already holds a hunt (summary.tsv); give another --out"
printf 'worker\trun\tcommit\texit\tpassed\tfailed\tskipped\tload\tminutes\tfailed_tests\n' >"$OUT/summary.tsv"
say() { printf 'flake-hunt: %s\n' "$*" >&2; }
say "$RUNS run(s) of '$COMMAND' on $SHORT, $PARALLEL at once, in $OUT"

# The next run number nobody has claimed (mkdir is atomic), or nothing when all are claimed.
claim() {
  local n
  for ((n = 1; n <= RUNS; n++)); do
    if mkdir "$OUT/claims/$n" 2>/dev/null; then
      echo "$n"
      return
    fi
  done
}

median_load() { sort -n "$1" 2>/dev/null | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }

worker() {
  local w=$1 dir="$OUT/w$1" n log sampler t0 rc sum passed failed skipped titles load minutes
  git clone -q --no-checkout "$SRC" "$dir"
  git -C "$dir" checkout -q --detach "$COMMIT"
  cd "$dir"
  if [ "$SETUP" = ci ]; then
    say "w$w: setting up (npm ci with -Werror, npm run prebuild, QEMU 10.0): $dir/setup.log"
    if ! { SURFACELINK_WERROR=1 npm ci --no-audit --no-fund && npm run prebuild &&
      bash scripts/qemu/fetch-qemu10.sh; } >setup.log 2>&1; then
      say "w$w: setup failed, its end:"
      tail -20 setup.log >&2
      touch "$OUT/setup-failed"
      return 1
    fi
  fi
  touch "$OUT/ready-w$w"
  while [ ! -e "$OUT/STOP" ] && n=$(claim) && [ -n "$n" ]; do
    log="$dir/run-$n.log"
    # The load sampler; its sleep ends with it (a sleep left behind would hold the hunt's output open).
    (
      trap 'kill "$s" 2>/dev/null; exit 0' TERM
      while :; do
        cut -d' ' -f1 /proc/loadavg >>"$dir/load-$n.txt"
        sleep 30 &
        s=$!
        wait "$s"
      done
    ) >/dev/null 2>&1 &
    sampler=$!
    t0=$(date +%s)
    set +e
    SURFACELINK_RESULTS_FILE="$dir/run-$n.json" SURFACELINK_HUNT_RUN=$n bash -c "$COMMAND" >"$log" 2>&1
    rc=$?
    set -e
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    sum=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -1 || true)
    if [ -n "$sum" ]; then
      read -r passed _ failed _ skipped _ <<<"${sum//,/}"
    else
      passed=- failed=- skipped=-
    fi
    titles=""
    if [ -s "$dir/run-$n.json" ]; then
      titles=$(node -e '
        const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        process.stdout.write(r.filter((t) => t.state === "failed").map((t) => t.title.replace(/[\t\n]+/g, " ")).join(" | "));
      ' "$dir/run-$n.json" || true)
    fi
    # A run that failed without naming a test (a crash, a type error, a timeout of the whole suite).
    [ -n "$titles" ] || [ "$rc" = 0 ] || titles="(exit $rc without a failed test: see $log)"
    load=$(median_load "$dir/load-$n.txt")
    minutes=$((($(date +%s) - t0 + 30) / 60))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "w$w" "$n" "$SHORT" "$rc" "$passed" "$failed" "$skipped" \
      "$load" "$minutes" "$titles" >>"$OUT/summary.tsv"
    say "w$w run $n/$RUNS: exit $rc, ${sum:-no summary line}, load $load, $minutes min${titles:+ — failed: $titles}"
  done
}

# The report: finishing order is the order of summary.tsv's lines. Exit status 0 when every run passed.
report() {
  node -e '
  const fs = require("fs");
  const lines = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").slice(1).map((l) => l.split("\t"));
  let green = 0, streak = 0, best = 0;
  const failed = new Map();
  for (const [, , , rc, , f, , , , titles] of lines) {
    const ok = rc === "0" && (f === "0" || f === "-");
    if (ok) { green++; streak++; best = Math.max(best, streak); } else streak = 0;
    for (const t of (titles || "").split(" | ").filter(Boolean)) failed.set(t, (failed.get(t) || 0) + 1);
  }
  const out = [`${lines.length} run(s): ${green} green, ${lines.length - green} red; longest green streak ${best}`];
  for (const [t, c] of [...failed].sort((a, b) => b[1] - a[1])) out.push(`  failed ${c}x: ${t}`);
  out.push(`summary: ${process.argv[1]}`);
  console.log(out.join("\n"));
  process.exit(lines.length > 0 && green === lines.length ? 0 : 1);
' "$OUT/summary.tsv"
}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done
}
trap 'say "interrupted; the runs that finished:"; cleanup; report || true; exit 130' INT TERM
for ((w = 1; w <= PARALLEL; w++)); do
  # Each worker's setup waits for the one before it: compiling five addons twice at once on a small
  # machine only makes both slower, and the first worker's runs begin sooner.
  if [ "$w" -gt 1 ] && [ "$SETUP" = ci ]; then
    while [ ! -e "$OUT/ready-w$((w - 1))" ] && [ ! -e "$OUT/setup-failed" ] && kill -0 "${pids[-1]}" 2>/dev/null; do
      sleep 5
    done
  fi
  [ -e "$OUT/setup-failed" ] && break
  set -m
  worker "$w" &
  pids+=($!)
  set +m
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
report || status=1
[ -e "$OUT/setup-failed" ] && status=1
exit $status
}
