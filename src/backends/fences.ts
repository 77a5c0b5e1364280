/**
 * sync_file fences on the event loop. Waiting never blocks the JS thread: the fence fd is
 * polled by libuv. Where there is no fence, the RELEASE message itself is the fence.
 */
import { SurfaceLinkError } from '../errors.js';
import { loadNative, type NativeFd, type NativeFence } from '../native.js';

function fenceModule(): NativeFence {
  const f = loadNative().fence;
  if (!f) throw new SurfaceLinkError('E_NO_MECHANISM', 'this build has no sync_file support (Linux only)');
  return f;
}

/** The fences a reader must wait for (the writers'), as a sync_file owned by the caller. */
export function exportImplicitFence(dmabuf: NativeFd): NativeFd {
  const d = loadNative().dmabuf;
  if (!d) throw new SurfaceLinkError('E_NO_MECHANISM', 'this build has no dma-buf support');
  try {
    return d.exportSyncFile(dmabuf, 'read');
  } catch (error) {
    throw SurfaceLinkError.fromNative(error);
  }
}

/**
 * Like exportImplicitFence, but null where the kernel cannot export fences (before Linux
 * 6.0): readers then fall back to implicit sync in the kernel.
 */
export function tryExportImplicitFence(dmabuf: NativeFd): NativeFd | null {
  try {
    return exportImplicitFence(dmabuf);
  } catch (error) {
    if ((error as SurfaceLinkError).code === 'E_UNSUPPORTED') return null;
    throw error;
  }
}

/** Checks that a handle is a sync_file; E_HANDLE_TYPE otherwise. */
export function assertSyncFile(fd: NativeFd, what: string): void {
  const kind = fd.stat().kind;
  if (kind !== 'syncfile') throw new SurfaceLinkError('E_HANDLE_TYPE', `${what} must be a sync_file; got a ${kind}`);
}

/**
 * Calls `done` once the fence signals (error null) or the wait fails. Keeps its own dup,
 * so the caller may close `fence` at once. Returns a cancel function.
 */
export function waitFence(fence: NativeFd, done: (error: string | null) => void): () => void {
  const waiter = fenceModule().wait(fence, done, { ref: false });
  return () => waiter.cancel();
}
