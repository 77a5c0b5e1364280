/**
 * The mechanisms this build knows, in preference order, and their probes. Each probe says
 * why a mechanism is unavailable; `surfacelink doctor` prints exactly this.
 */
import { dmabufBackend } from './dmabuf.js';
import { shmBackend } from './shm.js';
import type { Backend, ProbeResult } from './types.js';

/** Implemented backends, most preferred first. */
export const BACKENDS: readonly Backend[] = [dmabufBackend, shmBackend];

/** Mechanisms that exist in the protocol but are not implemented in this build yet. */
const PLANNED: Record<string, string> = {
  'iosurface.v1': 'IOSurface sharing is macOS/iOS only and not implemented in this version',
  'dxgi.v1': 'DXGI shared handles are Windows only and not implemented in this version',
};

/** stream.v1 carries no handles, so it has no backend: a server offers it once a StreamServer runs for it. */
const STREAM_REPORT: ProbeResult = {
  available: true,
  reason: 'no handles: frames encoded (lossless tiles; H.264 where GStreamer has an encoder) over WebSocket, offered once a StreamServer is started (docs/remote.md)',
};

export interface MechanismReport extends ProbeResult {
  name: string;
}

let probed: Map<string, ProbeResult> | undefined;

/** Probe results, computed once per process (probing allocates a little). */
export function probeAll(): Map<string, ProbeResult> {
  if (!probed) {
    probed = new Map();
    for (const b of BACKENDS) probed.set(b.name, b.probe());
  }
  return probed;
}

export function mechanismReports(): MechanismReport[] {
  const results = probeAll();
  const reports: MechanismReport[] = [...results].map(([name, r]) => ({ name, ...r }));
  reports.push({ name: 'stream.v1', ...STREAM_REPORT });
  for (const [name, reason] of Object.entries(PLANNED)) reports.push({ name, available: false, reason });
  return reports;
}

export function availableBackends(): Backend[] {
  const results = probeAll();
  return BACKENDS.filter((b) => results.get(b.name)?.available);
}

export function backendByName(name: string): Backend | undefined {
  return BACKENDS.find((b) => b.name === name);
}

/** Why `name` cannot be used here, or undefined if it can. */
export function unavailableReason(name: string): string | undefined {
  const r = probeAll().get(name);
  if (r) return r.available ? undefined : r.reason;
  return PLANNED[name] ?? 'unknown mechanism';
}
