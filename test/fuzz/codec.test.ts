/**
 * The property-based fuzzers of everything a peer parses (test/fuzz/lib/codec-properties.ts), a
 * CI-sized round: the unix codec's readers, the stream protocol's parser and tile decoder, and the
 * native channel's framing through a real socketpair. A new seed every run (printed; set
 * SURFACELINK_FUZZ_SEED to repeat one); `npm run fuzz:codec` runs longer.
 */
import { expect } from 'chai';
import { runChannelProperty, runCodecProperties } from './lib/codec-properties.js';

describe('codec fuzzing (fast-check properties)', function () {
  this.timeout(120000);
  const seed = Number(process.env.SURFACELINK_FUZZ_SEED ?? Date.now() % 0x7fffffff);

  it(`every reader returns a value or a stable error, and valid messages read back (seed ${seed})`, () => {
    const results = runCodecProperties(4000, seed, (line) => console.log(line));
    expect(results.map((r) => r.runs).reduce((a, b) => a + b, 0)).to.be.at.least(4000 * results.length);
  });

  it(`the native channel frames exactly as docs/protocol.md §2.2–§2.4 say (seed ${seed})`, async () => {
    const r = await runChannelProperty(400, seed, (line) => console.log(line));
    expect(r.exact).to.be.greaterThan(100);
  });
});
