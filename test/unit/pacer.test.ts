/**
 * The stream send pacer (src/stream/pacer.ts, docs/remote.md §3 "maxFps caps the rate"), on made-up
 * timelines: a producer presenting with timer jitter, a session that sends what the pacer admits and
 * retries when it says, a newer frame replacing a held one. No machine clock is involved, so a loaded
 * machine cannot make these pass or fail.
 */
import { expect } from 'chai';
import { FPS_TOLERANCE, SendPacer } from '../../src/stream/pacer.js';
import { Rng } from '../fuzz/lib/rng.js';

interface Timeline {
  /** When each sent frame went out, and which present it was. */
  sends: { at: number; frame: number }[];
  /** Frames sent later than they were presented. */
  delayed: number;
  /** Frames a newer one replaced while they waited. */
  skipped: number;
}

/**
 * `count` presents at `fps` with uniform jitter of ±`jitterMs` (and every `stallEvery`th one 40 ms late), through
 * one pacer capped at `maxFps`; `bytesKbps`: each send charged [bytes, kbps].
 */
function simulate(
  fps: number,
  maxFps: number,
  count: number,
  jitterMs: number,
  seed = 1,
  bytesKbps?: [number, number],
  stallEvery = 0,
) {
  const rng = new Rng(seed);
  const late = (i: number): number => (stallEvery > 0 && i % stallEvery === 0 ? 40 : 0);
  const presents = Array.from(
    { length: count },
    (_, i) => 1000 + (i * 1000) / fps + (rng.next() * 2 - 1) * jitterMs + late(i),
  );
  presents.sort((a, b) => a - b); // jitter never reorders a producer's frames
  const pacer = new SendPacer();
  const out: Timeline = { sends: [], delayed: 0, skipped: 0 };
  let held: number | null = null; // the frame waiting for its slot
  let retryAt = Infinity;
  const trySend = (now: number, frame: number): void => {
    const wait = pacer.admit(now, maxFps);
    if (wait > 0) {
      if (held !== null) out.skipped++;
      held = frame;
      retryAt = now + wait;
      return;
    }
    out.sends.push({ at: now, frame });
    if (now > presents[frame]) out.delayed++;
    if (bytesKbps) pacer.charge(now, bytesKbps[0], bytesKbps[1]);
    held = null;
    retryAt = Infinity;
  };
  for (let i = 0; i < count; i++) {
    while (held !== null && retryAt <= presents[i]) trySend(retryAt, held);
    if (held !== null) {
      out.skipped++; // replaced: only the newest frame is ever sent
      held = null;
    }
    trySend(presents[i], i);
  }
  while (held !== null) trySend(retryAt, held);
  return out;
}

describe('stream send pacer (unit, simulated clock)', () => {
  // What a producer "at" the cap really presents at, with timers that fire up to 30% of a period early or late.
  for (const [fps, cap] of [
    [20.8, 20], // the integration test's producer: a little above the cap
    [20, 20],
    [30.3, 30], // 33 ms timers
    [60.02, 60], // a display clock
    [59.94, 60],
  ]) {
    const jitter = 300 / cap;
    it(`a producer at ${fps} fps under a cap of ${cap} (±${jitter.toFixed(1)} ms jitter) is never held back`, () => {
      const t = simulate(fps, cap, 20000, jitter);
      expect(t.sends).to.have.length(20000);
      expect({ delayed: t.delayed, skipped: t.skipped }).to.deep.equal({ delayed: 0, skipped: 0 });
    });
  }

  it('a late frame (a 40 ms stall) holds back neither the next one, 8 ms after it, nor those after that', () => {
    const pacer = new SendPacer();
    const period = 1000 / 20.8;
    const times = [0, 1, 2, 3, 4, 5, 6].map((i) => 1000 + i * period);
    times[2] += 40;
    expect(times.map((t) => pacer.admit(t, 20))).to.deep.equal([0, 0, 0, 0, 0, 0, 0]);
  });

  it('a producer a little above the cap that stalls 40 ms every 50 frames is never held back', () => {
    // Restarting the grid at each late frame (the rule before this test) delayed 70% of these frames by 8.6 ms on
    // average: a producer 4% faster than the grid needs ~30 frames to catch up with a grid 28 ms behind.
    const t = simulate(20.8, 20, 20000, 5, 1, undefined, 50);
    expect({ sent: t.sends.length, delayed: t.delayed, skipped: t.skipped }).to.deep.equal({
      sent: 20000,
      delayed: 0,
      skipped: 0,
    });
  });

  for (const [fps, cap] of [
    [60, 20],
    [30, 20],
    [144, 30],
    [1000, 5],
  ]) {
    it(`a producer at ${fps} fps under a cap of ${cap} is held to it: n + 1 sends span ≥ n − 1¼ grid periods`, () => {
      const t = simulate(fps, cap, 5000, 5);
      const period = 1000 / (cap * FPS_TOLERANCE);
      // A burst of two frames at most (the bucket), then the grid.
      for (const n of [2, 10, 100]) {
        let tightest = Infinity;
        for (let k = 0; k + n < t.sends.length; k++) tightest = Math.min(tightest, t.sends[k + n].at - t.sends[k].at);
        expect(tightest, `${n + 1} sends`).to.be.at.least((n - 1.25) * period - 1e-6);
      }
      const span = t.sends[t.sends.length - 1].at - t.sends[0].at;
      const n = t.sends.length - 1;
      expect((n * 1000) / span).to.be.within(cap * 0.95, (cap * FPS_TOLERANCE * n) / (n - 1.25) + 1e-9);
      expect(t.skipped).to.equal(5000 - t.sends.length, 'every frame not sent was replaced by a newer one');
    });
  }

  it('a byte budget holds the next frame until the last one has drained (tiles, maxBitrateKbps)', () => {
    // 50 kB frames at 2000 kbps: 200 ms each, under a 30 fps cap: about 5 sends a second.
    const t = simulate(30, 30, 300, 2, 1, [50000, 2000]);
    const slack = 1000 / (30 * FPS_TOLERANCE) / 4;
    for (let k = 1; k < t.sends.length; k++)
      expect(t.sends[k].at - t.sends[k - 1].at).to.be.at.least(200 - slack - 1e-6);
    expect(t.sends.length).to.be.within(45, 55); // 10 s of frames, 200 ms apart
  });
});
