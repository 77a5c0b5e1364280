/**
 * File descriptors of every kind a hostile client might attach to a message. Made once per
 * fuzz worker and reused (SCM_RIGHTS gives the server new descriptors each time); the server
 * must close whatever it receives. Not here: sync_files (they need a GPU or vgem, which only the
 * test VM has) and dma-bufs (/dev/udmabuf exists only in the VM).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { linuxNative, type NativeFd } from '../../../src/native/index.js';
import { foreignMemfd } from '../../memfd.js';

export const FD_KINDS = [
  'memfd-sealed',
  'memfd-unsealed',
  'pipe',
  'socket',
  'file',
  'devnull',
  'shm',
  'directory',
] as const;
export type FdKind = (typeof FD_KINDS)[number];

let pipe2: ((fds: Int32Array, flags: number) => number) | null = null;
const O_CLOEXEC = 0o2000000;

function pipeEnd(): NativeFd {
  if (!pipe2) {
    const koffi = require('koffi') as typeof import('koffi');
    pipe2 = koffi.load('libc.so.6').func('int pipe2(_Out_ int *fds, int flags)') as unknown as typeof pipe2;
  }
  const ends = new Int32Array(2);
  if (pipe2!(ends, O_CLOEXEC) !== 0) throw new Error('pipe2 failed');
  const native = linuxNative();
  native.adoptFd(ends[1]).close();
  return native.adoptFd(ends[0]);
}

/** One fd of each kind, owned by the returned pool (close() closes them all). */
export class FdPool {
  private readonly fds = new Map<FdKind, NativeFd>();
  private readonly scratch: string;

  constructor() {
    this.scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-fuzz-fds-'));
  }

  get(kind: FdKind): NativeFd {
    let fd = this.fds.get(kind);
    if (!fd) {
      fd = this.make(kind);
      this.fds.set(kind, fd);
    }
    return fd;
  }

  private make(kind: FdKind): NativeFd {
    const native = linuxNative();
    switch (kind) {
      case 'memfd-sealed':
        return native.createMemfd('fuzz', 4096);
      case 'memfd-unsealed':
        return foreignMemfd(4096, false);
      case 'pipe':
        return pipeEnd();
      case 'socket': {
        const [a, b] = native.socketpairFds();
        b.close();
        return a;
      }
      case 'file': {
        const file = path.join(this.scratch, 'regular');
        fs.writeFileSync(file, Buffer.alloc(4096, 7));
        return native.adoptFd(fs.openSync(file, 'r'));
      }
      case 'devnull':
        return native.adoptFd(fs.openSync('/dev/null', 'r'));
      case 'shm':
        return native.createShm('fuzz', 4096);
      case 'directory':
        return native.adoptFd(fs.openSync(this.scratch, 'r'));
    }
  }

  close(): void {
    for (const fd of this.fds.values()) fd.close();
    this.fds.clear();
    fs.rmSync(this.scratch, { recursive: true, force: true });
  }
}
