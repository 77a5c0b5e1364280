/**
 * `surfacelink view`: connect to a server, say what was negotiated and why, then print the
 * consumer statistics once a second (and every five seconds the per-stage durations: present →
 * received → imported → released) until Ctrl-C or the server goes away; with --remote, the
 * same for a stream (docs/remote.md). Also home of the status line the demo shares.
 */
import { RemoteStreamClient, SurfaceClient, defaultAddress, type StreamCodec } from '../index.js';
import { FrameStats, consumeFrames, formatStages, formatStatus, formatSummary } from '../demo/consumer.js';

/** How often (in status updates, one a second) the per-stage durations get a line of their own. */
export const STAGES_EVERY = 5;

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
 * What both view commands share: the status line, Ctrl-C/SIGTERM, a stats timer and one
 * end() that stops everything once and resolves with the exit status.
 */
class ViewSession {
  readonly status = new StatusLine();
  /** Closes the connection; set once connected. */
  close: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private done = false;
  private readonly onSigint = (): void => this.end(SIGNAL_EXIT.SIGINT, `stopped${this.summary()}`);
  private readonly onSigterm = (): void => this.end(SIGNAL_EXIT.SIGTERM, `stopped${this.summary()}`);

  constructor(
    private readonly resolve: (code: number) => void,
    /** "; <totals>" for the final line, or ''. */
    private readonly summary: () => string,
  ) {
    process.on('SIGINT', this.onSigint);
    process.on('SIGTERM', this.onSigterm);
  }

  get ended(): boolean {
    return this.done;
  }

  every(ms: number, tick: () => void): void {
    this.timer = setInterval(tick, ms);
  }

  end(code: number, line: string, stream: NodeJS.WriteStream = process.stdout): void {
    if (this.done) return;
    this.done = true;
    if (this.timer) clearInterval(this.timer);
    process.off('SIGINT', this.onSigint);
    process.off('SIGTERM', this.onSigterm);
    this.close?.();
    this.status.finish(line, stream);
    this.resolve(code);
  }

  /** end(1) for a connect() that failed; `hint` says what to do about it, in terms of the command line. */
  failed(error: { code?: string; message?: string }, hint?: string): void {
    const what = `${error.code ?? 'error'}: ${error.message ?? String(error)}`;
    this.end(1, `surfacelink view: ${hint ? hint.replace('%s', what) : what}`, process.stderr);
  }
}

/**
 * Resolves with the exit status: 0 when the server shut down cleanly, 1 when the connection
 * failed or ended with an error, 130/143 when stopped by SIGINT/SIGTERM.
 */
export function runView(options: { path?: string }): Promise<number> {
  const socketPath = options.path ?? defaultAddress();
  const stats = new FrameStats();
  const summary = (): string => {
    const s = stats.snapshot();
    return s.total.frames > 0 ? `; ${formatSummary(s)}` : '';
  };
  return new Promise<number>((resolve) => {
    const view = new ViewSession(resolve, summary);
    const { status } = view;
    SurfaceClient.connect({ path: socketPath, name: `surfacelink-view-${process.pid}` }).then(
      (c) => {
        if (view.ended) return c.close();
        view.close = () => c.close();
        const n = c.negotiation;
        if (n) {
          status.log(
            `connected to ${socketPath}: server "${n.server.name}" (pid ${n.server.pid}), client id ${n.clientId}`,
          );
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
          if (info.code === 'E_SHUTDOWN') view.end(0, `the server shut down${summary()}`);
          else
            view.end(1, `surfacelink view: lost the server: ${info.code}: ${info.message}${summary()}`, process.stderr);
        });
        let ticks = 0;
        view.every(1000, () => {
          const snap = stats.snapshot();
          // The stages (present → received → imported → released) on a line of their own, every few seconds.
          if (snap.stages && snap.stages.frames > 0 && ticks++ % STAGES_EVERY === 0)
            status.log(formatStages('stages', snap.stages));
          status.update(formatStatus(snap));
        });
      },
      (error: { code?: string; message?: string }) =>
        view.failed(error, error.code === 'E_CONNECT' ? `%s${connectHint(options.path, socketPath)}` : undefined),
    );
  });
}

/**
 * `surfacelink view --remote <url>`: a RemoteStreamClient; prints the codec and why, then a
 * stats line once a second (fps, latency p50/p99 present → decoded, bitrate). Resolves with
 * the exit status as runView() does.
 */
