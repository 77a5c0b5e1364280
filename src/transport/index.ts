/**
 * The one place a transport is chosen: the unix socket on Linux, the named pipe on Windows.
 * Servers and clients get their transport from here (or from their options) and never touch a
 * socket or a pipe themselves.
 */
import { pipeTransport } from './pipe.js';
import type { Transport } from './types.js';
import { defaultSocketPath, unixTransport } from './unix.js';

export type * from './types.js';
export { defaultSocketPath, defaultSocketDir, ensurePrivateDir } from './unix.js';
export { defaultPipePath } from './pipe.js';

/** Every transport this build has, in preference order. */
export const TRANSPORTS: readonly Transport[] = [unixTransport, pipeTransport];

/** Transports that work in this process (the conformance suite runs on each). */
export function availableTransports(): Transport[] {
  return TRANSPORTS.filter((t) => t.probe().available);
}

/** This platform's transport: the named pipe on Windows, the unix socket elsewhere. */
export function platformTransport(): Transport {
  return process.platform === 'win32' ? pipeTransport : unixTransport;
}

/**
 * Where a server named `name` listens by default on this platform, and where clients connect:
 * `\\.\pipe\surfacelink-<user>-<name>` on Windows, `<dir>/<name>.sock` elsewhere.
 */
export function defaultAddress(name = 'default'): string {
  return process.platform === 'win32' ? pipeTransport.defaultAddress(name) : defaultSocketPath(name);
}

/** The transport called `name`, if this build has it. */
export function transportByName(name: string): Transport | undefined {
  return TRANSPORTS.find((t) => t.name === name);
}
