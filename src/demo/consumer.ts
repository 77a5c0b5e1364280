/**
 * The consumer half of the demo, and the statistics `surfacelink view` prints: frames per
 * second, handoff latency (present on the server → receipt here, both CLOCK_MONOTONIC on
 * one host), sequence gaps, and whether the counter drawn in the pixels matches the
 * frame's sequence. Recording a frame allocates nothing; summaries are built once a second.
 *
 * The demo's consumer also draws every frame with GL (GlFrameView): it imports the frame into
 * its own context (zero-copy on ANGLE/SwiftShader where the stride allows, else the damage is
 * uploaded), draws it as a textured quad into an offscreen framebuffer and waits for GL before
 * releasing the frame. The counter check stays on the CPU view of the same shared memory.
 */
import {
  SurfaceClient,
  type ClientStageTelemetry,
  type ClientTelemetry,
  type Frame,
  type ServerFrameTelemetry,
  type StageStats,
} from '../index.js';
import { RenderTexture, SurfaceImporter, drawTexture, openGpuContext, type GpuContext } from '../gl/index.js';
import { counterValue, patternLayout, readCounter, type PatternLayout } from './pattern.js';

/** Latencies are kept in 1 µs bins up to this; slower handoffs land in the last bin. */
const MAX_LATENCY_US = 100_000;

class LatencyHistogram {
  private readonly bins = new Uint32Array(MAX_LATENCY_US + 1);
  count = 0;

  record(us: number): void {
    const bin = us <= 0 ? 0 : us >= MAX_LATENCY_US ? MAX_LATENCY_US : Math.floor(us);
    this.bins[bin]++;
    this.count++;
  }

  /** The smallest bin with at least q of the samples at or below it; NaN when empty. */
  percentile(q: number): number {
    if (this.count === 0) return NaN;
    const target = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let bin = 0; bin < this.bins.length; bin++) {
      seen += this.bins[bin];
      if (seen >= target) return bin;
    }
    return MAX_LATENCY_US;
  }

  reset(): void {
    if (this.count === 0) return;
    this.bins.fill(0);
    this.count = 0;
  }
}

/** Plain data (it crosses the fork IPC channel as JSON). */
export interface StatsSnapshot {
  mechanism: string | null;
  width: number;
  height: number;
  /** Since the previous snapshot. */
  window: { seconds: number; frames: number; fps: number; p50Us: number | null; p99Us: number | null };
  /** Since the stats began. */
  total: { seconds: number; frames: number; fps: number; p50Us: number | null; p99Us: number | null };
  /** Sequence numbers never seen between two that were (the server skipped them for us). */
  dropped: number;
  /** Per-stage durations of the frames released so far (SurfaceClient.telemetry), once there are any. */
  stages: StagesSnapshot | null;
  /** `skipped`: frames too small to carry a counter (the pattern leaves it out). */
  counter: {
    verified: number;
    wrong: number;
    unreadable: number;
    skipped: number;
    lastWrong: { seen: number; expected: number } | null;
  };
}

/** Per-stage durations, p50 and p99 in ms, in the order of a frame's trip. Plain data (it crosses IPC). */
export interface StagesSnapshot {
  /** Frames measured. */
  frames: number;
  stages: { name: string; p50Ms: number; p99Ms: number }[];
}

function stagesOf(frames: number, stages: [string, StageStats][]): StagesSnapshot {
  return { frames, stages: stages.map(([name, s]) => ({ name, p50Ms: s.p50Ms, p99Ms: s.p99Ms })) };
}

/** A client's stages (SurfaceClient.telemetry) as a StagesSnapshot. */
export function clientStages(t: ClientStageTelemetry): StagesSnapshot {
  return stagesOf(t.presentToReleased.count, [
    ['present→received', t.presentToReceived],
    ['received→imported', t.receivedToImported],
    ['imported→released', t.importedToReleased],
  ]);
}

/** The server's stages for one client (ClientInfo.telemetry) as a StagesSnapshot. */
export function serverStages(t: ServerFrameTelemetry): StagesSnapshot {
  return stagesOf(t.presentToReleased.count, [
    ['present→sent', t.presentToSent],
    ['sent→released', t.sentToReleased],
  ]);
}

