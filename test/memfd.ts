/**
 * Memfds as other programs make them (QEMU's display memory, a compositor's buffers), through
 * libc with koffi: the addon's createMemfd always seals against shrinking and growing, and these
 * tests need memfds that are not, and to shrink them.
 */
import { linuxNative, type NativeFd } from '../src/native/index.js';

interface Libc {
  memfdCreate(name: string, flags: number): number;
  ftruncate(fd: number, size: number): number;
  fcntl(...args: unknown[]): number;
  close(fd: number): number;
}

let libc: Libc | null = null;

function c(): Libc {
  if (libc) return libc;
  const koffi = require('koffi') as typeof import('koffi');
  const lib = koffi.load('libc.so.6');
  libc = {
    memfdCreate: lib.func('int memfd_create(const char *name, unsigned int flags)'),
    ftruncate: lib.func('int ftruncate(int fd, int64_t length)'),
    fcntl: lib.func('int fcntl(int fd, int cmd, ...)'),
    close: lib.func('int close(int fd)'),
  };
  return libc;
}

const MFD_CLOEXEC = 1;
const MFD_ALLOW_SEALING = 2;
const F_ADD_SEALS = 1033;

/** A memfd of `size` bytes; sealed against shrinking only when `sealed`. */
export function foreignMemfd(size: number, sealed: boolean): NativeFd {
  const raw = c().memfdCreate('foreign-display', MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (raw < 0) throw new Error('memfd_create failed');
  if (c().ftruncate(raw, size) !== 0) throw new Error('ftruncate failed');
  if (sealed && c().fcntl(raw, F_ADD_SEALS, 'int', linuxNative().seals.SHRINK) !== 0)
    throw new Error('F_ADD_SEALS failed');
  return linuxNative().adoptFd(raw);
}

/** ftruncate(2) on a duplicate of `fd` (an unsealed memfd shrinks; a sealed one refuses: false). */
export function truncate(fd: NativeFd, size: number): boolean {
  const raw = fd.dupRaw();
  try {
    return c().ftruncate(raw, size) === 0;
  } finally {
    c().close(raw);
  }
}
