/**
 * Real QEMU for tests: finding QEMU 7.2 (Debian 12's qemu-system-x86) and 10.0 (bookworm-backports,
 * unpacked by scripts/qemu/fetch-qemu10.sh), building the test guest (test/qemu/guest/), starting a
 * TCG VM on `-display dbus,p2p=yes` with QMP and the guest's debug console, and QMP/HMP commands
 * over a plain unix socket (no fd passing; test/qemu/dbus-probe.py does that part).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const HERE = __dirname;

/** QEMU versions the tests boot. */
export type QemuVersion = '7.2' | '10.0';

/** A QEMU binary and how to run it. */
export interface QemuBinary {
  version: QemuVersion;
  /** Path of qemu-system-x86_64. */
  path: string;
  /** Environment additions (QEMU_MODULE_DIR for the unpacked 10.0). */
  env: Record<string, string>;
  /** Arguments that must come first (the firmware search path for the unpacked 10.0). */
  args: string[];
}

/** The bookworm-backports QEMU 10.0 that scripts/qemu/fetch-qemu10.sh unpacks, and where. */
export const QEMU10_VERSION = '1:10.0.2+ds-2+deb13u1~bpo12+1';

/** Where scripts/qemu/fetch-qemu10.sh unpacks QEMU 10.0 (same defaults as the script). */
export function qemu10Root(): string {
  if (process.env.SURFACELINK_QEMU10_DIR) return process.env.SURFACELINK_QEMU10_DIR;
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cache, 'surfacelink-build', 'qemu-10.0.2');
}

/** The command that fetches QEMU 10.0 (for skip and failure messages). */
export const FETCH_QEMU10 = 'scripts/qemu/fetch-qemu10.sh';

/** Finds QEMU `version`; returns a reason instead when it is not there. */
export function findQemu(version: QemuVersion): { qemu: QemuBinary } | { reason: string } {
  if (version === '7.2') {
    const bin = process.env.SURFACELINK_QEMU72 ?? '/usr/bin/qemu-system-x86_64';
    if (!fs.existsSync(bin)) return { reason: `${bin} missing (apt-get install qemu-system-x86)` };
    return { qemu: { version, path: bin, env: {}, args: [] } };
  }
  const root = qemu10Root();
  const stamp = path.join(root, '.complete');
  const bin = path.join(root, 'usr/bin/qemu-system-x86_64');
  if (!fs.existsSync(stamp) || !fs.existsSync(bin)) return { reason: `QEMU 10.0 not in ${root}: run ${FETCH_QEMU10}` };
  return {
    qemu: {
      version,
      path: bin,
      env: { QEMU_MODULE_DIR: path.join(root, 'usr/lib/x86_64-linux-gnu/qemu') },
      // Its own option ROMs and keymaps first, then bookworm's SeaBIOS (the backport ships none).
      args: ['-L', path.join(root, 'usr/share/qemu'), '-L', '/usr/share/seabios'],
    },
  };
}

/** `qemu-system-x86_64 --version`'s first line. */
export function qemuVersionLine(qemu: QemuBinary): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(qemu.path, [...qemu.args, '--version'], { env: { ...process.env, ...qemu.env } }, (err, out) =>
      err ? reject(err) : resolve(out.split('\n')[0]),
    ),
  );
}

let guestBuild: Promise<string> | undefined;

/**
 * Builds the test guest with test/qemu/build-guest.sh (once per process; the script itself keeps
 * one ELF per hash of the sources and compiler) and resolves with the ELF's path. Rejects with the
 * script's output when gcc is missing or the build fails.
 */
export function buildGuest(): Promise<string> {
  guestBuild ??= new Promise((resolve, reject) =>
    execFile('bash', [path.join(HERE, 'build-guest.sh')], (err, stdout, stderr) => {
      if (err) reject(new Error(`test guest build failed: ${(stderr || err.message).trim()}`));
      else resolve(stdout.trim().split('\n').pop()!);
    }),
  );
  return guestBuild;
}

/** How to start a VM; see {@link startQemu}. */
export interface StartOptions {
  /** Which QEMU: a version ({@link findQemu}; throws with its reason when missing) or a binary. */
  qemu: QemuBinary | QemuVersion;
  /** The guest ELF (default: {@link buildGuest}). */
  kernel?: string;
  /** Guest command line, e.g. `w=800 h=600 mode=box` (see testkern.c). */
  params?: string;
  /** `-vga` model (default std). */
  vga?: 'std' | 'vmware' | 'virtio' | 'qxl' | 'cirrus' | 'none';
  /** `-display` value (default `dbus,p2p=yes,gl=off`). */
  display?: string;
  /** Add `-device qemu-xhci -device usb-tablet` (an absolute pointer). */
  tablet?: boolean;
  /** Guest memory in MiB (default 128). */
  memoryMiB?: number;
  /** How many QMP sockets (default 1); each takes one client at a time. */
  qmpSockets?: number;
  /** QEMU trace event patterns (`-trace`), written to `<dir>/trace.log`. */
  trace?: string[];
  /** More arguments, appended last. */
  extraArgs?: string[];
  /** Milliseconds to wait for the QMP socket (default 10000). */
  startTimeoutMs?: number;
  /**
   * The debug console on a unix socket this process reads (instead of a file), so that each
   * `frame N` line is timestamped on arrival ({@link RunningQemu.frameTimeNs}): the guest writes it
   * right after presenting frame N. For latency measurements.
   */
  debugClock?: boolean;
}

