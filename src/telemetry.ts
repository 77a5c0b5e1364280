/**
 * Per-stage frame telemetry (issue 13): how long each step of a frame's trip took, present →
 * sent → received → imported → released, as durations. Recording is allocation-free: each stage
 * keeps its most recent samples in a preallocated ring (a Float64Array); percentiles are computed
 * only when someone asks for a summary.
 *
 * The server measures the stages it sees (present → sent → released, per client), the client the
 * ones it sees (present → received → imported → released); both use CLOCK_MONOTONIC, the clock of
 * the FRAME's `present_time_ns`, so a duration that spans the two processes is the difference of
 * two readings of one clock (frames.v1 peers are always on one host).
 */
import { performance } from 'node:perf_hooks';

/** Samples each stage keeps for its percentiles (the most recent ones). */
export const TELEMETRY_WINDOW = 256;

/**
 * `performance.now()` is CLOCK_MONOTONIC (uv_hrtime) minus this process's time origin: the offset,
 * measured once. The first calls are slow (lazy setup), so it is taken as the tightest of a few
 * brackets (hrtime between two performance.now() readings), accurate to a few microseconds.
 */
const monotonicOriginMs = ((): number => {
  let best = Infinity;
  let offset = 0;
  for (let i = 0; i < 8; i++) {
    const before = performance.now();
    const ns = process.hrtime.bigint();
    const after = performance.now();
    if (after - before < best) {
      best = after - before;
      offset = Number(ns) / 1e6 - (before + after) / 2;
    }
  }
  return offset;
})();

/** CLOCK_MONOTONIC in milliseconds (as `present_time_ns` / 1e6), without allocating. */
export function monotonicMs(): number {
  return performance.now() + monotonicOriginMs;
}

/** One stage's durations, summarised. Plain data. */
export interface StageStats {
  /** Frames measured since the start (the percentiles cover only the most recent TELEMETRY_WINDOW). */
  count: number;
  /** Median of the recent samples, in milliseconds (0 when there are none). */
  p50Ms: number;
  /** 99th percentile of the recent samples, in milliseconds (0 when there are none). */
  p99Ms: number;
  /** Mean of the recent samples, in milliseconds: the stages' means add up to the total's. */
  meanMs: number;
  /** Largest of the recent samples, in milliseconds. */
  maxMs: number;
}

/** @internal The most recent durations of one stage, in a preallocated ring. */
export class DurationRing {
  private readonly samples: Float64Array;
  private next = 0;
  private filled = 0;
  /** Every sample ever added. */
  count = 0;

  constructor(capacity = TELEMETRY_WINDOW) {
    this.samples = new Float64Array(capacity);
  }

  add(ms: number): void {
    this.samples[this.next] = ms;
    this.next = this.next + 1 === this.samples.length ? 0 : this.next + 1;
    if (this.filled < this.samples.length) this.filled++;
    this.count++;
  }

  /** Allocates (a sorted copy): call it for reports, never per frame. */
  summary(): StageStats {
    const n = this.filled;
    if (n === 0) return { count: this.count, p50Ms: 0, p99Ms: 0, meanMs: 0, maxMs: 0 };
    const sorted = this.samples.slice(0, n).sort();
    let sum = 0;
    for (let i = 0; i < n; i++) sum += sorted[i];
    const at = (q: number): number => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))];
    return { count: this.count, p50Ms: at(0.5), p99Ms: at(0.99), meanMs: sum / n, maxMs: sorted[n - 1] };
  }
}

/**
 * The server's view of one client's frames, all durations in milliseconds. Each frame the client
 * released adds one sample to every stage, so `presentToSent + sentToReleased = presentToReleased`
 * holds frame by frame (and for the means).
 */
export interface ServerFrameTelemetry {
  /** Present → the FRAME handed to the socket (includes waiting for the client's previous release: latest wins). */
  presentToSent: StageStats;
  /** FRAME handed to the socket → its RELEASE read: the hold the release deadline measures. */
  sentToReleased: StageStats;
  /** Present → RELEASE read. */
  presentToReleased: StageStats;
}

/**
 * The client's view of its frames, all durations in milliseconds. Each released frame adds one
 * sample to every stage, so the three stages add up to `presentToReleased`, frame by frame.
 */
export interface ClientStageTelemetry {
  /** Present (the FRAME's present_time_ns) → the FRAME read here: queueing on the server, the socket, our loop. */
  presentToReceived: StageStats;
  /**
   * FRAME read → the frame handed to the application (the `frame` event): its acquire fence
   * signalled and its CPU read bracket begun. A new buffer's import (SCANOUT) comes before its FRAME
   * is read, so it falls in presentToReceived.
   */
  receivedToImported: StageStats;
  /** `frame` event → `release()`: how long the application held it. */
  importedToReleased: StageStats;
  /** Present → release(). */
  presentToReleased: StageStats;
}

/** What `SurfaceClient.telemetry` reports: every surface together, and each surface on its own. */
export interface ClientTelemetry extends ClientStageTelemetry {
  /** Per surface (in the order their first frames arrived), the same stages. */
  surfaces: ({
    /** The surface (`SharedSurface.id` in the producer). */
    surfaceId: number;
  } & ClientStageTelemetry)[];
}

/** @internal The server's rings for one client. */
export class ServerStages {
  readonly presentToSent = new DurationRing();
  readonly sentToReleased = new DurationRing();
  readonly presentToReleased = new DurationRing();

  /** One released frame; times in monotonic milliseconds. */
  record(presentMs: number, sentMs: number, releasedMs: number): void {
    this.presentToSent.add(sentMs - presentMs);
    this.sentToReleased.add(releasedMs - sentMs);
    this.presentToReleased.add(releasedMs - presentMs);
  }

  summary(): ServerFrameTelemetry {
    return {
      presentToSent: this.presentToSent.summary(),
      sentToReleased: this.sentToReleased.summary(),
      presentToReleased: this.presentToReleased.summary(),
    };
  }
}

/** @internal The client's rings for one surface, or for all of them. */
export class ClientStages {
  readonly presentToReceived = new DurationRing();
  readonly receivedToImported = new DurationRing();
  readonly importedToReleased = new DurationRing();
  readonly presentToReleased = new DurationRing();

  /** One released frame; times in monotonic milliseconds. */
  record(presentMs: number, receivedMs: number, importedMs: number, releasedMs: number): void {
    this.presentToReceived.add(receivedMs - presentMs);
    this.receivedToImported.add(importedMs - receivedMs);
    this.importedToReleased.add(releasedMs - importedMs);
    this.presentToReleased.add(releasedMs - presentMs);
  }

  summary(): ClientStageTelemetry {
    return {
      presentToReceived: this.presentToReceived.summary(),
      receivedToImported: this.receivedToImported.summary(),
      importedToReleased: this.importedToReleased.summary(),
      presentToReleased: this.presentToReleased.summary(),
    };
  }
}
