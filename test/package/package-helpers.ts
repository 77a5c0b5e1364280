/** Plumbing for test/package/: the prebuilt addons, external tools, the build cache, child processes. */
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT } from '../helpers';

export { ROOT };

/** The five targets `npm run prebuild` makes, with what `file` must say about each. */
export const PREBUILT_TARGETS = [
  { target: 'linux-x64', fileType: /^ELF 64-bit LSB shared object, x86-64\b/ },
  { target: 'linux-arm64', fileType: /^ELF 64-bit LSB shared object, ARM aarch64\b/ },
  { target: 'darwin-x64', fileType: /^Mach-O 64-bit x86_64 dynamically linked shared library\b/ },
  { target: 'darwin-arm64', fileType: /^Mach-O 64-bit arm64 dynamically linked shared library\b/ },
  { target: 'win32-x64', fileType: /^PE32\+ executable \(DLL\) .*x86-64/ },
] as const;

export function prebuildPath(target: string, root = ROOT): string {
  return path.join(root, 'prebuilds', target, 'surfacelink.node');
}

/** Where scripts/prebuild.sh and these tests keep downloaded tools (Zig, a Windows node.exe). */
export function buildCache(): string {
  return (
    process.env.SURFACELINK_BUILD_CACHE ??
    path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'surfacelink-build')
  );
}

export const CI = process.env.CI === 'true';

/**
 * Skips the running test with the reason in its title, unless CI=true: CI installs everything
 * these tests need, so there a missing prerequisite is a failure, never a skip.
 */
export function requireOrSkip(ctx: Mocha.Context, available: boolean, reason: string): void {
  if (available) return;
  if (CI) throw new Error(`CI=true, and CI provides this, but: ${reason}`);
  if (ctx.test) ctx.test.title += ` — skipped: ${reason}`;
  ctx.skip();
}

/** The prebuilt addon for `target`, or the test skipped ("run npm run prebuild"); fails under CI=true. */
export function requirePrebuild(ctx: Mocha.Context, target: string): string {
  const file = prebuildPath(target);
  requireOrSkip(ctx, fs.existsSync(file), `prebuilds/${target}/surfacelink.node is missing: run npm run prebuild`);
  return file;
}

/** The full path of `name` on PATH (or on `searchPath`), or null. */
export function which(name: string, searchPath = process.env.PATH ?? ''): string | null {
  for (const dir of searchPath.split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return null;
}

/** Tools missing from PATH, as "name (apt package)". */
export function missingTools(tools: Record<string, string>): string[] {
  return Object.entries(tools)
    .filter(([name]) => !which(name))
    .map(([name, pkg]) => `${name} (apt: ${pkg})`);
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a program to completion (no shell), collecting its output; kills it after timeoutMs. */
export function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? ROOT,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** `run`, expecting exit status 0; the assertion message carries the output. */
export async function runOk(
  command: string,
  args: string[],
  options: Parameters<typeof run>[2] = {},
): Promise<RunResult> {
  const r = await run(command, args, options);
  if (r.code !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${r.code ?? r.signal} after ${r.ms} ms\n--- ` +
        `stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`,
    );
  }
  return r;
}

/** The sha512 integrity string (as npm writes it) of a file. */
export function integrityOf(file: string): string {
  return `sha512-${crypto.createHash('sha512').update(fs.readFileSync(file)).digest('base64')}`;
}

/** A fresh temp directory, removed by the returned function. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Kilobytes used by a directory tree (du -sk). */
export async function duKiB(dir: string): Promise<number> {
  const r = await runOk('du', ['-sk', dir]);
  return Number(r.stdout.split(/\s+/)[0]);
}