/** A running VM; see {@link startQemu}. */
export interface RunningQemu {
  pid: number;
  /** Its private directory (QMP sockets, debug.log, trace.log, qemu.log). */
  dir: string;
  /** First QMP socket. */
  qmpPath: string;
  /** All QMP sockets. */
  qmpPaths: string[];
  /** The guest's debug console output so far (port 0xE9). */
  debugLog(): string;
  /**
   * Resolves with the first match of `re` in the debug log after character `from` (default 0);
   * rejects after `timeoutMs` or when QEMU exits.
   */
  waitForDebug(re: RegExp, timeoutMs?: number, from?: number): Promise<RegExpExecArray>;
  /** Highest `frame N` the guest has logged, or -1. */
  lastFrame(): number;
  /** Resolves once the guest has logged `frame N` for some N >= `frame`. */
  waitForFrame(frame: number, timeoutMs?: number): Promise<void>;
  /** QEMU's resident set size in bytes (VmRSS). */
  rss(): number;
  /** With `debugClock`: when (process.hrtime, CLOCK_MONOTONIC ns) the line `frame N` arrived. */
  frameTimeNs(frame: number): bigint | undefined;
  /** QEMU's stderr so far. */
  stderr(): string;
  /** Runs a QMP command on the first QMP socket (connect, negotiate, run, close). */
  qmp(command: string, args?: Record<string, unknown>): Promise<any>;
  /** Runs an HMP command through QMP `human-monitor-command` and returns its output. */
  hmp(commandLine: string): Promise<string>;
  /** QMP `screendump` (PPM) into a file in {@link dir}; resolves with its contents. */
  screendump(): Promise<Buffer>;
  /** Kills QEMU and removes {@link dir}. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

/**
 * Starts `qemu-system-x86_64 -machine q35 -accel tcg -m 128 -nodefaults -vga std
 * -display dbus,p2p=yes,gl=off -qmp unix:…,server=on,wait=off -kernel <guest> -append <params>
 * -debugcon file:…/debug.log` and resolves once the QMP socket exists. QEMU is killed on
 * {@link RunningQemu.stop} and when the test process exits.
 */
export async function startQemu(opts: StartOptions): Promise<RunningQemu> {
  let qemu: QemuBinary;
  if (typeof opts.qemu === 'string') {
    const found = findQemu(opts.qemu);
    if ('reason' in found) throw new Error(found.reason);
    qemu = found.qemu;
  } else {
    qemu = opts.qemu;
  }
  const kernel = opts.kernel ?? (await buildGuest());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-qemu-'));
  const qmpPaths = Array.from({ length: opts.qmpSockets ?? 1 }, (_, i) => path.join(dir, `qmp${i || ''}.sock`));
  const debugPath = path.join(dir, 'debug.log');
  let debugText = '';
  const frameTimes = new Map<number, bigint>();
  let debugServer: net.Server | null = null;
  let debugArgs = ['-debugcon', `file:${debugPath}`];
  if (opts.debugClock) {
    // QEMU connects to us (a client chardev), so nothing the guest writes before we read is lost.
    const socketPath = path.join(dir, 'debug.sock');
    let partial = '';
    debugServer = net.createServer((conn) =>
      conn.on('data', (d: Buffer) => {
        const now = process.hrtime.bigint();
        const text = partial + d.toString('latin1');
        const lines = text.split('\n');
        partial = lines.pop()!;
        for (const line of lines) {
          debugText += line + '\n';
          const m = /^frame (\d+)$/.exec(line);
          if (m) frameTimes.set(Number(m[1]), now);
        }
        if (frameTimes.size > 100000) frameTimes.clear();
      }),
    );
    await new Promise<void>((resolve, reject) => debugServer!.listen(socketPath, resolve).once('error', reject));
    debugArgs = ['-chardev', `socket,id=dbg,path=${socketPath}`, '-device', 'isa-debugcon,iobase=0xe9,chardev=dbg'];
  }
  const args = [
    ...qemu.args,
    ...['-machine', 'q35', '-accel', 'tcg', '-m', String(opts.memoryMiB ?? 128), '-nodefaults'],
    ...['-vga', opts.vga ?? 'std', '-display', opts.display ?? 'dbus,p2p=yes,gl=off'],
    ...qmpPaths.flatMap((p) => ['-qmp', `unix:${p},server=on,wait=off`]),
    ...['-kernel', kernel, '-append', opts.params ?? '', ...debugArgs],
    ...(opts.tablet ? ['-device', 'qemu-xhci', '-device', 'usb-tablet'] : []),
    ...(opts.trace?.length ? [...opts.trace.flatMap((t) => ['-trace', t]), '-D', path.join(dir, 'trace.log')] : []),
    ...(opts.extraArgs ?? []),
  ];
  const child = spawn(qemu.path, args, {
    env: { ...process.env, ...qemu.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  installExitHook();
  running.add(child);
  let stderr = '';
  let exited: string | null = null;
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.on('exit', (code, signal) => {
    exited = `QEMU exited (${code ?? signal})`;
    running.delete(child);
  });
  const spawnError = new Promise<never>((_, reject) => child.on('error', reject));

  const deadline = Date.now() + (opts.startTimeoutMs ?? 10000);
  while (!qmpPaths.every((p) => fs.existsSync(p))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      debugServer?.close();
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`${exited ?? 'no QMP socket in time'}: ${args.join(' ')}\n${stderr}`);
    }
    await Promise.race([sleep(20), spawnError]);
  }

  const debugLog = (): string => {
    if (debugServer) return debugText;
    try {
      return fs.readFileSync(debugPath, 'latin1');
    } catch {
      return '';
    }
  };
  const vm: RunningQemu = {
    pid: child.pid!,
    dir,
    qmpPath: qmpPaths[0],
    qmpPaths,
    debugLog,
    async waitForDebug(re, timeoutMs = 10000, from = 0) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(debugLog().slice(from));
        if (m) return m;
        if (exited) throw new Error(`${exited} before ${re} in the debug log:\n${tail(debugLog())}\n${stderr}`);
        if (Date.now() > end) throw new Error(`no ${re} in the debug log within ${timeoutMs} ms:\n${tail(debugLog())}`);
        await sleep(20);
      }
    },
    lastFrame() {
      const frames = [...debugLog().matchAll(/^frame (\d+)$/gm)];
      return frames.length ? Number(frames[frames.length - 1][1]) : -1;
    },
    async waitForFrame(frame, timeoutMs = 10000) {
      const end = Date.now() + timeoutMs;
      while (vm.lastFrame() < frame) {
        if (exited) throw new Error(`${exited} before frame ${frame}:\n${tail(debugLog())}\n${stderr}`);
        if (Date.now() > end) throw new Error(`no frame ${frame} within ${timeoutMs} ms:\n${tail(debugLog())}`);
        await sleep(20);
      }
    },
    rss() {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : 0;
    },
    frameTimeNs: (frame) => frameTimes.get(frame),
    stderr: () => stderr,
    qmp: (command, qargs) => qmpCommand(qmpPaths[0], command, qargs),
    hmp: (commandLine) => hmpCommand(qmpPaths[0], commandLine),
    async screendump() {
      const file = path.join(dir, `screen-${Date.now()}.ppm`);
      await qmpCommand(qmpPaths[0], 'screendump', { filename: file });
      const buf = fs.readFileSync(file);
      fs.rmSync(file);
      return buf;
    },
    async stop() {
      if (!exited) {
        const gone = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await gone;
        clearTimeout(timer);
      }
      running.delete(child);
      debugServer?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return vm;
}

/**
 * One QMP exchange on a unix socket: reads the greeting, sends `qmp_capabilities`, runs `command`
 * and resolves with its `return` value (rejects with its `error`). Events are skipped. QEMU's QMP
 * socket serves one client at a time, so the connection is closed afterwards.
 */
export function qmpCommand(
  socketPath: string,
  command: string,
  args?: Record<string, unknown>,
  timeoutMs = 30000,
): Promise<any> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    let buf = '';
    let stage = 0; // 0 greeting, 1 capabilities, 2 command
    const timer = setTimeout(() => fail(new Error(`QMP ${command}: no answer within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error(`QMP ${command}: connection closed`)));
    sock.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line);
        if (msg.event) continue;
        if (stage === 0 && msg.QMP) {
          stage = 1;
          sock.write(JSON.stringify({ execute: 'qmp_capabilities' }) + '\n');
        } else if (msg.error) {
          fail(new Error(`QMP ${stage === 1 ? 'qmp_capabilities' : command}: ${msg.error.desc}`));
        } else if (stage === 1 && 'return' in msg) {
          stage = 2;
          sock.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) }) + '\n');
        } else if (stage === 2 && 'return' in msg) {
          clearTimeout(timer);
          sock.removeAllListeners('close');
          sock.end();
          resolve(msg.return);
        }
      }
    });
  });
}

/** An HMP command (e.g. `sendkey a`, `mouse_move 10 5`, `mouse_button 1`) through QMP. */
export async function hmpCommand(socketPath: string, commandLine: string): Promise<string> {
  return (await qmpCommand(socketPath, 'human-monitor-command', { 'command-line': commandLine })) as string;
}

/** Path of the reference D-Bus listener (python3-gi); see test/qemu/dbus-probe.py. */
export const DBUS_PROBE = path.join(HERE, 'dbus-probe.py');

/** Why test/qemu/dbus-probe.py cannot run here, or null when it can (needs /usr/bin/python3 with gi). */
export function dbusProbeUnavailable(): Promise<string | null> {
  return new Promise((resolve) =>
    execFile('/usr/bin/python3', ['-c', "import gi; gi.require_version('Gio', '2.0')"], (err) =>
      resolve(err ? `/usr/bin/python3 cannot import gi (apt-get install python3-gi): ${err.message}` : null),
    ),
  );
}

/** An event line from test/qemu/dbus-probe.py. */
export interface ProbeEvent {
  ev: string;
  [key: string]: any;
}

/** A running test/qemu/dbus-probe.py: a D-Bus display listener registered on a VM's console 0. */
export interface DbusProbe {
  events: ProbeEvent[];
  /** Resolves with the first event (seen or future) after index `from` that matches. */
  waitFor(match: (e: ProbeEvent) => boolean, timeoutMs?: number, from?: number): Promise<ProbeEvent>;
  /** The listener's current picture: B,G,R,X, width*4 bytes per row. */
  dump(): Promise<{ width: number; height: number; data: Buffer }>;
  stop(): Promise<void>;
}

/**
 * Starts test/qemu/dbus-probe.py on `qmpPath` (which it uses only until its listener is registered)
 * and resolves once QEMU accepted the listener. With `map`, it declares Listener.Unix.Map.
 */
export async function startDbusProbe(qmpPath: string, options: { map?: boolean } = {}): Promise<DbusProbe> {
  const child = spawn('/usr/bin/python3', [DBUS_PROBE, qmpPath, ...(options.map ? ['--map'] : [])], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  installExitHook();
  running.add(child);
  const events: ProbeEvent[] = [];
  const waiters: { match: (e: ProbeEvent) => boolean; from: number; resolve: (e: ProbeEvent) => void }[] = [];
  let stderr = '';
  let exited = false;
  let out = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const e = JSON.parse(out.slice(0, nl)) as ProbeEvent;
      out = out.slice(nl + 1);
      events.push(e);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (events.length - 1 >= waiters[i].from && waiters[i].match(e)) {
          waiters[i].resolve(e);
          waiters.splice(i, 1);
        }
      }
    }
  });
  child.on('exit', () => {
    exited = true;
    running.delete(child);
  });
  const probe: DbusProbe = {
    events,
    waitFor(match, timeoutMs = 10000, from = 0) {
      const seen = events.slice(from).find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          const errors = events.filter((e) => e.ev === 'error').map((e) => e.message);
          reject(new Error(`D-Bus probe: no matching event in ${timeoutMs} ms ${errors.join('; ')} ${stderr}`));
        }, timeoutMs);
        waiters.push({
          match,
          from,
          resolve: (e) => {
            clearTimeout(timer);
            resolve(e);
          },
        });
      });
    },
    async dump() {
      const file = path.join(os.tmpdir(), `sl-probe-${child.pid}-${Date.now()}.raw`);
      const from = events.length;
      child.stdin!.write(`dump ${file}\n`);
      const e = await probe.waitFor((x) => x.ev === 'dumped' && x.path === file, 10000, from);
      const data = fs.readFileSync(file);
      fs.rmSync(file);
      return { width: e.w, height: e.h, data };
    },
    async stop() {
      if (!exited) {
        const gone = new Promise((resolve) => child.once('exit', resolve));
        child.stdin!.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await gone;
        clearTimeout(timer);
      }
    },
  };
  const first = await Promise.race([
    probe.waitFor((e) => e.ev === 'ready' || e.ev === 'error', 15000),
    new Promise<ProbeEvent>((resolve) => child.once('exit', () => resolve({ ev: 'error', message: 'exited' }))),
  ]);
  if (first.ev !== 'ready') {
    await probe.stop();
    throw new Error(`D-Bus probe failed: ${first.message} ${stderr}`);
  }
  return probe;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function tail(s: string, lines = 15): string {
  return s.split('\n').slice(-lines).join('\n');
}
