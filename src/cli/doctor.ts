/**
 * `surfacelink doctor`: what this machine can do and, where it cannot, why. Everything it
 * prints comes from the library's own probes, so the answer matches what a server or
 * client in this process would decide.
 */
import * as os from 'node:os';
import { mechanismReports, defaultSocketPath, type MechanismReport } from '../index.js';
import { hostIdentity } from '../host.js';
import { probeNative } from '../native.js';

export interface DoctorReport {
  version: string;
  platform: { os: string; arch: string; release: string };
  node: { version: string; napi: string | null; abi: string };
  addon: { loaded: boolean; path: string | null; platform: string | null; abi: number | null; error: string | null };
  host: { bootId: string | null; machineId: string | null };
  socketPath: string;
  mechanisms: MechanismReport[];
  /** At least one mechanism is available. */
  ok: boolean;
}

export function doctorReport(version: string): DoctorReport {
  const { addon, path: addonPath, error } = probeNative();
  const mechanisms = mechanismReports();
  return {
    version,
    platform: { os: process.platform, arch: process.arch, release: os.release() },
    node: { version: process.version, napi: process.versions.napi ?? null, abi: process.versions.modules },
    addon: {
      loaded: addon !== undefined,
      path: addonPath ?? null,
      platform: addon?.platform ?? null,
      abi: addon?.abi ?? null,
      error: error ? `${error.code}: ${error.message}` : null,
    },
    host: { ...hostIdentity() },
    socketPath: defaultSocketPath(),
    mechanisms,
    ok: mechanisms.some((m) => m.available),
  };
}

export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  const row = (label: string, value: string): void => {
    lines.push(`${label.padEnd(11)} ${value}`);
  };
  row('surfacelink', r.version);
  row('platform', `${r.platform.os} ${r.platform.arch} (kernel ${r.platform.release})`);
  row('node', `${r.node.version} (N-API ${r.node.napi ?? '?'}, ABI ${r.node.abi})`);
  if (r.addon.loaded) row('addon', `loaded from ${r.addon.path ?? '(unknown path)'} (platform ${r.addon.platform}, abi ${r.addon.abi})`);
  else {
    row('addon', 'NOT loaded');
    for (const line of (r.addon.error ?? 'unknown error').split('\n')) lines.push(`            ${line}`);
  }
  row('boot id', r.host.bootId ?? '(unknown: /proc/sys/kernel/random/boot_id unreadable)');
  row('machine id', r.host.machineId ?? '(unknown: /etc/machine-id unreadable)');
  row('socket', `${r.socketPath} (default)`);
  lines.push('mechanisms');
  const width = Math.max(...r.mechanisms.map((m) => m.name.length));
  for (const m of r.mechanisms) lines.push(`  ${m.available ? '✔' : '✘'} ${m.name.padEnd(width)}  ${m.reason}`);
  lines.push(r.ok ? `ready: ${r.mechanisms.filter((m) => m.available).map((m) => m.name).join(', ')}` : 'NOT ready: no sharing mechanism is available on this machine');
  return lines.join('\n');
}

/** Prints the report; the exit status is 0 when at least one mechanism works, else 1. */
export function runDoctor(options: { json: boolean; version: string }): number {
  const report = doctorReport(options.version);
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctor(report)}\n`);
  return report.ok ? 0 : 1;
}
