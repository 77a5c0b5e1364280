/**
 * `surfacelink serve`: the demo's producer in the foreground, on a socket other programs
 * (or `surfacelink view`) can connect to, printing each client as it comes and goes with
 * the mechanism it got and why. With --stream it also serves remote viewers (StreamServer)
 * and prints the viewer URL.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  StreamServer,
  SurfaceServer,
  defaultAddress,
  type ClientInfo,
  type StreamClientInfo,
  type StreamTlsOption,
} from '../index.js';
import { QemuBridge, type QemuConsoleInfo } from '../bridges/qemu-dbus/bridge.js';
import { PatternProducer } from '../demo/producer.js';
import { ensurePrivateDir } from '../transport/index.js';
import { SIGNAL_EXIT, runView, shellQuote } from './view.js';

/** sun_path minus its terminating NUL: 108 bytes on Linux, 104 on macOS. */
export const MAX_SOCKET_PATH_BYTES = process.platform === 'darwin' ? 103 : 107;

const who = (c: ClientInfo): string => `client ${c.id} "${c.name}" (pid ${c.pid})`;
const remote = (c: StreamClientInfo): string => `stream client ${c.id} "${c.name}" (${c.remoteAddress})`;

export interface StreamServeOptions {
  host?: string;
  port?: number;
  /** HTTPS/WSS: a certificate and key (PEM), or 'self-signed'. */
  tls?: StreamTlsOption;
}

/** A running VM to serve instead of the test pattern: its QMP socket, or the D-Bus bus its display is on. */
export type QemuSource = { qmp: string } | { dbus: string; busName?: string };

/** What `serve` serves: the server, a line saying what it shows, and how to stop it. */
interface Source {
  server: SurfaceServer;
  describe(): string;
  /** What a stop line reports. */
  summary(): string;
  stop(): void;
}

const consoleLine = (c: QemuConsoleInfo): string =>
  c.surfaceId === null
    ? `console ${c.index} (${c.label}): no picture (${c.reason})`
    : `console ${c.index} (${c.label}): surface ${c.surfaceId}, ${c.width}x${c.height}, ${c.path}: ${c.reason}`;

/** A SurfaceServer with a QEMU bridge attached, as a Source. */
async function qemuSource(
  socketPath: string,
  qemu: QemuSource,
  onError: (e: Error) => void,
  command = 'serve',
): Promise<Source> {
  const logger = (level: string, message: string): void => {
    if (level === 'error' || level === 'warn') process.stderr.write(`surfacelink ${command}: ${message}\n`);
  };
  const server = await SurfaceServer.listen({ path: socketPath, name: 'surfacelink-qemu', logger });
  let bridge: QemuBridge;
  try {
    bridge = await QemuBridge.attach(server, { ...qemu, logger });
  } catch (error) {
    server.close();
    throw error;
  }
  // Until describe() prints every console's state, changes are part of that state; then each is a line.
  let described = false;
  bridge.on('console', (c) => described && process.stdout.write(`* ${consoleLine(c)}\n`));
  bridge.on('close', (e) => e.code !== 'E_CLOSED' && onError(e));
  return {
    server,
    describe: () => {
      described = true;
      const qemu = bridge.vm.qemu ? `QEMU ${bridge.vm.qemu}, ` : '';
      return [
        `serving VM "${bridge.vm.name}" (${qemu}${bridge.consoleList.length} console(s)) on ${server.path}`,
        ...bridge.consoleList.map((c) => `* ${consoleLine(c)}`),
      ].join('\n');
    },
    summary: () => `stopped (${bridge.consoleList.map(consoleLine).join('; ')})`,
    stop: () => {
      bridge.close();
      server.close();
    },
  };
}

/**
 * `surfacelink view --qemu …`: the bridge and a viewer in this one process, on a private socket:
 * what the VM's display delivers (mechanism, path, frames/s, latency), then stats once a second,
 * as `view` prints them. Nothing is served to other programs (that is `serve --qemu`).
 */
