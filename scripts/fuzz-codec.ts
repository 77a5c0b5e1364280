/**
 * `npm run fuzz:codec -- [--runs N] [--seconds S] [--seed S]`: the property-based fuzzers of
 * test/fuzz/lib/codec-properties.ts (every reader of the unix codec, the stream parser and tile
 * decoder, the native channel's framing), in rounds of N cases per property with a new seed each
 * round, until S seconds have passed. Prints the seed of a failing round (fast-check shrinks the
 * counterexample); exits 1 on the first failure.
 */
import { runChannelProperty, runCodecProperties } from '../test/fuzz/lib/codec-properties.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
}

async function main(): Promise<void> {
  const runs = arg('runs', 2000);
  const seconds = arg('seconds', 60);
  let seed = arg('seed', Date.now() % 0x7fffffff);
  const deadline = Date.now() + seconds * 1000;
  let rounds = 0;
  let cases = 0;
  do {
    console.log(`round ${rounds + 1}, seed ${seed}`);
    for (const r of runCodecProperties(runs, seed, console.log)) cases += r.runs;
    cases += (await runChannelProperty(Math.max(20, Math.floor(runs / 20)), seed, console.log)).runs;
    rounds++;
    seed = (seed * 48271) % 0x7fffffff;
  } while (Date.now() < deadline);
  console.log(`${rounds} rounds, ${cases} cases, every property held`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
