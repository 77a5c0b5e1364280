/**
 * The producer half of the demo, also what `surfacelink serve` runs: a SurfaceServer with
 * one XRGB8888 surface showing the test pattern, presented on a timer with damage.
 * Presenting never waits on clients (the pool grows, slow clients skip frames, and a pool at its
 * maximum makes the producer skip one), so a tick costs the repaint of two boxes and the counter.
 *
 * It answers input (input.v1 clients, browsers through the stream server): the box follows the
 * pointer, clicks change its colour, held keys show up, and an arrow cursor moves on its own plane
 * (cursor.v1), never in the frames (./interaction.ts). Until the first event the frames are the
 * plain pattern, which the tests compare pixel for pixel.
 *
 * The pattern is drawn with GL when asked (`gl: 'angle' | 'system'`; the demo asks for ANGLE):
 * rectangle fills into a framebuffer over the shared buffer (SurfaceRenderer: zero-copy on
 * ANGLE/SwiftShader when the stride allows, else rendered and the repainted rectangles read
 * back). Without a usable GL it draws on the CPU, and says why once on stderr.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SurfaceServer, type Logger, type PresentOptions, type SharedSurface, type SurfaceBuffer } from '../index.js';
import { openGpuContext, SurfaceRenderer, type GpuContext } from '../gl/index.js';
import { StreamServer } from '../stream/server.js';
import { DemoInput } from './interaction.js';
import {
  copyScene,
  drawScene,
  paintScene,
  patternLayout,
  sceneDamage,
  sceneRects,
  type PatternLayout,
  type Scene,
} from './pattern.js';
import { serverStages, type StagesSnapshot, type StopMessage } from './consumer.js';

export interface ProducerOptions {
  /** Socket path; default the library's default path. */
  path?: string;
  width: number;
  height: number;
  fps: number;
  name?: string;
  logger?: Logger;
  /** Called if presenting fails; the producer has stopped presenting by then. */
  onError?: (error: Error) => void;
  /** Draw with GL: the bundled ANGLE first, or the system's EGL first. Default: the CPU. */
  gl?: 'angle' | 'system' | 'cpu';
}

/** How the producer draws, for the status line. */
export interface ProducerRendering {
  /** 'cpu', or the GL renderer string. */
  renderer: string;
  /** 'cpu', 'memory-object' or 'readback'. */
  path: string;
  reason: string;
}

const FULL: PresentOptions = {};
/** Frames a late timer may still make up, at one per tick, before the schedule starts afresh. */
const CATCH_UP_FRAMES = 4;

export class PatternProducer {
  /** Frames presented so far. */
  presented = 0;
  /** Frames skipped because the pool was exhausted (SharedSurface.tryAcquire returned null). */
  skipped = 0;
  private readonly layout: PatternLayout;
  /** What each pooled buffer shows, so a reused buffer is repainted only where it differs. */
  private readonly shows = new Map<SurfaceBuffer, Scene>();
  /** The scene being drawn, and the one presented last (damage is relative to it). */
  private readonly next: Scene = { frame: 0, boxX: 0, boxY: 0, colour: 0, keys: [] };
  private readonly last: Scene = { frame: 0, boxX: 0, boxY: 0, colour: 0, keys: [] };
  /** Present options for 1..rects.length damage rectangles (the same Rect objects): no allocation per frame. */
  private readonly damageBy: PresentOptions[];
  private readonly rects;
  /** What input did to the picture. */
  readonly input: DemoInput;
  private readonly periodMs: number;
  private dueMs = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Rectangles a GL frame repainted (read back on the readback path). */
  private readonly repainted;
  private gl: { ctx: GpuContext; renderer: SurfaceRenderer } | null = null;
  /** How frames are drawn; `path` is known after the first frame. */
  readonly rendering: ProducerRendering = { renderer: 'cpu', path: 'cpu', reason: 'drawn on the CPU' };

  private constructor(
    readonly server: SurfaceServer,
    readonly surface: SharedSurface,
    private readonly onError: ((error: Error) => void) | undefined,
    fps: number,
  ) {
    this.layout = patternLayout(surface.width, surface.height);
    this.rects = sceneRects(this.layout);
    this.repainted = sceneRects(this.layout);
    this.damageBy = this.rects.map((_r, i) => ({ damage: this.rects.slice(0, i + 1) }));
    this.periodMs = 1000 / fps;
    this.input = new DemoInput(this.layout, surface);
    this.input.installCursor();
    server.on('input', (event) => this.input.handle(event, this.surface.sequence));
  }

