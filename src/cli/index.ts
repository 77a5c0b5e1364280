#!/usr/bin/env node
/**
 * The `surfacelink` command. `demo` runs the producer and the consumer as two separate
 * processes (forks of this same file, under hidden subcommands) so what it shows is real
 * cross-process sharing, not two objects in one heap.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { counterVerdict, consumerMain, formatStatus, formatSummary, type ConsumerMessage, type StatsSnapshot } from '../demo/consumer.js';
import { producerMain, type ProducerMessage } from '../demo/producer.js';
import { defaultSocketPath } from '../index.js';
import { runDoctor } from './doctor.js';
import { runServe } from './serve.js';
import { SIGNAL_EXIT, StatusLine, runRemoteView, runStreamView, runView } from './view.js';

const VERSION = readVersion();

function readVersion(): string {
  // dist/cli/ and src/cli/ both sit two levels below package.json.
  try {
    return (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const USAGE = `surfacelink ${VERSION}: share frames between processes

Usage: surfacelink <command> [options]

Commands:
  demo      run a producer and a consumer as two processes; show a live status line
  doctor    report what this machine supports (native addon, host, mechanisms)
  serve     serve the test pattern on a socket; print clients as they come and go
  view      connect to a server; print the negotiation and stats once a second
  help      show this help, or \`surfacelink help <command>\`

Options:
  -h, --help       show help (also after a command: surfacelink demo --help)
  -V, --version    print the version

Exit status:
  0    success
  1    failure (the reason is printed on stderr)
  2    usage error (unknown command or option, bad value)
  130  stopped by Ctrl-C (SIGINT), after shutting down cleanly
  143  stopped by SIGTERM, after shutting down cleanly
`;

interface Command {
  summary: string;
  help: string;
  options: NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  hidden?: boolean;
  run(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number> | number;
}

const SIZE_OPTIONS = {
  width: { type: 'string' },
  height: { type: 'string' },
  fps: { type: 'string' },
} as const;

const COMMANDS: Record<string, Command> = {
  demo: {
    summary: 'producer and consumer in two processes, with live stats',
    help: `Usage: surfacelink demo [--width W] [--height H] [--fps N] [--duration S] [--gl G] [--stream-port P | --no-stream]

Starts a producer and a consumer as two separate processes sharing a socket in a fresh
private temp dir, and shows one status line: mechanism, resolution, fps seen by the
consumer, handoff latency p50/p99 (present → receipt, CLOCK_MONOTONIC), frames dropped
(gaps in the sequence), and whether the frame counter drawn in the pixels matched each
frame's sequence number. On a terminal the line is rewritten in place; otherwise a line
is printed every second. A summary line follows at the end.

Options:
  --width W       surface width (default 1280)
  --height H      surface height (default 720)
  --fps N         frames presented per second (default 60)
  --duration S    stop after S seconds of frames (default: run until Ctrl-C)
  --gl G          angle (default): both processes use the bundled ANGLE, the producer to
                  render the pattern, the consumer to import and draw each frame; system:
                  the system's EGL (Mesa) first; cpu: no GL. Without a usable GL a process
                  says why and falls back to the CPU.
  --stream-port P the producer also serves remote viewers (docs/remote.md) on 127.0.0.1:P
                  (default: any free port) and the demo prints the browser viewer's URL
  --no-stream     no remote viewers

Exit status: 0 when the duration elapsed, frames arrived and every counter matched;
1 when a process died, no frames arrived or a counter did not match; 130 after Ctrl-C
and 143 after SIGTERM (both processes are stopped and the temp dir removed first).
`,
    options: { ...SIZE_OPTIONS, duration: { type: 'string' }, gl: { type: 'string' }, 'stream-port': { type: 'string' }, 'no-stream': { type: 'boolean' } },
    run: (v) =>
      runDemo({
        streamPort: v['no-stream'] === true ? null : intOption(v, 'stream-port', 0, 0, 65535),
        width: intOption(v, 'width', 1280, 1, 16384),
        height: intOption(v, 'height', 720, 1, 16384),
        fps: numberOption(v, 'fps', 60, 1, 1000),
        durationS: v.duration === undefined ? null : numberOption(v, 'duration', 0, 0.1, 1e9),
        gl: glOption(v),
      }),
  },
  doctor: {
    summary: 'what this machine supports',
    help: `Usage: surfacelink doctor [--json]

Prints the platform, Node version, whether the native addon loaded (and from where, or
why not), this host's boot and machine id, the default socket path, and every sharing
mechanism with why it is or is not available; then GL: which EGL loaded (bundled ANGLE
first, and system EGL first), from which path, its renderer and version, and each GL
import/render/export path with why it is or is not available; then the H.264
encoders GStreamer offers remote viewers (hardware first), each with why.

Options:
  --json    print the same as JSON

Exit status: 0 when at least one mechanism is available, else 1.
`,
    options: { json: { type: 'boolean' } },
    run: (v) => runDoctor({ json: v.json === true, version: VERSION }),
  },
  serve: {
    summary: 'serve the test pattern',
    help: `Usage: surfacelink serve [--path P] [--width W] [--height H] [--fps N] [--stream [--stream-host H] [--stream-port P]]

Serves the demo's test pattern in the foreground and prints each client that connects
or leaves, with its mechanism and the reason. Ctrl-C stops it (exit 130).

Options:
  --path P           socket path (default ${defaultSocketPath()})
  --width W          surface width (default 1280)
  --height H         surface height (default 720)
  --fps N            frames presented per second (default 60)
  --stream           also serve remote viewers over WebSocket (docs/remote.md) and print
                     the viewer URL (http://host:port/#token=…); the token is random unless
                     SURFACELINK_STREAM_TOKEN is set
  --stream-host H    address the stream binds (default 127.0.0.1: this host only)
  --stream-port P    its port (default: any free port)
`,
    options: { path: { type: 'string' }, ...SIZE_OPTIONS, stream: { type: 'boolean' }, 'stream-host': { type: 'string' }, 'stream-port': { type: 'string' } },
    run: (v) => {
      if (v.stream !== true && (v['stream-host'] !== undefined || v['stream-port'] !== undefined)) throw new UsageError('--stream-host and --stream-port need --stream');
      return runServe({
        path: stringOption(v, 'path'),
        width: intOption(v, 'width', 1280, 1, 16384),
        height: intOption(v, 'height', 720, 1, 16384),
        fps: numberOption(v, 'fps', 60, 1, 1000),
        stream: v.stream === true ? { host: stringOption(v, 'stream-host'), port: intOption(v, 'stream-port', 0, 0, 65535) } : null,
      });
    },
  },
  view: {
    summary: 'connect and print stats',
    help: `Usage: surfacelink view [--path P]
       surfacelink view --remote URL [--token T] [--codec h264|tiles] [--max-fps N]
       surfacelink view --stream [--path P] [--codec h264|tiles] [--max-fps N]

Connects to a server, prints the negotiated mechanism and why, then a stats line once a
second (as the demo does; the counter check reads "n/a" unless the server draws the test
pattern, as \`surfacelink serve\` does).

With --remote, connects to a stream server instead (\`surfacelink serve --stream\` prints
its URL), prints the codec and why, then once a second: fps, latency p50/p99 (present on
the server → decoded here, across hosts via clock sync), bitrate and the codec.

With --stream, negotiates stream.v1 on the local socket (no handles: what a sandboxed
viewer does), then follows the WebSocket endpoint and token the server answers with.

Options:
  --path P        socket path (default ${defaultSocketPath()})
  --remote URL    ws://host:port/stream, or the viewer URL http://host:port/#token=…
  --token T       the stream's token (default: the URL's #token=, else $SURFACELINK_STREAM_TOKEN)
  --stream        negotiate stream.v1 on the socket, then watch as with --remote
  --codec C       ask for one codec only (default: h264, then tiles)
  --max-fps N     ask for at most N frames per second

Exit status: 0 when the server shut down cleanly; 1 when connecting failed or the
connection ended with an error (its code is printed); 130 after Ctrl-C.
`,
    options: { path: { type: 'string' }, remote: { type: 'string' }, stream: { type: 'boolean' }, token: { type: 'string' }, codec: { type: 'string' }, 'max-fps': { type: 'string' } },
    run: (v) => {
      const url = stringOption(v, 'remote');
      const codec = stringOption(v, 'codec');
      if (codec !== undefined && codec !== 'h264' && codec !== 'tiles') throw new UsageError(`--codec must be h264 or tiles; got "${codec}"`);
      if (v.stream === true) {
        if (url !== undefined || v.token !== undefined) throw new UsageError('--stream takes its endpoint and token from the server; leave out --remote and --token');
        return runStreamView({
          path: stringOption(v, 'path'),
          codecs: codec === undefined ? undefined : [codec],
          maxFps: v['max-fps'] === undefined ? undefined : numberOption(v, 'max-fps', 30, 0.1, 1000),
        });
      }
      if (url === undefined) {
        if (v.token !== undefined || v.codec !== undefined || v['max-fps'] !== undefined) throw new UsageError('--token, --codec and --max-fps need --remote or --stream');
        return runView({ path: stringOption(v, 'path') });
      }
      if (v.path !== undefined) throw new UsageError('--path and --remote exclude each other');
      return runRemoteView({
        url,
        token: stringOption(v, 'token') ?? (url.includes('#token=') ? undefined : process.env.SURFACELINK_STREAM_TOKEN),
        codecs: codec === undefined ? undefined : [codec],
        maxFps: v['max-fps'] === undefined ? undefined : numberOption(v, 'max-fps', 30, 0.1, 1000),
      });
    },
  },
  help: {
    summary: 'show help',
    help: 'Usage: surfacelink help [command]\n',
    options: {},
    run: (_v, positionals) => {
      const name = positionals[0];
      if (name === undefined) return print(USAGE);
      const command = COMMANDS[name];
      if (!command || command.hidden) throw new UsageError(`unknown command "${name}"`);
      return print(command.help);
    },
  },
  'demo-producer': {
    summary: 'internal: the demo producer process',
    help: 'Internal: forked by `surfacelink demo`.\n',
    hidden: true,
    options: { path: { type: 'string' }, ...SIZE_OPTIONS, gl: { type: 'string' }, 'stream-port': { type: 'string' } },
    run: async (v) => {
      await producerMain({
        path: requiredOption(v, 'path'),
        streamPort: v['stream-port'] === undefined ? null : intOption(v, 'stream-port', 0, 0, 65535),
        width: intOption(v, 'width', 1280, 1, 16384),
        height: intOption(v, 'height', 720, 1, 16384),
        fps: numberOption(v, 'fps', 60, 1, 1000),
        gl: glOption(v),
      });
      return -1; // it exits by itself when told to stop
    },
  },
  'demo-consumer': {
    summary: 'internal: the demo consumer process',
    help: 'Internal: forked by `surfacelink demo`.\n',
    hidden: true,
    options: { path: { type: 'string' }, gl: { type: 'string' } },
    run: async (v) => {
      await consumerMain({ path: requiredOption(v, 'path'), gl: glOption(v) });
      return -1;
    },
  },
};

// ---- arguments ----------------------------------------------------------------------------

class UsageError extends Error {}

function stringOption(v: Record<string, string | boolean | undefined>, name: string): string | undefined {
  const value = v[name];
  if (value === '') throw new UsageError(`--${name} needs a value`);
  return typeof value === 'string' ? value : undefined;
}

function requiredOption(v: Record<string, string | boolean | undefined>, name: string): string {
  const value = stringOption(v, name);
  if (value === undefined) throw new UsageError(`--${name} is required`);
  return value;
}

function numberOption(v: Record<string, string | boolean | undefined>, name: string, fallback: number, min: number, max: number): number {
  const text = stringOption(v, name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < min || value > max) throw new UsageError(`--${name} must be a number from ${min} to ${max}; got "${text}"`);
  return value;
}

function intOption(v: Record<string, string | boolean | undefined>, name: string, fallback: number, min: number, max: number): number {
  const value = numberOption(v, name, fallback, min, max);
  if (!Number.isInteger(value)) throw new UsageError(`--${name} must be a whole number; got "${v[name]}"`);
  return value;
}

function print(text: string): number {
  process.stdout.write(text);
  return 0;
}

function usageError(message: string, help: string): number {
  process.stderr.write(`surfacelink: ${message}\n\n${help}`);
  return 2;
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) return usageError('no command given', USAGE);
  if (first === '-h' || first === '--help') return print(USAGE);
  if (first === '-V' || first === '--version') return print(`${VERSION}\n`);
  const command = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
  if (!command) return usageError(first.startsWith('-') ? `unknown option ${first}` : `unknown command "${first}"`, USAGE);
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: first === 'help',
      strict: true,
    });
  } catch (error) {
    return usageError((error as Error).message, command.help);
  }
  if (parsed.values.help) return print(command.help);
  try {
    return await command.run(parsed.values as Record<string, string | boolean | undefined>, parsed.positionals);
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message, command.help);
    throw error;
  }
}

// ---- demo: the parent process --------------------------------------------------------------

/** --gl angle | system | cpu (default angle). */
function glOption(v: Record<string, string | boolean | undefined>): 'angle' | 'system' | 'cpu' {
  const value = v.gl ?? 'angle';
  if (value !== 'angle' && value !== 'system' && value !== 'cpu') throw new UsageError(`--gl must be angle, system or cpu; got ${JSON.stringify(value)}`);
  return value;
}

