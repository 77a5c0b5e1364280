/**
 * Adaptive H.264 bitrate (docs/remote.md §5.1): the target follows what the connection drains
 * instead of staying at a fixed cap. The signal is the client's own acks, so it measures the whole
 * path — socket, network, the viewer's decoder — and needs no timing of the network itself:
 *
 * - every `intervalMs` (1 s) the controller is told how many bytes of frames were acked and how
 *   often a frame was ready but the in-flight window was full (the client had not acked yet:
 *   frames are skipped, latest wins, so the window bounds latency and a slow link shows up as
 *   lost frame rate rather than delay);
 * - congested (window stalls in at least a tenth of the frames the producer made ready) and
 *   the acked rate below 90% of the target: the target drops to 85% of what was acked, at once,
 *   but to no less than half of what it was (one bad second — a GC pause, a hiccup on the
 *   network — must not throw away what took minutes to probe) and never below `minKbps`;
 * - clear for `holdMs` (3 s) after the last change or congestion: the target rises by 15% (at
 *   least 100 kbit/s), up to `maxKbps` (the server's or the client's cap).
 *
 * A pure state machine (no timers, no I/O): the session calls `sample()` from its existing timer
 * and applies what it returns with `H264Encoder.setBitrate()`.
 */

export interface BitrateSample {
  /** Now, in ms, on any monotonic clock. */
  nowMs: number;
  /** Bytes of frames acked since the previous sample. */
  ackedBytes: number;
  /** Frames the producer made ready for this client since the previous sample. */
  framesReady: number;
  /** Of those, frames not sent because the in-flight window was full. */
  windowStalls: number;
}

export interface BitrateOptions {
  /** The cap: the server's `bitrateKbps`, or the client's `maxBitrateKbps` if lower. */
  maxKbps: number;
  /** The floor; default 250 kbit/s (below it H.264 is not worth watching: tiles would do). */
  minKbps?: number;
  /** Time clear of congestion before each increase; default 3000 ms. */
  holdMs?: number;
}

/** What the controller decided, for stats: the target and why it last changed. */
export interface BitrateState {
  /** The current target, kbit/s. */
  targetKbps: number;
  /** The acked rate over the last sample, kbit/s. */
  ackedKbps: number;
  /** Decreases so far (congestion). */
  decreases: number;
  /** Increases so far (probing back up). */
  increases: number;
}

export class BitrateController {
  readonly maxKbps: number;
  readonly minKbps: number;
  readonly holdMs: number;
  private target: number;
  private lastSampleMs = NaN;
  private lastChangeMs = -Infinity;
  private acked = 0;
  private down = 0;
  private up = 0;

  constructor(options: BitrateOptions) {
    this.maxKbps = Math.max(1, Math.round(options.maxKbps));
    this.minKbps = Math.min(this.maxKbps, Math.max(1, Math.round(options.minKbps ?? 250)));
    this.holdMs = options.holdMs ?? 3000;
    this.target = this.maxKbps;
  }

  get state(): BitrateState {
    return { targetKbps: this.target, ackedKbps: this.acked, decreases: this.down, increases: this.up };
  }

  get targetKbps(): number {
    return this.target;
  }

  /**
   * An interval that says nothing about the connection (the encoder was restarting: nothing was
   * sent): forget it, and start the next one from `nowMs`.
   */
  skip(nowMs: number): void {
    this.lastSampleMs = nowMs;
  }

  /**
   * One interval's observations; returns the new target (kbit/s) when it changed, else null.
   * The first call only starts the clock.
   */
  sample(s: BitrateSample): number | null {
    const elapsed = s.nowMs - this.lastSampleMs;
    this.lastSampleMs = s.nowMs;
    if (!(elapsed > 0)) {
      this.lastChangeMs = s.nowMs;
      return null;
    }
    this.acked = Math.round((s.ackedBytes * 8) / elapsed); // bytes per ms × 8 = kbit/s
    const congested = s.framesReady > 0 && s.windowStalls * 10 >= s.framesReady;
    if (congested && this.acked < this.target * 0.9) {
      const next = Math.max(this.minKbps, Math.round(this.acked * 0.85), Math.round(this.target / 2));
      this.lastChangeMs = s.nowMs;
      if (next >= this.target) return null;
      this.target = next;
      this.down++;
      return next;
    }
    if (congested) {
      this.lastChangeMs = s.nowMs;
      return null;
    }
    if (this.target >= this.maxKbps || s.nowMs - this.lastChangeMs < this.holdMs) return null;
    this.target = Math.min(this.maxKbps, Math.max(this.target + 100, Math.round(this.target * 1.15)));
    this.lastChangeMs = s.nowMs;
    this.up++;
    return this.target;
  }
}