/** "<label> p50/p99 ms: present→received 0.31/0.90, … (n frames)". */
export function formatStages(label: string, s: StagesSnapshot): string {
  const ms = (v: number): string => (v >= 10 ? v.toFixed(1) : v.toFixed(2));
  const parts = s.stages.map((x) => `${x.name} ${ms(x.p50Ms)}/${ms(x.p99Ms)}`);
  return `${label} p50/p99 ms: ${parts.join(', ')} (${s.frames} frames)`;
}

export class FrameStats {
  mechanism: string | null = null;
  /** Where the per-stage durations come from (consumeFrames sets it to the client's). */
  telemetry: (() => ClientTelemetry) | null = null;
  private width = 0;
  private height = 0;
  private layout: PatternLayout | null = null;
  private readonly startNs = process.hrtime.bigint();
  private windowStartNs = this.startNs;
  private windowFrames = 0;
  private frames = 0;
  private lastSequence = -1;
  private dropped = 0;
  private verified = 0;
  private wrong = 0;
  private unreadable = 0;
  private skipped = 0;
  private lastWrong: { seen: number; expected: number } | null = null;
  private readonly windowLatency = new LatencyHistogram();
  private readonly totalLatency = new LatencyHistogram();

  /** Call while the frame is held: its pixels are read. */
  record(frame: Frame): void {
    this.windowFrames++;
    this.frames++;
    const latencyUs = (frame.receiveTimeNs - frame.presentTimeNs) / 1000;
    this.windowLatency.record(latencyUs);
    this.totalLatency.record(latencyUs);
    if (this.lastSequence >= 0 && frame.sequence > this.lastSequence + 1)
      this.dropped += frame.sequence - this.lastSequence - 1;
    this.lastSequence = frame.sequence;
    if (frame.width !== this.width || frame.height !== this.height || !this.layout) {
      this.width = frame.width;
      this.height = frame.height;
      this.layout = patternLayout(frame.width, frame.height);
    }
    if (!this.layout.counter) {
      this.skipped++;
      return;
    }
    const seen = readCounter(this.layout, frame.pixels(), frame.stride);
    const expected = counterValue(frame.sequence);
    if (seen === expected) this.verified++;
    else if (seen < 0) this.unreadable++;
    else {
      this.wrong++;
      if (this.lastWrong) {
        this.lastWrong.seen = seen;
        this.lastWrong.expected = expected;
      } else this.lastWrong = { seen, expected };
    }
  }

  /** Totals so far plus the window since the previous call, which starts a new window. */
  snapshot(): StatsSnapshot {
    const now = process.hrtime.bigint();
    const windowSeconds = Number(now - this.windowStartNs) / 1e9;
    const totalSeconds = Number(now - this.startNs) / 1e9;
    const orNull = (v: number): number | null => (Number.isNaN(v) ? null : v);
    const snap: StatsSnapshot = {
      mechanism: this.mechanism,
      width: this.width,
      height: this.height,
      window: {
        seconds: windowSeconds,
        frames: this.windowFrames,
        fps: windowSeconds > 0 ? this.windowFrames / windowSeconds : 0,
        p50Us: orNull(this.windowLatency.percentile(0.5)),
        p99Us: orNull(this.windowLatency.percentile(0.99)),
      },
      total: {
        seconds: totalSeconds,
        frames: this.frames,
        fps: totalSeconds > 0 ? this.frames / totalSeconds : 0,
        p50Us: orNull(this.totalLatency.percentile(0.5)),
        p99Us: orNull(this.totalLatency.percentile(0.99)),
      },
      dropped: this.dropped,
      stages: this.telemetry ? clientStages(this.telemetry()) : null,
      counter: {
        verified: this.verified,
        wrong: this.wrong,
        unreadable: this.unreadable,
        skipped: this.skipped,
        lastWrong: this.lastWrong && { ...this.lastWrong },
      },
    };
    this.windowStartNs = now;
    this.windowFrames = 0;
    this.windowLatency.reset();
    return snap;
  }
}

/**
 * OK: every counter read matched its frame. BAD: some did not. unreadable: none could be
 * read (the server does not draw the test pattern). too-small: the frames are too small
 * to carry a counter. waiting: no frame yet.
 */
export type CounterVerdict = 'OK' | 'BAD' | 'unreadable' | 'too-small' | 'waiting';