interface DemoOptions {
  width: number;
  height: number;
  fps: number;
  durationS: number | null;
  gl: 'angle' | 'system' | 'cpu';
  /** Port for remote viewers (0: any), or null for none. */
  streamPort: number | null;
}

type Role = 'producer' | 'consumer';
type StopReason = 'duration' | 'failure' | 'SIGINT' | 'SIGTERM';

/** How long a child may take to start, and to exit once told to stop. */
const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 3_000;

function runDemo(o: DemoOptions): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'surfacelink-demo-'));
  const socketPath = path.join(dir, 'demo.sock');
  const status = new StatusLine();
  const children = new Map<Role, ChildProcess>();
  const exited = new Map<Role, Promise<void>>();
  const lastError = new Map<Role, string>();
  const failures: string[] = [];
  let state: 'starting' | 'running' | 'stopping' = 'starting';
  let stats: StatsSnapshot | null = null;
  let presented = 0;
  let producerGl = o.gl === 'cpu' ? 'producer drew on the CPU (--gl cpu)' : 'producer GL unknown';
  let consumerGl = o.gl === 'cpu' ? 'consumer GL off (--gl cpu)' : 'consumer GL not reported';
  let durationTimer: NodeJS.Timeout | null = null;
  let stopReason: StopReason | null = null;

  // Whatever happens to this process, its children must not outlive it.
  const killAll = (): void => {
    for (const child of children.values()) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', killAll);

  return new Promise<number>((resolve) => {
    const spawn = (role: Role, args: string[]): ChildProcess => {
      // execArgv is inherited, so this also works when the CLI itself runs under a loader.
      const child = fork(__filename, [`demo-${role}`, '--path', socketPath, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.set(role, child);
      exited.set(
        role,
        new Promise<void>((done) =>
          // 'close' rather than 'exit': it comes after the last IPC message (the totals) was read.
          child.once('close', (code, signal) => {
            done();
            if (state === 'stopping') return;
            /*
             * A signal sent to the whole process group (kill -TERM -pgid, timeout(1)) can end
             * a child before our own handler has run; wait a moment before calling it a
             * failure. The pause also lets the other child report what it saw.
             */
            setTimeout(() => {
              if (stopReason === 'SIGINT' || stopReason === 'SIGTERM') return;
              const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
              const why = lastError.get(role);
              failures.push(`the ${role} (pid ${child.pid}) ${how}${why ? `: ${why}` : ''}`);
              void stop('failure');
            }, 100);
          }),
        ),
      );
      child.on('error', (error) => {
        failures.push(`the ${role} process failed: ${error.message}`);
        void stop('failure');
      });
      return child;
    };

    const onProducer = (m: ProducerMessage): void => {
      switch (m.type) {
        case 'ready':
          if (state !== 'starting' || children.has('consumer')) return;
          producerGl = m.rendering.path === 'cpu' ? 'producer drew on the CPU' : `producer rendered with GL (${m.rendering.path}) on ${m.rendering.renderer}`;
          status.log(`${producerGl}: ${m.rendering.reason}`);
          if (m.viewer) status.log(`watch it in a browser: ${m.viewer.url} (codecs: ${m.viewer.codecs}; this host only)`);
          else if (m.viewerError) status.log(`no browser viewer: ${m.viewerError}`);
          spawn('consumer', ['--gl', o.gl]).on('message', onConsumer);
          return;
        case 'stats':
        case 'final':
          presented = m.presented;
          return;
        case 'error':
          lastError.set('producer', m.message);
          return;
      }
    };

    const onConsumer = (m: ConsumerMessage): void => {
      switch (m.type) {
        case 'negotiated':
          status.log(`consumer negotiated ${m.mechanism}: ${m.reason}`);
          if (state === 'starting') {
            state = 'running';
            clearTimeout(startTimer);
            if (o.durationS !== null) durationTimer = setTimeout(() => void stop('duration'), o.durationS * 1000);
          }
          return;
        case 'stats':
          stats = m.stats;
          if (state === 'running') status.update(formatStatus(m.stats));
          return;
        case 'final':
          stats = m.stats;
          return;
        case 'gl':
          consumerGl = m.report.path === 'off' ? `consumer GL off (${m.report.reason.split(':')[0]})` : `consumer imported and drew with GL (${m.report.path}) on ${m.report.renderer}`;
          status.log(`${consumerGl}: ${m.report.reason}`);
          return;
        case 'warning':
          status.log(`consumer: ${m.message}`, process.stderr);
          return;
        case 'error':
          lastError.set('consumer', m.message);
          return;
      }
    };

    const onSigint = (): void => void stop('SIGINT');
    const onSigterm = (): void => void stop('SIGTERM');

    /** Asks a child to stop, and kills it if it has not exited within the grace period. */
    const stopChild = async (role: Role): Promise<void> => {
      const child = children.get(role);
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.send({ type: 'stop' });
      else child.kill('SIGTERM');
      const grace = setTimeout(() => {
        failures.push(`the ${role} (pid ${child.pid}) did not exit within ${STOP_GRACE_MS} ms of being told to stop; killed it`);
        child.kill('SIGKILL');
      }, STOP_GRACE_MS);
      await exited.get(role);
      clearTimeout(grace);
    };

    let stopping: Promise<void> | null = null;
    let stopStartedMs = 0;
    const stop = (reason: StopReason): Promise<void> => {
      if (stopping) {
        /*
         * Another Ctrl-C while stopping means stop waiting for anyone. But timeout(1) and
         * `kill -INT -pgid` signal us twice at once (directly and via the process group),
         * so only a signal that comes a while after the first counts.
         */
        if ((reason === 'SIGINT' || reason === 'SIGTERM') && Date.now() - stopStartedMs > 500) killAll();
        return stopping;
      }
      state = 'stopping';
      stopReason = reason;
      stopStartedMs = Date.now();
      stopping = (async () => {
        clearTimeout(startTimer);
        if (durationTimer) clearTimeout(durationTimer);
        // The consumer first, so its totals are from a live stream, not a shutdown.
        await stopChild('consumer');
        await stopChild('producer');
        fs.rmSync(dir, { recursive: true, force: true });
        process.off('SIGINT', onSigint);
        process.off('SIGTERM', onSigterm);
        process.off('exit', killAll);
        resolve(finish(reason));
      })();
      return stopping;
    };

    const finish = (reason: StopReason): number => {
      const s: StatsSnapshot | null = stats;
      const gl = `; ${producerGl}; ${consumerGl}`;
      const summary = s && s.total.frames > 0 ? `${formatSummary(s)}; producer presented ${presented}${gl}` : `no frames received (producer presented ${presented})${gl}`;
      status.finish(`surfacelink demo: ${summary}`);
      for (const f of failures) process.stderr.write(`surfacelink demo: ${f}\n`);
      if (failures.length > 0) return 1;
      const verdict = s ? counterVerdict(s) : 'waiting';
      // The demo's producer always draws the counter, so one that cannot be read is wrong too.
      if (verdict === 'BAD' || verdict === 'unreadable') {
        process.stderr.write('surfacelink demo: the counter read back from the pixels did not always match the frame sequence\n');
        return 1;
      }
      if (reason === 'SIGINT' || reason === 'SIGTERM') return SIGNAL_EXIT[reason];
      if (!s || s.total.frames === 0) {
        process.stderr.write('surfacelink demo: the consumer received no frames\n');
        return 1;
      }
      return 0;
    };

    const startTimer = setTimeout(() => {
      failures.push(`the demo did not start within ${START_TIMEOUT_MS / 1000} s (the consumer never negotiated)`);
      void stop('failure');
    }, START_TIMEOUT_MS);

    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);
    status.log(`surfacelink demo: ${o.width}x${o.height} at ${o.fps} fps, producer and consumer in separate processes, socket ${socketPath}`);
    spawn('producer', ['--width', String(o.width), '--height', String(o.height), '--fps', String(o.fps), '--gl', o.gl, ...(o.streamPort === null ? [] : ['--stream-port', String(o.streamPort)])]).on('message', onProducer);
  });
}

// ---- entry ----------------------------------------------------------------------------------

main(process.argv.slice(2)).then(
  (code) => {
    // -1: a demo child, which exits on its own terms.
    if (code < 0) return;
    process.exitCode = code;
    // Nothing should keep the loop alive now; if something does, do not hang on it.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (error: unknown) => {
    const e = error as { code?: string; message?: string; stack?: string };
    process.stderr.write(`surfacelink: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(error)}\n`);
    if (process.env.SURFACELINK_DEBUG && e.stack) process.stderr.write(`${e.stack}\n`);
    process.exitCode = 1;
  },
);