export async function runQemuView(qemu: QemuSource): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'surfacelink-view-'));
  let source: Source | null = null;
  try {
    let vmGone: Error | null = null;
    try {
      source = await qemuSource(
        path.join(dir, 'vm.sock'),
        qemu,
        (e) => {
          vmGone = e;
          source?.stop(); // the viewer sees the server go and ends
        },
        'view',
      );
    } catch (error) {
      const e = error as { code?: string; message?: string };
      process.stderr.write(`surfacelink view: ${e.code ?? 'error'}: ${e.message ?? String(error)}\n`);
      return 1;
    }
    process.stdout.write(`${source.describe().replace(/^serving/, 'viewing')}\n`);
    const status = await runView({ path: source.server.path });
    if (vmGone) {
      process.stderr.write(`surfacelink view: the VM went away: ${(vmGone as Error).message}\n`);
      return 1;
    }
    return status;
  } finally {
    source?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Resolves with the exit status: 1 if serving failed, 130/143 when stopped by SIGINT/SIGTERM. */
export async function runServe(options: {
  path?: string;
  width: number;
  height: number;
  fps: number;
  stream?: StreamServeOptions | null;
  /** Serve a running VM's display instead of the test pattern. */
  qemu?: QemuSource;
}): Promise<number> {
  const fail1 = (line: string): number => {
    process.stderr.write(`surfacelink serve: ${line}\n`);
    return 1;
  };
  /*
   * Without --path, the same default socket `surfacelink view` connects to (the library would
   * derive a path from the server's name instead). Its directory is made here, as the library
   * does for its own default, so that a problem with it can name the fix.
   */
  const socketPath = options.path ?? defaultAddress();
  // (On Windows the default is a named pipe: no directory, no length to check.)
  if (options.path === undefined && process.platform !== 'win32') {
    const problem = defaultDirProblem(path.dirname(socketPath));
    if (problem) return fail1(problem);
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES)
      return fail1(
        `the default socket path ${socketPath} is ${Buffer.byteLength(socketPath)} bytes, too long for a unix ` +
          `socket (at most ${MAX_SOCKET_PATH_BYTES}); choose a shorter one with --path`,
      );
  }
  let fail: ((error: Error) => void) | null = null;
  let early: Error | null = null; // a failure before anyone was listening for one
  const onError = (e: Error): void => (fail ? fail(e) : void (early = e));
  let source: Source;
  try {
    if (options.qemu) source = await qemuSource(socketPath, options.qemu, onError);
    else {
      const producer = await PatternProducer.start({
        ...options,
        path: socketPath,
        name: 'surfacelink-serve',
        // Disconnects and fallbacks arrive as events and are printed below; only the rest is logged.
        logger: (level, message) => level === 'error' && process.stderr.write(`surfacelink serve: ${message}\n`),
        onError,
      });
      const surface = producer.surface;
      source = {
        server: producer.server,
        describe: () =>
          `serving ${surface.width}x${surface.height} ${surface.format.name} at ${options.fps} fps ` +
          `via ${surface.mechanism} on ${producer.server.path}`,
        summary: () => `stopped after ${producer.presented} frames`,
        stop: () => producer.stop(),
      };
    }
  } catch (error) {
    const kind = process.platform === 'win32' ? 'pipe' : 'socket';
    const where = options.path === undefined ? `the default ${kind} ${socketPath}` : `--path ${socketPath}`;
    const why = socketProblem(socketPath, error);
    if (why) return fail1(`${where}: ${why}`);
    const e = error as { code?: string; message?: string };
    return fail1(`${e.code ?? 'error'}: ${e.message ?? String(error)}`);
  }
  const { server } = source;
  let streamServer: StreamServer | null = null;
  if (options.stream) {
    try {
      streamServer = await StreamServer.start(server, {
        host: options.stream.host,
        port: options.stream.port,
        tls: options.stream.tls,
        logger: (level, message) => level === 'error' && process.stderr.write(`surfacelink serve: ${message}\n`),
      });
    } catch (error) {
      source.stop();
      return fail1(streamProblem(options.stream, error));
    }
  }
  process.stdout.write(`${source.describe()}\n`);
  const viewArgs = server.path === defaultAddress() ? '' : ` --path ${shellQuote(server.path)}`;
  process.stdout.write(`view it with: surfacelink view${viewArgs}   (Ctrl-C stops)\n`);
  const stream = streamServer;
  if (stream) {
    for (const line of streamLines(stream)) process.stdout.write(`${line}\n`);
    stream.on('client', (c) => process.stdout.write(`+ ${remote(c)}: ${c.codec} (${c.reason})\n`));
    stream.on('clientGone', (c, why) =>
      process.stdout.write(
        `- ${remote(c)} left: ${why.code}: ${why.message} (${c.framesSent} frames sent, ${c.framesSkipped} ` +
          `skipped, ${c.bytesSent} bytes)\n`,
      ),
    );
  }
  server.on('client', (c) => process.stdout.write(`+ ${who(c)}: ${c.mechanism} (${c.reason})\n`));
  server.on('clientMechanism', (c) => process.stdout.write(`~ ${who(c)} now uses ${c.mechanism} (${c.reason})\n`));
  server.on('clientGone', (c, why) =>
    process.stdout.write(
      `- ${who(c)} left: ${why.code}: ${why.message} ` +
        `(${c.framesDelivered} frames delivered, ${c.framesSkipped} skipped)\n`,
    ),
  );

  return new Promise<number>((resolve) => {
    const stop = (code: number, line: string, out: NodeJS.WriteStream = process.stdout): void => {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      fail = null;
      streamServer?.close();
      source.stop();
      out.write(`${line}\n`);
      resolve(code);
    };
    const onSigint = (): void => stop(SIGNAL_EXIT.SIGINT, source.summary());
    const onSigterm = (): void => stop(SIGNAL_EXIT.SIGTERM, source.summary());
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);
    fail = (e) =>
      stop(
        1,
        `surfacelink serve: ${options.qemu ? 'the VM went away' : 'presenting failed'}: ` +
          `${(e as { code?: string }).code ?? e.name}: ${e.message}`,
        process.stderr,
      );
    if (early) fail(early);
  });
}

