/**
 * The adaptive bitrate controller (src/stream/bitrate.ts) against a simulated link: each second the
 * producer makes 30 frames ready, each of target / 30 kbit; the link carries `capacity` kbit/s,
 * and a frame that does not fit waits for its ack, so the window is full and later frames stall.
 */
import { expect } from 'chai';
import { BitrateController } from '../../src/stream/bitrate.js';

const FPS = 30;

function run(c: BitrateController, capacityKbps: (second: number) => number, seconds: number, from = 0): number[] {
  const targets: number[] = [];
  for (let t = from; t < from + seconds; t++) {
    const frameKbit = c.targetKbps / FPS;
    const delivered = Math.min(FPS, Math.floor(capacityKbps(t) / frameKbit));
    c.sample({
      nowMs: t * 1000,
      ackedBytes: (delivered * frameKbit * 1000) / 8,
      framesReady: FPS,
      windowStalls: FPS - delivered,
    });
    targets.push(c.targetKbps);
  }
  return targets;
}

describe('adaptive H.264 bitrate (src/stream/bitrate.ts)', () => {
  it('a link narrower than the cap: the target drops below what it drains, at once, then holds', () => {
    const c = new BitrateController({ maxKbps: 8000 });
    const targets = run(c, () => 2000, 20);
    expect(targets[0], 'the first sample only starts the clock').to.equal(8000);
    expect(targets[2], 'down after one congested second').to.be.at.most(2000);
    // Probing up by 15% every 3 s may overshoot the link for one second, which the next sample undoes.
    const steady = targets.slice(3);
    for (const t of steady) expect(t).to.be.within(1000, 2000 * 1.35);
    const mean = steady.reduce((a, b) => a + b, 0) / steady.length;
    expect(mean).to.be.within(1200, 2000);
    expect(c.state.decreases).to.be.greaterThan(0);
  });

  it('the link widens: the target climbs back to the cap, 15% per clear 3 s', () => {
    const c = new BitrateController({ maxKbps: 8000 });
    run(c, () => 1500, 10);
    const low = c.targetKbps;
    expect(low, 'near the link (a probe may be 15% above it for a second)').to.be.at.most(1500 * 1.15 + 100);
    const targets = run(c, () => 100000, 60, 10);
    expect(targets.at(-1)).to.equal(8000);
    const ups = targets.flatMap((t, i) => (t > (i === 0 ? low : targets[i - 1]) ? [i] : []));
    for (let i = 1; i < ups.length; i++) expect(ups[i] - ups[i - 1], 'increases 3 s apart').to.be.at.least(3);
    for (let i = 1; i < targets.length; i++)
      expect(targets[i]).to.be.at.most(Math.max(targets[i - 1] * 1.15 + 100, 100 + targets[i - 1]));
  });

  it('one bad second halves the target at most; a skipped interval (an encoder restarting) changes nothing', () => {
    const c = new BitrateController({ maxKbps: 8000 });
    c.sample({ nowMs: 0, ackedBytes: 0, framesReady: 0, windowStalls: 0 });
    // A second in which almost nothing was acked (a pause), then a clear one.
    expect(c.sample({ nowMs: 1000, ackedBytes: 1000, framesReady: 30, windowStalls: 28 })).to.equal(4000);
    c.skip(2000);
    expect(c.targetKbps).to.equal(4000);
    expect(c.sample({ nowMs: 3000, ackedBytes: 500_000, framesReady: 30, windowStalls: 0 })).to.equal(null);
  });

  it('never below the floor, never above the cap; stalls with a full-rate link change nothing', () => {
    const c = new BitrateController({ maxKbps: 4000, minKbps: 300 });
    run(c, () => 50, 10);
    expect(c.targetKbps).to.equal(300);
    const d = new BitrateController({ maxKbps: 4000 });
    d.sample({ nowMs: 0, ackedBytes: 0, framesReady: 0, windowStalls: 0 });
    // The window is full (a long round trip) but everything sent at the target is acked: not the link.
    expect(d.sample({ nowMs: 1000, ackedBytes: 500_000, framesReady: 30, windowStalls: 20 })).to.equal(null);
    expect(d.targetKbps).to.equal(4000);
  });
});
