#!/usr/bin/env node
/**
 * The `surfacelink` command. `demo` runs the producer and the consumer as two separate
 * processes (forks of this same file, under hidden subcommands) so what it shows is real
 * cross-process sharing, not two objects in one heap.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { consumerMain } from '../demo/consumer.js';
import { producerMain } from '../demo/producer.js';
import { runDemo } from './demo.js';
import { defaultAddress } from '../index.js';

/** What --path names on this OS. */
const ADDRESS_WORD = process.platform === 'win32' ? 'named pipe' : 'socket path';
import { parseStreamUrl } from '../stream/client.js';
import { normalizeFingerprint, type StreamTlsOption } from '../stream/tls.js';
import { runDoctor } from './doctor.js';
import { MAX_SOCKET_PATH_BYTES, runQemuView, runServe, type QemuSource } from './serve.js';
import { runRemoteView, runStreamView, runView } from './view.js';

const VERSION = readVersion();

function readVersion(): string {
  // dist/cli/ and src/cli/ both sit two levels below package.json.
  try {
    return (
      (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: string })
        .version ?? 'unknown'
    );
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

interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
}

interface Command {
  summary: string;
  help: string;
  options: Record<string, OptionSpec>;
  hidden?: boolean;
  run(values: Values, positionals: string[]): Promise<number> | number;
}

const SIZE_OPTIONS = {
  width: { type: 'string' },
  height: { type: 'string' },
  fps: { type: 'string' },
} as const;