// ---- what went wrong, in terms of the command line --------------------------------------

/** The errno name of a failed call (the addon's errnoName, Node's code, or "(EXXX)" in a message). */
function errnoOf(error: unknown): string | undefined {
  for (
    let e = error as { errnoName?: unknown; code?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0;
    e && depth < 4;
    e = e.cause as typeof e, depth++
  ) {
    if (typeof e.errnoName === 'string') return e.errnoName;
    if (typeof e.code === 'string' && /^E[A-Z0-9_]+$/.test(e.code) && !e.code.startsWith('E_')) return e.code;
    const m = typeof e.message === 'string' ? /\((E[A-Z0-9]+)\)/.exec(e.message) : null;
    if (m) return m[1];
  }
  return undefined;
}

/** Why the default socket directory cannot be used, with the fix; null when it can. */
function defaultDirProblem(dir: string): string | null {
  try {
    ensurePrivateDir(dir);
    return null;
  } catch (error) {
    const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
    let st: fs.Stats | null = null;
    try {
      st = fs.lstatSync(dir);
    } catch {
      /* could not be created */
    }
    if (!st)
      return (
        `cannot create the default socket directory ${dir} ` +
        `(${errnoOf(error) ?? (error as Error).message}); choose a socket with --path`
      );
    if (!st.isDirectory())
      return `the default socket directory ${dir} is not a directory; remove it, or choose a socket with --path`;
    if (st.uid !== uid)
      return (
        `the default socket directory ${dir} belongs to uid ${st.uid}, not to you (uid ${uid}); remove ` +
        `it, or choose a socket with --path`
      );
    return (
      `the default socket directory ${dir} must be owned by you (uid ${uid}) and writable by no one ` +
      `else; run chmod 700 ${dir}, or choose a socket with --path`
    );
  }
}

/**
 * Why a server could not listen on `socketPath`, looked up on the file system, with the fix
 * (naming --path); null when there is nothing better to say than the library's message.
 */
export function socketProblem(socketPath: string, error: unknown): string | null {
  const errno = errnoOf(error);
  const code = (error as { code?: string }).code;
  if (process.platform === 'win32')
    return code === 'E_ADDRESS_IN_USE'
      ? 'another server is already listening on that pipe; stop it or choose another --path'
      : null;
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > MAX_SOCKET_PATH_BYTES)
    return (
      `${bytes} bytes is too long for a unix socket path (at most ${MAX_SOCKET_PATH_BYTES}); choose a ` +
      `shorter --path`
    );
  if (code === 'E_ADDRESS_IN_USE') {
    let socket = true;
    try {
      socket = fs.lstatSync(socketPath).isSocket();
    } catch {
      /* gone meanwhile */
    }
    return socket
      ? 'another server is already listening there; stop it or choose another --path'
      : 'a file that is not a socket is there; remove it or choose another --path';
  }
  // The nearest ancestor that exists: is the directory missing, or is something in the way?
  const dir = path.dirname(socketPath);
  for (let d = dir; ; d = path.dirname(d)) {
    let st: fs.Stats | null = null;
    try {
      st = fs.statSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EACCES')
        return `no permission to look into ${path.dirname(d)}; choose another --path`;
    }
    if (st) {
      if (!st.isDirectory()) return `${d} is not a directory; choose another --path`;
      if (d !== dir) return `the directory ${dir} does not exist; create it or choose another --path`;
      break;
    }
    if (d === path.dirname(d)) break;
  }
  if (errno === 'EACCES' || errno === 'EPERM')
    return `no permission to create a socket in ${dir}; choose a directory you can write to with --path`;
  if (errno === 'EROFS') return `${dir} is on a read-only file system; choose another --path`;
  if (errno === 'EEXIST') return 'something is already there; remove it or choose another --path';
  const message = ((error as { message?: string }).message ?? String(error)).replace(`${socketPath}: `, '');
  return errno ? `cannot create a socket there: ${message}; choose another --path` : null;
}