  /** Opens GL for drawing; on failure stays on the CPU and records why. */
  private openGl(prefer: 'angle' | 'system'): void {
    try {
      const ctx = openGpuContext({ prefer });
      this.gl = { ctx, renderer: new SurfaceRenderer(ctx) };
      this.rendering.renderer = ctx.shortName;
      this.rendering.reason = '';
    } catch (error) {
      const first = (error instanceof Error ? error.message : String(error)).split('\n')[0];
      this.rendering.reason = `no usable GL, drawing on the CPU: ${first}`;
    }
  }

  static async start(options: ProducerOptions): Promise<PatternProducer> {
    if (!(options.fps > 0)) throw new RangeError(`fps must be positive; got ${options.fps}`);
    const server = await SurfaceServer.listen({
      path: options.path,
      name: options.name ?? 'surfacelink-pattern',
      logger: options.logger,
    });
    let producer: PatternProducer | undefined;
    try {
      const surface = server.createSurface({
        width: options.width,
        height: options.height,
        format: 'XRGB8888',
        label: 'surfacelink-pattern',
      });
      producer = new PatternProducer(server, surface, options.onError, options.fps);
      if (options.gl && options.gl !== 'cpu') producer.openGl(options.gl);
      producer.run();
      return producer;
    } catch (error) {
      // stop() closes the server and, once opened, the GL context too.
      if (producer) producer.stop();
      else server.close();
      throw error;
    }
  }

  get path(): string {
    return this.server.path;
  }

  get running(): boolean {
    return this.timer !== null;
  }

  private run(): void {
    this.tick(); // a first frame at once, so a client connecting now sees the pattern
    /*
     * A whole-millisecond interval ticks a little faster than the frame rate, and each tick
     * presents only when a frame is due: the rate holds without drifting, and a late tick
     * never causes a burst (one frame per tick at most).
     */
    this.timer = setInterval(() => this.tick(), Math.max(1, Math.floor(this.periodMs)));
  }

  private tick(): void {
    const now = performance.now();
    if (this.presented > 0 && now < this.dueMs) return;
    // A late tick is made up over the next (early) ones; only a long stall resets the clock.
    this.dueMs = now - this.dueMs > CATCH_UP_FRAMES * this.periodMs ? now + this.periodMs : this.dueMs + this.periodMs;
    try {
      // Every buffer in use at maxBuffers (viewers holding them, each within its deadline): skip this frame.
      const buffer = this.surface.tryAcquire();
      if (!buffer) {
        this.skipped++;
        return;
      }
      const frame = this.surface.sequence + 1;
      const scene = this.input.scene(frame, this.next);
      const shown = this.shows.get(buffer);
      if (this.gl) this.paint(buffer, scene, shown);
      else drawScene(this.layout, buffer.pixels(), buffer.stride, scene, shown);
      if (shown) copyScene(scene, shown);
      else this.shows.set(buffer, copyScene(scene, { frame: 0, boxX: 0, boxY: 0, colour: 0, keys: [] }));
      const count = frame <= 1 ? 0 : sceneDamage(this.layout, this.last, scene, this.rects);
      copyScene(scene, this.last);
      this.surface.present(buffer, count === 0 ? FULL : this.damageBy[count - 1]);
      this.presented++;
    } catch (error) {
      this.stopTimer();
      if (this.onError) this.onError(error as Error);
      else throw error;
    }
  }