export function counterVerdict(s: StatsSnapshot): CounterVerdict {
  const c = s.counter;
  if (c.verified + c.wrong + c.unreadable === 0) return c.skipped > 0 ? 'too-small' : 'waiting';
  if (c.wrong === 0 && c.unreadable === 0) return 'OK';
  if (c.verified === 0 && c.wrong === 0) return 'unreadable';
  return 'BAD';
}

function counterText(s: StatsSnapshot): string {
  const c = s.counter;
  const verdict = counterVerdict(s);
  if (verdict === 'OK') return 'counter OK';
  if (verdict === 'waiting') return 'counter -';
  if (verdict === 'unreadable') return 'counter n/a (not the test pattern)';
  if (verdict === 'too-small') return 'counter n/a (surface too small)';
  const last = c.lastWrong ? `, last saw ${c.lastWrong.seen} in frame ${c.lastWrong.expected}` : '';
  return `counter BAD (${c.wrong} wrong, ${c.unreadable} unreadable of ${c.verified + c.wrong + c.unreadable}${last})`;
}

const us = (v: number | null): string => (v === null ? '-' : `${v}`);

/** One status line: the last window's rate and latency, the running drop and counter tallies. */
export function formatStatus(s: StatsSnapshot): string {
  const w = s.window;
  // Short enough for an 80-column terminal, where it is rewritten in place and must not wrap.
  return [
    `${s.mechanism ?? 'connecting'} ${s.width ? `${s.width}x${s.height}` : '-'}`,
    `${w.fps.toFixed(1)} fps`,
    `latency p50 ${us(w.p50Us)} p99 ${us(w.p99Us)} µs`,
    `dropped ${s.dropped}`,
    counterText(s),
  ].join('  ');
}

/** The closing line: everything since the start. */
export function formatSummary(s: StatsSnapshot): string {
  const t = s.total;
  return (
    `${s.mechanism ?? 'no mechanism'} ${s.width}x${s.height}, ${t.frames} frames in ${t.seconds.toFixed(1)} s ` +
    `(${t.fps.toFixed(1)} fps), ` +
    `latency p50 ${us(t.p50Us)} µs p99 ${us(t.p99Us)} µs, dropped ${s.dropped}, ${counterText(s)}` +
    (s.stages && s.stages.frames > 0 ? `; ${formatStages('stages', s.stages)}` : '')
  );
}

/** What GlFrameView reports: the GL it drew with and how frames reached it. */
export interface GlViewReport {
  renderer: string;
  /** 'memory-object', 'upload', … (see SurfaceImporter), or 'off' after a failure. */
  path: string;
  reason: string;
}

/**
 * Draws each frame with GL: import (SurfaceImporter), a textured quad into an offscreen
 * RenderTexture, glFinish. A GL failure turns it off for good (draw() returns false after);
 * `onReport` hears the GL and path once, and again whenever the path changes.
 */
export class GlFrameView {
  private readonly importer: SurfaceImporter;
  private target: RenderTexture | null = null;
  private reportedPath = '';
  failed: string | null = null;
  frames = 0;

  constructor(
    readonly ctx: GpuContext,
    private readonly onReport: (report: GlViewReport) => void,
  ) {
    this.importer = new SurfaceImporter(ctx);
  }

  /** Draws the frame (call while it is held). */
  draw(frame: Frame): boolean {
    if (this.failed !== null) return false;
    try {
      const texture = this.importer.import(frame);
      if (!this.target || this.target.width !== frame.width || this.target.height !== frame.height) {
        this.target?.destroy();
        this.target = new RenderTexture(this.ctx, frame.width, frame.height);
      }
      this.target.bind();
      drawTexture(this.ctx, texture.texture, texture.width, texture.height);
      // Zero-copy textures show the shared memory live: finish drawing before the frame goes back.
      this.ctx.api.gl.glFinish();
      this.frames++;
      if (texture.path !== this.reportedPath) {
        this.reportedPath = texture.path;
        this.onReport({ renderer: this.ctx.shortName, path: texture.path, reason: texture.reason });
      }
      return true;
    } catch (error) {
      this.failed = error instanceof Error ? error.message : String(error);
      this.onReport({
        renderer: this.ctx.shortName,
        path: 'off',
        reason: `GL drawing failed and is off: ${this.failed}`,
      });
      return false;
    }
  }

  close(): void {
    this.target?.destroy();
    this.importer.destroy();
    this.ctx.close();
  }
}

/**
 * Records every frame into `stats` (and draws it with `view`, if given) and releases it at
 * once, so the producer never waits on us.
 */
