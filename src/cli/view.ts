/**
 * `surfacelink view`: connect to a server, say what was negotiated and why, then print the
 * consumer statistics once a second until Ctrl-C or the server goes away; with --remote, the
 * same for a stream (docs/remote.md). Also home of the status line the demo shares.
 */
import { RemoteStreamClient, SurfaceClient, defaultSocketPath, type StreamCodec } from '../index.js';
import { FrameStats, consumeFrames, formatStatus, formatSummary } from '../demo/consumer.js';

/**
 * One status line. On a terminal it is rewritten in place (so it must never wrap); into a
 * pipe or file every update is its own line, which is what a log wants.
 */
export class StatusLine {
  private current = '';
  private readonly tty: boolean;

  constructor(private readonly out: NodeJS.WriteStream = process.stdout) {
    this.tty = out.isTTY === true;
  }

  update(text: string): void {
    if (!this.tty) {
      this.out.write(`${text}\n`);
      return;
    }
    const columns = this.out.columns || 80;
    this.current = text.length >= columns ? `${text.slice(0, columns - 2)}…` : text;
    this.out.write(`\r\x1b[2K${this.current}`);
  }

  /** A message of its own: above the status line on a terminal, which is then redrawn. */
  log(text: string, stream: NodeJS.WriteStream = process.stdout): void {
    if (this.tty && this.current) this.out.write('\r\x1b[2K');
    stream.write(`${text}\n`);
    if (this.tty && this.current) this.out.write(this.current);
  }

  /** Replaces the status line with a final line and leaves the cursor below it. */
  finish(text: string, stream: NodeJS.WriteStream = process.stdout): void {
    if (this.tty && this.current) this.out.write('\r\x1b[2K');
    this.current = '';
    stream.write(`${text}\n`);
  }
}

export const SIGNAL_EXIT: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Resolves with the exit status: 0 when the server shut down cleanly, 1 when the connection
 * failed or ended with an error, 130/143 when stopped by SIGINT/SIGTERM.
 */
export function runView(options: { path?: string }): Promise<number> {
  const socketPath = options.path ?? defaultSocketPath();
  const status = new StatusLine();
  const stats = new FrameStats();
  return new Promise<number>((resolve) => {
    let client: SurfaceClient | null = null;
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    const end = (code: number, line: string, stream: NodeJS.WriteStream = process.stdout): void => {
      if (done) return;
      done = true;
      if (timer) clearInterval(timer);
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      client?.close();
      status.finish(line, stream);
      resolve(code);
    };
    const summary = (): string => {
      const s = stats.snapshot();
      return s.total.frames > 0 ? `; ${formatSummary(s)}` : '';
    };
    const onSigint = (): void => end(SIGNAL_EXIT.SIGINT, `stopped${summary()}`);
    const onSigterm = (): void => end(SIGNAL_EXIT.SIGTERM, `stopped${summary()}`);
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);

    SurfaceClient.connect({ path: socketPath, name: `surfacelink-view-${process.pid}` }).then(
      (c) => {
        if (done) return c.close();
        client = c;
        const n = c.negotiation;
        if (n) {
          status.log(`connected to ${socketPath}: server "${n.server.name}" (pid ${n.server.pid}), client id ${n.clientId}`);
          status.log(`mechanism ${n.mechanism}: ${n.reason}`);
          for (const r of n.rejected) status.log(`  not ${r.name}: ${r.reason}`);
        }
        consumeFrames(c, stats);
        let first = true;
        c.on('negotiated', (m) => {
          // The first event repeats what connect() already told us.
          if (first && m.mechanism === n?.mechanism && m.reason === n?.reason) return void (first = false);
          first = false;
          status.log(`mechanism now ${m.mechanism}: ${m.reason}`);
        });
        c.on('importFailed', (e) => status.log(`import failed: ${e.code}: ${e.message}`, process.stderr));
        c.on('warning', (e) => status.log(`server warning: ${e.code}: ${e.message}`, process.stderr));
        c.on('disconnect', (info) => {
          if (info.code === 'E_SHUTDOWN') end(0, `the server shut down${summary()}`);
          else end(1, `surfacelink view: lost the server: ${info.code}: ${info.message}${summary()}`, process.stderr);
        });
        timer = setInterval(() => status.update(formatStatus(stats.snapshot())), 1000);
      },
      (error: { code?: string; message?: string }) => end(1, `surfacelink view: ${error.code ?? 'error'}: ${error.message ?? String(error)}`, process.stderr),
    );
  });
}

