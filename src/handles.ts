/**
 * OsHandle: an OS-neutral reference to a shareable kernel object — a file descriptor on POSIX
 * (memfds, dma-bufs, sync_files; also the pipe that carries an IOSurface ID in UTM's mode), an
 * NT HANDLE on Windows, a mach port on macOS. Mechanisms and transports pass these around; only
 * the mechanism that made or imports a handle looks inside it, and only the transport moves it
 * between processes (SCM_RIGHTS, DuplicateHandle, mach messages).
 *
 * Identity is separate from the value: a duplicated fd or DuplicateHandle'd HANDLE has another
 * value but the same object behind it. `handleIdentity()` gives a token that survives
 * duplication and transfer (for fds: the kernel's device and inode). Caches of imported buffers
 * key on the producer's (surface, buffer, generation) — a `BufferKey` — never on a handle value.
 *
 * Ownership: whoever holds an OsHandle owns it and closes it once (`closeHandle`, idempotent).
 * A side that keeps a handle past a call duplicates it (`dupHandle`).
 */
import { SurfaceLinkError } from './errors.js';
import type { NativeFd, NativeMachPort, NativeNtHandle } from './native/index.js';

export type { NativeMachPort };

/** A Windows HANDLE owner (native/windows/handle.cc). */
export type NativeHandle = NativeNtHandle;

/** One kernel object reference, tagged by its kind. */
export type OsHandle =
  | {
      /** A POSIX file descriptor. */
      readonly kind: 'fd';
      /** Its owner. */
      readonly fd: NativeFd;
    }
  | {
      /** A Windows NT HANDLE. */
      readonly kind: 'nt';
      /** Its owner. */
      readonly handle: NativeHandle;
    }
  | {
      /** A mach send right. */
      readonly kind: 'mach';
      /** Its owner. */
      readonly port: NativeMachPort;
    };

/** Wraps an fd owner (the OsHandle takes over its ownership). */
export function fdHandle(fd: NativeFd): OsHandle {
  return { kind: 'fd', fd };
}

/** Wraps a HANDLE owner (the OsHandle takes over its ownership). */
export function ntHandle(handle: NativeNtHandle): OsHandle {
  return { kind: 'nt', handle };
}

/** The HANDLE owner inside `handle`; E_HANDLE_TYPE if it is another kind. */
export function handleNt(handle: OsHandle, what = 'the handle'): NativeNtHandle {
  if (handle.kind !== 'nt')
    throw new SurfaceLinkError('E_HANDLE_TYPE', `${what} must be a Windows HANDLE; it is a ${handle.kind} handle`);
  return handle.handle;
}

/** The fd inside `handle`; E_HANDLE_TYPE if it is another kind. */
export function handleFd(handle: OsHandle, what = 'the handle'): NativeFd {
  if (handle.kind !== 'fd')
    throw new SurfaceLinkError('E_HANDLE_TYPE', `${what} must be a file descriptor; it is a ${handle.kind} handle`);
  return handle.fd;
}

function owner(handle: OsHandle): { readonly closed: boolean; close(): void } {
  return handle.kind === 'fd' ? handle.fd : handle.kind === 'nt' ? handle.handle : handle.port;
}

/** Closes the handle. Idempotent. */
export function closeHandle(handle: OsHandle): void {
  owner(handle).close();
}

/** Closes every handle in the list (null/undefined: nothing). */
export function closeHandles(handles: readonly OsHandle[] | null | undefined): void {
  if (handles) for (const h of handles) owner(h).close();
}

/** Whether the handle was closed. */
export function handleClosed(handle: OsHandle): boolean {
  return owner(handle).closed;
}

/** A new owner of the same object (the caller owns both). */
export function dupHandle(handle: OsHandle): OsHandle {
  switch (handle.kind) {
    case 'fd':
      return { kind: 'fd', fd: handle.fd.dup() };
    case 'nt':
      return { kind: 'nt', handle: handle.handle.dup() };
    case 'mach':
      return { kind: 'mach', port: handle.port.dup() };
  }
}

/**
 * A token naming the object behind a handle, equal for every duplicate of it in any process
 * of this host: for fds the kernel's `<device>:<inode>`. (Windows and mach handles carry the
 * creator's token in their messages instead; their mechanisms define it.)
 */
export function handleIdentity(handle: OsHandle): string {
  if (handle.kind !== 'fd')
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      `${handle.kind} handles carry their identity in the mechanism's messages`,
    );
  const st = handle.fd.stat();
  return `fd:${st.device}:${st.inode}`;
}

/**
 * The identity of a buffer as its producer names it: stable for the buffer's whole life in
 * every consumer, unique per connection (`session` tells connections apart), and different
 * after a resize (new generation). What caches of imported buffers key on.
 */
export type BufferKey = string;

/** The BufferKey of a buffer of session `session` (0: this process's own buffers). */
export function bufferKey(session: number, surfaceId: number, bufferId: number, generation: number): BufferKey {
  return `${session}/${surfaceId}/${bufferId}/${generation}`;
}