/** Why the stream server could not listen, naming --stream-host / --stream-port and the fix. */
function streamProblem(o: StreamServeOptions, error: unknown): string {
  const host = o.host ?? '127.0.0.1';
  const errno = errnoOf(error);
  if (errno === 'EADDRINUSE')
    return (
      `--stream-port ${o.port ?? 0}: ${hostForUrl(host)}:${o.port ?? 0} is already in use; choose ` +
      `another --stream-port, or leave it out for any free port`
    );
  if (errno === 'EADDRNOTAVAIL')
    return (
      `--stream-host ${host}: not an address of this machine; give one of its addresses, 127.0.0.1 (this ` +
      `host only) or 0.0.0.0 (every interface)`
    );
  if (errno === 'ENOTFOUND' || errno === 'EAI_AGAIN' || errno === 'EAI_NONAME')
    return (
      `--stream-host ${host}: no such host (it does not resolve); give an address of this machine, ` +
      `127.0.0.1 or 0.0.0.0`
    );
  if (errno === 'EACCES' && (o.port ?? 0) < 1024)
    return (
      `--stream-port ${o.port}: ports below 1024 need privileges; choose one from 1024 up, or leave it ` +
      `out for any free port`
    );
  const e = error as { code?: string; message?: string };
  return `cannot serve the stream: ${e.code ?? 'error'}: ${e.message ?? String(error)}`;
}

// ---- the viewer URLs ------------------------------------------------------------------------

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** 0.0.0.0 or :: (any spelling): bound to every interface, an address no browser can open. */
export function isWildcardHost(host: string): 'IPv4' | 'IPv6' | null {
  if (net.isIPv4(host)) return host === '0.0.0.0' ? 'IPv4' : null;
  if (net.isIPv6(host)) return /^[0:]+$/.test(host) ? 'IPv6' : null;
  return null;
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/**
 * The viewer URLs a browser can open for a stream bound to `host`:`port`: for a wildcard, the
 * loopback address first, then every non-internal address of this machine (IPv4 only for
 * 0.0.0.0; for :: IPv6 too, but no link-local ones, which a URL cannot carry without a zone);
 * otherwise `host` itself. `fragment` is the `#token=…` part.
 */
export function viewerUrls(
  host: string,
  port: number,
  fragment: string,
  interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces(),
  scheme: 'http' | 'https' = 'http',
): { url: string; where: string }[] {
  const url = (address: string): string => `${scheme}://${hostForUrl(address)}:${port}/${fragment}`;
  const wildcard = isWildcardHost(host);
  if (!wildcard) return [{ url: url(host), where: isLoopbackHost(host) ? 'this host' : host }];
  const urls = [{ url: url(wildcard === 'IPv4' ? '127.0.0.1' : '::1'), where: 'this host' }];
  for (const [name, addresses] of Object.entries(interfaces))
    for (const a of addresses ?? []) {
      if (a.internal || (a.family === 'IPv6' && (wildcard === 'IPv4' || a.scopeid || /^fe[89ab]/i.test(a.address))))
        continue;
      urls.push({ url: url(a.address), where: name });
    }
  return urls;
}

/** What serve prints about its stream: the URL(s) to open, the browser caveat, the codecs. */
function streamLines(stream: StreamServer): string[] {
  const fragment = stream.url.slice(stream.url.indexOf('#'));
  const cert = stream.certificate;
  const [first, ...others] = viewerUrls(stream.host, stream.port, fragment, undefined, cert ? 'https' : 'http');
  const lines = [`stream: ${first.url}`];
  const wildcard = isWildcardHost(stream.host);
  if (wildcard) {
    lines.push(
      `  bound to ${stream.host} (every ${wildcard === 'IPv4' ? 'IPv4 ' : ''}interface); from other machines:`,
    );
    if (others.length === 0) lines.push('    (none: no interface besides loopback has an address)');
    const width = Math.max(0, ...others.map((o) => o.url.length));
    for (const o of others) lines.push(`    ${o.url.padEnd(width)}   (${o.where})`);
  }
  const pin = cert?.selfSigned ? ` --fingerprint ${cert.fingerprint256}` : '';
  lines.push(`  open ${wildcard ? 'a' : 'that'} URL in a browser, or: surfacelink view --remote '${first.url}'${pin}`);
  if (cert)
    lines.push(
      cert.selfSigned
        ? `  certificate: self-signed (made now), SHA-256 ${cert.fingerprint256}; browsers warn until you accept ` +
            'it: accept it only if the fingerprint they show is this one'
        : `  certificate: SHA-256 ${cert.fingerprint256}, valid until ${cert.validTo}`,
    );
  else if (!isLoopbackHost(stream.host))
    lines.push(
      '  note: browsers decode H.264 (WebCodecs) only over HTTPS or on 127.0.0.1/localhost; from another machine over http:// the viewer falls back to tiles (docs/remote.md §8)',
    );
  lines.push(`  codecs: tiles${stream.h264Encoder ? `, h264 via ${stream.h264Encoder}` : ' (no H.264 encoder here)'}`);
  return lines;
}