export function consumeFrames(client: SurfaceClient, stats: FrameStats, view?: GlFrameView): void {
  stats.mechanism = client.mechanism;
  stats.telemetry = () => client.telemetry;
  client.on('negotiated', (n) => (stats.mechanism = n.mechanism));
  client.on('frame', (frame) => {
    try {
      view?.draw(frame);
      stats.record(frame);
    } finally {
      frame.release();
    }
  });
}

// ---- the demo's consumer process --------------------------------------------------------

/** Messages the consumer process sends its parent. */
export type ConsumerMessage =
  | { type: 'negotiated'; mechanism: string; reason: string }
  | { type: 'stats'; stats: StatsSnapshot }
  | { type: 'final'; stats: StatsSnapshot }
  | { type: 'gl'; report: GlViewReport }
  | { type: 'warning'; message: string }
  | { type: 'error'; message: string };

/** Messages the parent sends either child. */
export interface StopMessage {
  type: 'stop';
}

function send(message: ConsumerMessage, then?: () => void): void {
  if (process.send && process.connected) process.send(message, undefined, {}, () => then?.());
  else then?.();
}

/**
 * Runs as `surfacelink demo-consumer --path P`, forked by `surfacelink demo`: connects,
 * reports once a second over IPC, and on {type:'stop'} sends its totals and exits 0. Any
 * other end (server gone, IPC gone) is an error: exit 1 with the reason sent first.
 */
export async function consumerMain(options: { path: string; gl?: 'angle' | 'system' | 'cpu' }): Promise<void> {
  let stopping = false;
  let client: SurfaceClient | null = null;
  let timer: NodeJS.Timeout | null = null;
  let view: GlFrameView | undefined;
  const stats = new FrameStats();

  let finished = false;
  const finish = (code: number, message?: ConsumerMessage): void => {
    if (finished) return;
    finished = true;
    if (timer) clearInterval(timer);
    client?.close();
    view?.close();
    const exit = (): void => process.exit(code);
    if (message) send(message, exit);
    else exit();
  };

  // Ctrl-C reaches the whole process group; the parent decides when we stop.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => finish(143, { type: 'final', stats: stats.snapshot() }));
  process.on('disconnect', () => {
    if (!stopping) finish(1);
  });
  process.on('message', (m: StopMessage) => {
    if (m?.type !== 'stop' || stopping) return;
    stopping = true;
    finish(0, { type: 'final', stats: stats.snapshot() });
  });

  try {
    client = await SurfaceClient.connect({ path: options.path, name: 'surfacelink-demo-consumer' });
  } catch (error) {
    const e = error as { code?: string; message?: string };
    return finish(1, { type: 'error', message: `cannot connect: ${e.code ?? 'error'}: ${e.message ?? String(error)}` });
  }
  if (finished) return void client.close(); // told to stop while connecting
  // The client announces its negotiation once more as an event; report each outcome once.
  let reported = '';
  const report = (n: { mechanism: string; reason: string } | null): void => {
    if (!n || `${n.mechanism}\n${n.reason}` === reported) return;
    reported = `${n.mechanism}\n${n.reason}`;
    send({ type: 'negotiated', mechanism: n.mechanism, reason: n.reason });
  };
  report(client.negotiation);
  if (options.gl && options.gl !== 'cpu') {
    try {
      view = new GlFrameView(openGpuContext({ prefer: options.gl }), (r) => send({ type: 'gl', report: r }));
    } catch (error) {
      const first = (error instanceof Error ? error.message : String(error)).split('\n')[0];
      process.stderr.write(`surfacelink demo consumer: no usable GL, checking frames on the CPU only: ${first}\n`);
      send({ type: 'gl', report: { renderer: 'none', path: 'off', reason: first } });
    }
  }
  consumeFrames(client, stats, view);
  client.on('negotiated', report);
  client.on('importFailed', (e) => send({ type: 'warning', message: `import failed: ${e.code}: ${e.message}` }));
  client.on('warning', (e) => send({ type: 'warning', message: `server warning: ${e.code}: ${e.message}` }));
  client.on('disconnect', (info) => {
    if (!stopping) finish(1, { type: 'error', message: `lost the server: ${info.code}: ${info.message}` });
  });
  timer = setInterval(() => send({ type: 'stats', stats: stats.snapshot() }), 1000);
}
