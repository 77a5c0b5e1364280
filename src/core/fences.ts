/**
 * Fence handles on the event loop: waiting never blocks the JS thread (the fence is polled by
 * libuv). On Linux a fence is a sync_file; where a platform has no fence handles (the
 * messages themselves are the fence) none ever arrives, and these fail with E_UNSUPPORTED.
 */
import { SurfaceLinkError } from '../errors.js';
import { handleFd, type OsHandle } from '../handles.js';
import { linuxNative, type NativeFence } from '../native/index.js';

function fenceModule(): NativeFence {
  const f = linuxNative().fence;
  if (!f) throw new SurfaceLinkError('E_NO_MECHANISM', 'this build has no sync_file support (Linux only)');
  return f;
}

/** Checks that a handle is a fence (a sync_file); E_HANDLE_TYPE otherwise. */
export function assertFence(fence: OsHandle, what: string): void {
  const kind = handleFd(fence, what).stat().kind;
  if (kind !== 'syncfile') throw new SurfaceLinkError('E_HANDLE_TYPE', `${what} must be a sync_file; got a ${kind}`);
}

/**
 * Calls `done` once the fence signals (error null) or the wait fails. Keeps its own dup,
 * so the caller may close `fence` at once. Returns a cancel function.
 */
export function waitFence(fence: OsHandle, done: (error: string | null) => void): () => void {
  const waiter = fenceModule().wait(handleFd(fence, 'a fence'), done, { ref: false });
  return () => waiter.cancel();
}