export function runRemoteView(options: {
  url: string;
  token?: string;
  /** Where the token came from, in command-line terms ("--token", …), for the message when the server refuses it. */
  tokenSource?: string;
  codecs?: StreamCodec[];
  maxFps?: number;
  /** https/wss: the pinned certificate fingerprint (SHA-256). */
  fingerprint?: string;
  /** https/wss: a certificate (PEM) to trust. */
  ca?: string;
}): Promise<number> {
  let client: RemoteStreamClient | null = null;
  const summary = (): string =>
    client && client.stats.frames > 0 ? `; ${client.stats.frames} frames, ${formatBytes(client.stats.bytes)}` : '';
  return new Promise<number>((resolve) => {
    const view = new ViewSession(resolve, summary);
    const { status } = view;
    RemoteStreamClient.connect(options.url, {
      token: options.token,
      codecs: options.codecs,
      maxFps: options.maxFps,
      fingerprint: options.fingerprint,
      ca: options.ca,
      name: `surfacelink-view-${process.pid}`,
    }).then(
      (c) => {
        if (view.ended) return c.close();
        client = c;
        view.close = () => c.close();
        const w = c.welcome!;
        status.log(
          `connected to ${c.wsUrl}: server "${w.server}", ` +
            `surface ${w.surface.id} ${w.surface.width}x${w.surface.height} ${w.surface.format}`,
        );
        status.log(
          `codec ${w.codec}` +
            (w.encoder ? ` (${w.encoder}${w.bitrateKbps ? `, ${w.bitrateKbps} kbit/s` : ''})` : '') +
            `: ${w.reason}`,
        );
        c.on('resize', (r) => status.log(`surface resized to ${r.width}x${r.height}`));
        c.on('encoder', (e) => status.log(`server encoder ${e.state}: ${e.reason}`, process.stderr));
        c.on('error', (e) => status.log(`${e.code}: ${e.message}`, process.stderr));
        c.on('gone', (g) => view.end(0, `the surface is gone (${g.reason})${summary()}`));
        c.on('close', ({ code, reason }) =>
          code === 1000 || code === 1001
            ? view.end(0, `the server closed the stream${summary()}`)
            : view.end(
                1,
                `surfacelink view: the stream closed (${code}${reason ? `: ${reason}` : ''})${summary()}`,
                process.stderr,
              ),
        );
        view.every(1000, () => {
          const s = c.stats.snapshot();
          status.update(
            `${w.codec} | ${s.fps} fps | latency p50 ${fmtMs(s.latencyP50Ms)} p99 ${fmtMs(s.latencyP99Ms)} ` +
              `(transit ${fmtMs(s.transitP50Ms)}, decode ${fmtMs(s.decodeP50Ms)}) ` +
              `| ${fmtKbps(s.kbps)} | frames ${s.frames} | errors ${s.errors}`,
          );
          c.sendStats();
        });
      },
      (error: { code?: string; message?: string }) =>
        view.failed(
          error,
          // E_AUTH from the server's answer to the hello (an HTTP refusal is about the origin, not the token).
          error.code === 'E_AUTH' && options.tokenSource && !/refused the upgrade/.test(error.message ?? '')
            ? `the server refused the token from ${options.tokenSource} (%s); ` +
                `use the URL \`surfacelink serve --stream\` printed, or give its token with --token`
            : undefined,
        ),
    );
  });
}

/**
 * `view --stream`: negotiates stream.v1 over the local socket (no handles), prints why, then
 * watches the WebSocket endpoint the WELCOME named, with its token, as runRemoteView does.
 */
export async function runStreamView(options: {
  path?: string;
  codecs?: StreamCodec[];
  maxFps?: number;
}): Promise<number> {
  const socketPath = options.path ?? defaultAddress();
  let endpoint;
  try {
    const client = await SurfaceClient.connect({
      path: socketPath,
      mechanisms: ['stream.v1'],
      name: `surfacelink-view-${process.pid}`,
    });
    const n = client.negotiation!;
    endpoint = n.stream;
    client.close();
    process.stdout.write(`negotiated ${n.mechanism} on ${socketPath}: ${n.reason}\n`);
    if (!endpoint) throw new Error('the server chose stream.v1 but named no endpoint');
  } catch (error) {
    const e = error as { code?: string; message?: string };
    const hint =
      e.code === 'E_NO_MECHANISM'
        ? '\n  that server offers no stream: start it with `surfacelink serve --stream`, or leave out --stream'
        : e.code === 'E_CONNECT'
          ? connectHint(options.path, socketPath)
          : '';
    process.stderr.write(`surfacelink view: ${e.code ?? 'error'}: ${e.message ?? String(error)}${hint}\n`);
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

/** What to do when nothing listens on the socket, in command-line terms. */
function connectHint(given: string | undefined, socketPath: string): string {
  return given === undefined
    ? "\n  start a server with `surfacelink serve` (it listens there too), or give a running server's socket " +
        'with --path'
    : `\n  start a server with \`surfacelink serve --path ${shellQuote(socketPath)}\`, or check --path`;
}

/** `text` as one shell word: as it is when that is safe, else in single quotes. */
export function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