/**
 * `surfacelink view --remote <url>`: a RemoteStreamClient; prints the codec and why, then a
 * stats line once a second (fps, latency p50/p99 present → decoded, bitrate). Resolves with
 * the exit status as runView() does.
 */
export function runRemoteView(options: { url: string; token?: string; codecs?: StreamCodec[]; maxFps?: number }): Promise<number> {
  const status = new StatusLine();
  return new Promise<number>((resolve) => {
    let client: RemoteStreamClient | null = null;
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    const end = (code: number, line: string, stream: NodeJS.WriteStream = process.stdout): void => {
      if (done) return;
      done = true;
      if (timer) clearInterval(timer);
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      client?.close();
      status.finish(line, stream);
      resolve(code);
    };
    const summary = (): string => (client && client.stats.frames > 0 ? `; ${client.stats.frames} frames, ${formatBytes(client.stats.bytes)}` : '');
    const onSigint = (): void => end(SIGNAL_EXIT.SIGINT, `stopped${summary()}`);
    const onSigterm = (): void => end(SIGNAL_EXIT.SIGTERM, `stopped${summary()}`);
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);

    RemoteStreamClient.connect(options.url, { token: options.token, codecs: options.codecs, maxFps: options.maxFps, name: `surfacelink-view-${process.pid}` }).then(
      (c) => {
        if (done) return c.close();
        client = c;
        const w = c.welcome!;
        status.log(`connected to ${c.wsUrl}: server "${w.server}", surface ${w.surface.id} ${w.surface.width}x${w.surface.height} ${w.surface.format}`);
        status.log(`codec ${w.codec}${w.encoder ? ` (${w.encoder}${w.bitrateKbps ? `, ${w.bitrateKbps} kbit/s` : ''})` : ''}: ${w.reason}`);
        c.on('resize', (r) => status.log(`surface resized to ${r.width}x${r.height}`));
        c.on('encoder', (e) => status.log(`server encoder ${e.state}: ${e.reason}`, process.stderr));
        c.on('error', (e) => status.log(`${e.code}: ${e.message}`, process.stderr));
        c.on('gone', (g) => end(0, `the surface is gone (${g.reason})${summary()}`));
        c.on('close', ({ code, reason }) =>
          code === 1000 || code === 1001 ? end(0, `the server closed the stream${summary()}`) : end(1, `surfacelink view: the stream closed (${code}${reason ? `: ${reason}` : ''})${summary()}`, process.stderr),
        );
        timer = setInterval(() => {
          const s = c.stats.snapshot();
          status.update(`${w.codec} | ${s.fps} fps | latency p50 ${fmtMs(s.latencyP50Ms)} p99 ${fmtMs(s.latencyP99Ms)} | ${fmtKbps(s.kbps)} | frames ${s.frames} | errors ${s.errors}`);
          c.sendStats();
        }, 1000);
      },
      (error: { code?: string; message?: string }) => end(1, `surfacelink view: ${error.code ?? 'error'}: ${error.message ?? String(error)}`, process.stderr),
    );
  });
}

/**
 * `view --stream`: negotiates stream.v1 over the local socket (no handles), prints why, then
 * watches the WebSocket endpoint the WELCOME named, with its token, as runRemoteView does.
 */
export async function runStreamView(options: { path?: string; codecs?: StreamCodec[]; maxFps?: number }): Promise<number> {
  const socketPath = options.path ?? defaultSocketPath();
  let endpoint;
  try {
    const client = await SurfaceClient.connect({ path: socketPath, mechanisms: ['stream.v1'], name: `surfacelink-view-${process.pid}` });
    const n = client.negotiation!;
    endpoint = n.stream;
    client.close();
    process.stdout.write(`negotiated ${n.mechanism} on ${socketPath}: ${n.reason}\n`);
    if (!endpoint) throw new Error('the server chose stream.v1 but named no endpoint');
  } catch (error) {
    const e = error as { code?: string; message?: string };
    process.stderr.write(`surfacelink view: ${e.code ?? 'error'}: ${e.message ?? String(error)}\n`);
    return 1;
  }
  return runRemoteView({ url: endpoint.wsUrl, token: endpoint.token, codecs: options.codecs, maxFps: options.maxFps });
}

function fmtMs(ms: number): string {
  return Number.isFinite(ms) ? `${ms.toFixed(1)} ms` : '–';
}

function fmtKbps(kbps: number): string {
  return kbps >= 1000 ? `${(kbps / 1000).toFixed(2)} Mbit/s` : `${kbps.toFixed(0)} kbit/s`;
}

function formatBytes(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}