  private paint(buffer: SurfaceBuffer, scene: Scene, shown: Scene | undefined): void {
    const renderer = this.gl!.renderer;
    const path = renderer.begin(buffer);
    if (this.presented === 0) {
      this.rendering.path = path;
      this.rendering.reason = renderer.reason;
    }
    const count = paintScene(this.layout, renderer, scene, shown, this.repainted);
    // Zero-copy: end() waits for GL. Readback: only what was repainted is copied into the buffer.
    renderer.end(this.repainted, count);
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Stops presenting, tells clients the server is shutting down, frees the surface. Idempotent. */
  stop(): void {
    this.stopTimer();
    this.server.close();
    this.gl?.renderer.destroy();
    this.gl?.ctx.close();
    this.gl = null;
  }
}

// ---- the demo's producer process --------------------------------------------------------

/** Messages the producer process sends its parent. */
export type ProducerMessage =
  | {
      type: 'ready';
      path: string;
      mechanism: string;
      rendering: ProducerRendering;
      viewer: { url: string; codecs: string } | null;
      viewerError: string | null;
    }
  | {
      type: 'stats';
      presented: number;
      clients: number;
      /** The server's per-stage durations for its first client (the demo's consumer), once it has one. */
      stages: StagesSnapshot | null;
    }
  | { type: 'final'; presented: number }
  | { type: 'error'; message: string };

function send(message: ProducerMessage, then?: () => void): void {
  if (process.send && process.connected) process.send(message, undefined, {}, () => then?.());
  else then?.();
}

/**
 * Runs as `surfacelink demo-producer --path P ...`, forked by `surfacelink demo`: listens,
 * says {type:'ready'} once the socket accepts, and on {type:'stop'} closes the server and
 * exits 0. If presenting fails or the parent vanishes it exits 1.
 */
export async function producerMain(options: {
  path: string;
  width: number;
  height: number;
  fps: number;
  gl?: 'angle' | 'system' | 'cpu';
  streamPort?: number | null;
}): Promise<void> {
  let producer: PatternProducer | null = null;
  let stream: StreamServer | null = null;
  let timer: NodeJS.Timeout | null = null;
  let finished = false;
  const finish = (code: number, message?: ProducerMessage): void => {
    if (finished) return;
    finished = true;
    if (timer) clearInterval(timer);
    stream?.close();
    producer?.stop();
    // Without a parent nobody else will remove the demo's private dir; rmdir only takes it if empty.
    if (!process.connected) {
      try {
        fs.rmdirSync(path.dirname(options.path));
      } catch {
        /* not empty, or already gone */
      }
    }
    const exit = (): void => process.exit(code);
    if (message) send(message, exit);
    else exit();
  };

  process.on('SIGINT', () => {}); // Ctrl-C reaches the whole process group; the parent decides
  process.on('SIGTERM', () => finish(143, { type: 'final', presented: producer?.presented ?? 0 }));
  process.on('disconnect', () => finish(1));
  process.on('message', (m: StopMessage) => {
    if (m?.type === 'stop') finish(0, { type: 'final', presented: producer?.presented ?? 0 });
  });

  try {
    producer = await PatternProducer.start({
      ...options,
      name: 'surfacelink-demo',
      onError: (e) =>
        finish(1, {
          type: 'error',
          message: `presenting failed: ${(e as { code?: string }).code ?? e.name}: ${e.message}`,
        }),
    });
  } catch (error) {
    const e = error as { code?: string; message?: string };
    return finish(1, {
      type: 'error',
      message: `cannot serve on ${options.path}: ${e.code ?? 'error'}: ${e.message ?? String(error)}`,
    });
  }
  if (finished) return void producer.stop(); // stopped, or failed on the very first frame
  if (options.gl !== 'cpu' && producer.rendering.path === 'cpu')
    process.stderr.write(`surfacelink demo producer: ${producer.rendering.reason}\n`);
  // Remote viewers (a browser on this host) watch the same surface while the consumer maps it.
  let viewerError: string | null = null;
  if (options.streamPort !== undefined && options.streamPort !== null) {
    try {
      stream = await StreamServer.start(producer.server, { port: options.streamPort });
    } catch (error) {
      const e = error as { code?: string; message?: string };
      viewerError = `${e.code ?? 'error'}: ${e.message ?? String(error)}`;
    }
    if (finished) return;
  }
  const viewer = stream ? { url: stream.url, codecs: stream.availableCodecs.join(', ') } : null;
  send({
    type: 'ready',
    path: producer.path,
    mechanism: producer.surface.mechanism,
    rendering: producer.rendering,
    viewer,
    viewerError,
  });
  timer = setInterval(() => {
    const clients = producer?.server.clients ?? [];
    const first = clients[0];
    send({
      type: 'stats',
      presented: producer?.presented ?? 0,
      clients: clients.length,
      stages: first ? serverStages(first.telemetry) : null,
    });
  }, 1000);
}
