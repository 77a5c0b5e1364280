/** This host's identity, sent in HELLO/WELCOME so peers can tell "same machine" apart. */
import * as fs from 'node:fs';
import type { PeerInfo } from './protocol/codec.js';

function readId(file: string): string | null {
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    return text.length > 0 && text.length <= 64 ? text : null;
  } catch {
    return null;
  }
}

let cached: PeerInfo['host'] | undefined;

/** Boot id (changes every boot; equal means same running kernel) and machine id. */
export function hostIdentity(): PeerInfo['host'] {
  cached ??= { bootId: readId('/proc/sys/kernel/random/boot_id'), machineId: readId('/etc/machine-id') };
  return cached;
}

export function peerInfo(name: string): PeerInfo {
  return { name, pid: process.pid, platform: process.platform, host: hostIdentity() };
}

/** Nanoseconds on the clock FRAME timestamps use (CLOCK_MONOTONIC on Linux). */
export function monotonicNs(): number {
  return Number(process.hrtime.bigint());
}