const COMMANDS: Record<string, Command> = {
  demo: {
    summary: 'producer and consumer in two processes, with live stats',
    help:
      `Usage: surfacelink demo [--width W] [--height H] [--fps N] [--duration S] [--gl G] ` +
      `[--stream-port P | --no-stream]

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
    options: {
      ...SIZE_OPTIONS,
      duration: { type: 'string' },
      gl: { type: 'string' },
      'stream-port': { type: 'string' },
      'no-stream': { type: 'boolean' },
    },
    run: (v) =>
      runDemo(
        {
          streamPort: v['no-stream'] === true ? null : intOption(v, 'stream-port', 0, 0, 65535),
          width: intOption(v, 'width', 1280, 1, 16384),
          height: intOption(v, 'height', 720, 1, 16384),
          fps: numberOption(v, 'fps', 60, 1, 1000),
          durationS: v.duration === undefined ? null : numberOption(v, 'duration', 0, 0.1, 1e9),
          gl: glOption(v),
        },
        __filename,
      ),
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
    help:
      `Usage: surfacelink serve [--path P] [--width W] [--height H] [--fps N] [--stream [--stream-host H] ` +
      `[--stream-port P] [--stream-self-signed | --stream-cert FILE --stream-key FILE]]
       surfacelink serve --qemu QMP-SOCKET | --qemu-dbus BUS-ADDRESS [--qemu-name NAME] [--path P] [--stream …]

Serves the demo's test pattern in the foreground and prints each client that connects
or leaves, with its mechanism and the reason. Ctrl-C stops it (exit 130).

With --qemu or --qemu-dbus it serves a running VM's display instead: every graphic console
of QEMU's -display dbus becomes a surface, viewers' keys and pointer go to the guest, and
the guest's hardware cursor is sent as a cursor plane (docs/qemu.md).

Options:
  --path P           ${ADDRESS_WORD} (default ${defaultAddress()})
  --width W          surface width (default 1280)
  --height H         surface height (default 720)
  --fps N            frames presented per second (default 60)
  --stream           also serve remote viewers over WebSocket (docs/remote.md) and print
                     the viewer URL (http://host:port/#token=…); the token is random unless
                     SURFACELINK_STREAM_TOKEN is set
  --stream-host H    address the stream binds (default 127.0.0.1: this host only)
  --stream-port P    its port (default: any free port)
  --stream-self-signed  serve HTTPS/WSS with a certificate made at start (for every address
                     of this server); prints its SHA-256 fingerprint to compare in the browser's
                     warning, or to pin with \`surfacelink view --remote URL --fingerprint FP\`.
                     Browsers decode H.264 only in secure contexts: over the network that is HTTPS
  --stream-cert FILE, --stream-key FILE
                     serve HTTPS/WSS with this certificate (PEM chain) and its private key (PEM)
  --qemu QMP-SOCKET  the VM's QMP socket (QEMU run with -display dbus,p2p=yes and
                     -qmp unix:QMP-SOCKET,server=on,wait=off): attaches over QMP as libvirt does
  --qemu-dbus ADDR   the D-Bus bus QEMU's display is on (-display dbus,addr=ADDR; libvirt's
                     <graphics type='dbus'/>), e.g. unix:path=/run/…/dbus.sock
  --qemu-name NAME   QEMU's name on that bus (default org.qemu)
`,
    options: {
      path: { type: 'string' },
      ...SIZE_OPTIONS,
      qemu: { type: 'string' },
      'qemu-dbus': { type: 'string' },
      'qemu-name': { type: 'string' },
      stream: { type: 'boolean' },
      'stream-host': { type: 'string' },
      'stream-port': { type: 'string' },
      'stream-self-signed': { type: 'boolean' },
      'stream-cert': { type: 'string' },
      'stream-key': { type: 'string' },
    },
    run: (v) => {
      const streamOnly = ['stream-host', 'stream-port', 'stream-self-signed', 'stream-cert', 'stream-key'];
      const given = streamOnly.filter((o) => v[o] !== undefined).map((o) => `--${o}`);
      if (v.stream !== true && given.length > 0)
        throw new UsageError(`${given.join(' and ')} ${given.length > 1 ? 'need' : 'needs'} --stream`);
      return runServe({
        qemu: qemuOption(v),
        path: socketPathOption(v),
        width: intOption(v, 'width', 1280, 1, 16384),
        height: intOption(v, 'height', 720, 1, 16384),
        fps: numberOption(v, 'fps', 60, 1, 1000),
        stream:
          v.stream === true
            ? {
                host: stringOption(v, 'stream-host'),
                port: intOption(v, 'stream-port', 0, 0, 65535),
                tls: tlsOption(v),
              }
            : null,
      });
    },
  },
  view: {
    summary: 'connect and print stats',
    help: `Usage: surfacelink view [--path P]
       surfacelink view --remote URL [--token T] [--fingerprint FP | --ca FILE] [--codec h264|tiles] [--max-fps N]
       surfacelink view --stream [--path P] [--codec h264|tiles] [--max-fps N]
       surfacelink view --qemu QMP-SOCKET | --qemu-dbus BUS-ADDRESS [--qemu-name NAME]

Connects to a server, prints the negotiated mechanism and why, then a stats line once a
second (as the demo does; the counter check reads "n/a" unless the server draws the test
pattern, as \`surfacelink serve\` does).

With --remote, connects to a stream server instead (\`surfacelink serve --stream\` prints
its URL), prints the codec and why, then once a second: fps, latency p50/p99 (present on
the server → decoded here, across hosts via clock sync), bitrate and the codec.

With --stream, negotiates stream.v1 on the local socket (no handles: what a sandboxed
viewer does), then follows the WebSocket endpoint and token the server answers with.

With --qemu or --qemu-dbus, attaches to a running VM's display itself (the bridge of
\`serve --qemu\`, in this process, serving nothing to others) and prints what each console
delivers and how, then the same stats (docs/qemu.md). To see the picture, use
\`surfacelink serve --qemu … --stream\` and open the URL it prints.

Options:
  --path P        ${ADDRESS_WORD} (default ${defaultAddress()})
  --remote URL    ws://host:port/stream, or the viewer URL http://host:port/#token=…
  --token T       the stream's token (default: the URL's #token=, else $SURFACELINK_STREAM_TOKEN)
  --fingerprint FP  https/wss: trust the server's certificate only if its SHA-256 fingerprint is FP
                  (what \`serve --stream-self-signed\` prints); checked before the token is sent
  --ca FILE       https/wss: also trust this certificate (PEM), e.g. the server's own
  --stream        negotiate stream.v1 on the socket, then watch as with --remote
  --codec C       ask for one codec only (default: h264, then tiles)
  --max-fps N     ask for at most N frames per second
  --qemu QMP-SOCKET  a VM run with -display dbus,p2p=yes and -qmp unix:QMP-SOCKET,server=on,wait=off
  --qemu-dbus ADDR   the D-Bus bus its display is on (-display dbus,addr=ADDR)
  --qemu-name NAME   QEMU's name on that bus (default org.qemu)

Exit status: 0 when the server shut down cleanly; 1 when connecting failed or the
connection ended with an error (its code is printed); 130 after Ctrl-C.
`,
    options: {
      path: { type: 'string' },
      remote: { type: 'string' },
      stream: { type: 'boolean' },
      token: { type: 'string' },
      fingerprint: { type: 'string' },
      ca: { type: 'string' },
      codec: { type: 'string' },
      'max-fps': { type: 'string' },
      qemu: { type: 'string' },
      'qemu-dbus': { type: 'string' },
      'qemu-name': { type: 'string' },
    },
    run: (v) => {
      const vm = qemuOption(v);
      if (vm) {
        for (const other of ['path', 'remote', 'stream', 'token', 'fingerprint', 'ca', 'codec', 'max-fps'])
          if (v[other] !== undefined) throw new UsageError(`--${other} does not go with --qemu / --qemu-dbus`);
        return runQemuView(vm);
      }
      const url = stringOption(v, 'remote');
      const codec = stringOption(v, 'codec');
      if (codec !== undefined && codec !== 'h264' && codec !== 'tiles')
        throw new UsageError(`--codec must be h264 or tiles; got ${codec}`);
      const maxFps = v['max-fps'] === undefined ? undefined : numberOption(v, 'max-fps', 30, 0.1, 1000);
      if (v.stream === true) {
        if (url !== undefined || v.token !== undefined)
          throw new UsageError('--stream takes its endpoint and token from the server; leave out --remote and --token');
        return runStreamView({ path: socketPathOption(v), codecs: codec === undefined ? undefined : [codec], maxFps });
      }
      if (url === undefined && (v.fingerprint !== undefined || v.ca !== undefined))
        throw new UsageError('--fingerprint and --ca need --remote (an https:// or wss:// URL)');
      if (url === undefined) {
        if (v.token !== undefined || v.codec !== undefined || v['max-fps'] !== undefined)
          throw new UsageError('--token, --codec and --max-fps need --remote or --stream');
        return runView({ path: socketPathOption(v) });
      }
      if (v.path !== undefined) throw new UsageError('--path and --remote exclude each other');
      return runRemoteView({
        url,
        ...remoteToken(v, url),
        ...remoteTrust(v),
        codecs: codec === undefined ? undefined : [codec],
        maxFps,
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
      if (!command || command.hidden) throw unknownCommand(name);
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

/** A mistake on the command line: reported as one line plus where to look, exit 2. */
class UsageError extends Error {}

type Values = Record<string, string | boolean | undefined>;

/**
 * Parses `args` against `options`. Unlike util.parseArgs, a string option takes the next
 * argument even when it begins with a dash (`--fps -5`, `--token -x…`), so the value is judged
 * by its own check, which names the flag, the range and the value; `--fps --width 64` is a
 * missing value (a value that begins with two dashes goes as `--opt=--value`). Every mistake
 * is a UsageError in our words.
 */
function parseCommandLine(
  args: string[],
  options: Record<string, OptionSpec>,
  allowPositionals: boolean,
): { values: Values; positionals: string[] } {
  const values: Values = {};
  const positionals: string[] = [];
  const shorts = new Map(Object.entries(options).flatMap(([name, o]) => (o.short ? [[o.short, name] as const] : [])));
  const isKnownOption = (arg: string): boolean =>
    arg.startsWith('--') ? Object.hasOwn(options, arg.slice(2).split('=')[0]) : arg.length === 2 && shorts.has(arg[1]);
  const unknown = (arg: string): UsageError => {
    const near = arg.startsWith('--') ? closest(arg.slice(2), Object.keys(options)) : undefined;
    return new UsageError(`unknown option ${arg}${near ? ` (did you mean --${near}?)` : ''}`);
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      if (!Object.hasOwn(options, name)) throw unknown(eq < 0 ? arg : arg.slice(0, eq));
      if (options[name].type === 'boolean') {
        if (eq >= 0) throw new UsageError(`--${name} takes no value`);
        values[name] = true;
      } else if (eq >= 0) values[name] = arg.slice(eq + 1);
      else {
        // A value may begin with one dash (-5, a token); one that begins with two is taken for an option.
        const next = args[i + 1];
        if (next === undefined || next.startsWith('--') || isKnownOption(next))
          throw new UsageError(
            `--${name} needs a value` +
              (next?.startsWith('--') && !isKnownOption(next) && next !== '--'
                ? ` (for one that begins with --, write --${name}=${next})`
                : ''),
          );
        values[name] = next;
        i++;
      }
    } else if (arg.startsWith('-') && arg.length > 1) {
      const name = arg.length === 2 ? shorts.get(arg[1]) : undefined;
      if (name === undefined || options[name].type !== 'boolean') throw unknown(arg);
      values[name] = true;
    } else if (allowPositionals) positionals.push(arg);
    else throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
  }
  return { values, positionals };
}

/** The candidate nearest to `word` (optimal string alignment distance), if it is near enough to be a typo. */
function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}

/** --qemu QMP / --qemu-dbus ADDR [--qemu-name N] (serve and view): the VM, or undefined. */
function qemuOption(v: Values): QemuSource | undefined {
  if (v.qemu !== undefined && v['qemu-dbus'] !== undefined)
    throw new UsageError('give the VM with one of --qemu or --qemu-dbus, not both');
  if (v['qemu-name'] !== undefined && v['qemu-dbus'] === undefined)
    throw new UsageError('--qemu-name needs --qemu-dbus');
  const qmp = stringOption(v, 'qemu');
  if (qmp !== undefined) return { qmp };
  const bus = stringOption(v, 'qemu-dbus');
  return bus === undefined ? undefined : { dbus: bus, busName: stringOption(v, 'qemu-name') };
}

function stringOption(v: Values, name: string): string | undefined {
  const value = v[name];
  if (value === '') throw new UsageError(`--${name} needs a value`);
  return typeof value === 'string' ? value : undefined;
}

function requiredOption(v: Values, name: string): string {
  const value = stringOption(v, name);
  if (value === undefined) throw new UsageError(`--${name} is required`);
  return value;
}

function numberOption(v: Values, name: string, fallback: number, min: number, max: number, kind = 'a number'): number {
  const text = stringOption(v, name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (
    text.trim() === '' ||
    !Number.isFinite(value) ||
    value < min ||
    value > max ||
    (kind !== 'a number' && !Number.isInteger(value))
  )
    throw new UsageError(`--${name} must be ${kind} in ${min}..${max}; got ${text}`);
  return value;
}

function intOption(v: Values, name: string, fallback: number, min: number, max: number): number {
  return numberOption(v, name, fallback, min, max, 'a whole number');
}

/** --path, which must fit a unix socket address (the library's own message would not name the flag). */
function socketPathOption(v: Values): string | undefined {
  const value = stringOption(v, 'path');
  const bytes = value === undefined ? 0 : Buffer.byteLength(value);
  if (bytes > MAX_SOCKET_PATH_BYTES)
    throw new UsageError(
      `--path ${value}: ${bytes} bytes is too long for a unix socket path (at most ${MAX_SOCKET_PATH_BYTES}); ` +
        `choose a shorter --path`,
    );
  return value;
}

/**
 * view --remote's token and where it came from: --token, else the URL's #token=, else
 * $SURFACELINK_STREAM_TOKEN. Without one there is nothing to try: say how to give one.
 */
/** `serve --stream`'s TLS: `--stream-self-signed`, or `--stream-cert` + `--stream-key` (PEM files, read now). */
function tlsOption(v: Values): StreamTlsOption | undefined {
  const cert = stringOption(v, 'stream-cert');
  const key = stringOption(v, 'stream-key');
  if (v['stream-self-signed'] === true) {
    if (cert !== undefined || key !== undefined)
      throw new UsageError('--stream-self-signed and --stream-cert/--stream-key exclude each other');
    return 'self-signed';
  }
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined)
    throw new UsageError('--stream-cert and --stream-key go together (the certificate and its private key, PEM)');
  return { cert: readPem(cert, '--stream-cert'), key: readPem(key, '--stream-key') };
}

function readPem(file: string, flag: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`${flag} ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** `view --remote`'s trust for https/wss: `--fingerprint` (a pin) or `--ca` (a PEM file, read now). */
function remoteTrust(v: Values): { fingerprint?: string; ca?: string } {
  const fingerprint = stringOption(v, 'fingerprint');
  const ca = stringOption(v, 'ca');
  if (fingerprint !== undefined && normalizeFingerprint(fingerprint) === null)
    throw new UsageError(
      `--fingerprint must be a SHA-256 fingerprint (64 hex digits, colons optional); got ${fingerprint}`,
    );
  return {
    ...(fingerprint !== undefined ? { fingerprint } : {}),
    ...(ca !== undefined ? { ca: readPem(ca, '--ca') } : {}),
  };
}

function remoteToken(v: Values, url: string): { token: string; tokenSource: string } {
  let fromUrl: string | null;
  try {
    fromUrl = parseStreamUrl(url).token;
  } catch {
    throw new UsageError(
      `--remote ${url} is not a stream URL: give the viewer URL that \`surfacelink serve --stream\` printed (http://host:port/#token=…), or ws://host:port/stream`,
    );
  }
  const flag = stringOption(v, 'token');
  if (flag !== undefined) return { token: flag, tokenSource: '--token' };
  if (fromUrl) return { token: fromUrl, tokenSource: "the URL's #token=" };
  const env = process.env.SURFACELINK_STREAM_TOKEN;
  if (env) return { token: env, tokenSource: '$SURFACELINK_STREAM_TOKEN' };
  throw new UsageError(
    `--remote ${url} has no token: pass the whole viewer URL that \`surfacelink serve --stream\` printed ` +
      `(it ends in #token=…), or --token T, or set SURFACELINK_STREAM_TOKEN`,
  );
}

function print(text: string): number {
  process.stdout.write(text);
  return 0;
}

/** A usage error: what is wrong in one line, then where to read more. Exit status 2. */
function usageError(message: string, command?: string): number {
  process.stderr.write(
    `surfacelink${command ? ` ${command}` : ''}: ${message}\nsee surfacelink${command ? ` ${command}` : ''} --help\n`,
  );
  return 2;
}

function unknownCommand(name: string): UsageError {
  const near = closest(
    name,
    Object.keys(COMMANDS).filter((c) => !COMMANDS[c].hidden),
  );
  return new UsageError(`unknown command ${JSON.stringify(name)}${near ? ` (did you mean ${near}?)` : ''}`);
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    process.stderr.write(`surfacelink: no command given\n\n${USAGE}`);
    return 2;
  }
  if (first === '-h' || first === '--help') return print(USAGE);
  if (first === '-V' || first === '--version') return print(`${VERSION}\n`);
  const command = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
  if (!command) return usageError(first.startsWith('-') ? `unknown option ${first}` : unknownCommand(first).message);
  // --help wins over any other mistake on the line.
  const end = rest.indexOf('--');
  if ((end < 0 ? rest : rest.slice(0, end)).some((a) => a === '--help' || a === '-h')) return print(command.help);
  try {
    const parsed = parseCommandLine(
      rest,
      { ...command.options, help: { type: 'boolean', short: 'h' } },
      first === 'help',
    );
    return await command.run(parsed.values, parsed.positionals);
  } catch (error) {
    // `help nope` is about the top-level command list.
    if (error instanceof UsageError)
      return first === 'help' ? usageError(error.message) : usageError(error.message, first);
    throw error;
  }
}

// ---- demo: the parent process --------------------------------------------------------------

/** --gl angle | system | cpu (default angle). */
function glOption(v: Values): 'angle' | 'system' | 'cpu' {
  const value = v.gl ?? 'angle';
  if (value !== 'angle' && value !== 'system' && value !== 'cpu')
    throw new UsageError(`--gl must be angle, system or cpu; got ${value}`);
  return value;
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
