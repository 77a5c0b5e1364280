/**
 * The one place a transport is chosen: the unix socket on POSIX systems; on Windows the
 * named pipe (not written yet). Servers and clients get their transport from here (or from
 * their options) and never touch a socket themselves.
 */
import { SurfaceLinkError } from '../errors.js';
import type { Transport } from './types.js';
import { unixTransport } from './unix.js';

export type * from './types.js';
export { defaultSocketPath, defaultSocketDir, ensurePrivateDir } from './unix.js';

/** Every transport this build has, in preference order. */
export const TRANSPORTS: readonly Transport[] = [unixTransport];

/** Transports that work in this process (the conformance suite runs on each). */
export function availableTransports(): Transport[] {
  return TRANSPORTS.filter((t) => t.probe().available);
}

/** This platform's transport. E_UNSUPPORTED where none is written yet (Windows: named pipes come next). */
export function platformTransport(): Transport {
  if (process.platform === 'win32')
    throw new SurfaceLinkError('E_UNSUPPORTED', 'the named-pipe transport for Windows is not written yet');
  return unixTransport;
}

/** The transport called `name`, if this build has it. */
export function transportByName(name: string): Transport | undefined {
  return TRANSPORTS.find((t) => t.name === name);
}
