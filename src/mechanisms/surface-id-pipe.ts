/**
 * The surface-ID pipe of iosurface-pipe.v1 (docs/protocol.md §9.1.2), UTM's way of naming an
 * IOSurface where a unix socket can carry only fds: the `SCANOUT`'s one fd is the read end of a
 * pipe holding the surface's 32-bit IOSurfaceID (4 bytes, little-endian); the producer keeps the
 * write end open for as long as the surface lives, so a closed writer (POLLHUP) means "stale".
 *
 * This half is plain POSIX (native/posix/id_pipe.cc) and runs on Linux as well, where it is tested
 * across processes; looking the ID up (IOSurfaceLookup) is ./iosurface-pipe.ts, macOS only.
 * Every call returns at once: a pipe that is empty, short or overlong is an error, never a wait.
 */
import { SurfaceLinkError } from '../errors.js';
import { fdHandle, handleFd, type OsHandle } from '../handles.js';
import { idPipes, type NativeFd } from '../native/index.js';

/** One surface ID wrapped for one receiver: send `readEnd`, close `writeEnd` when the surface dies. */
export interface WrappedSurfaceId {
  /** The pipe's read end, holding the 4 ID bytes: the handle a SCANOUT carries. */
  readonly readEnd: OsHandle;
  /** The write end: open while the surface lives; closing it marks every copy of the read end stale. */
  readonly writeEnd: NativeFd;
}

/**
 * A pipe holding `id` for one receiver. Each receiver needs its own: reading consumes the bytes.
 * Throws E_INVALID_ARGUMENT for an ID outside 1..2^32-1, E_SYSTEM when the pipe cannot be made.
 */
export function wrapSurfaceId(id: number): WrappedSurfaceId {
  try {
    const [readEnd, writeEnd] = idPipes().createIdPipe(id);
    return { readEnd: fdHandle(readEnd), writeEnd };
  } catch (error) {
    throw SurfaceLinkError.fromNative(error);
  }
}

/**
 * Reads the IOSurfaceID a received SCANOUT's pipe carries. E_HANDLE_TYPE: not a pipe;
 * E_STALE: the producer closed its end (the surface is gone; its ID may already be reused),
 * even if the ID is still in the pipe;
 * E_MALFORMED: fewer than 4 bytes while the writer is open, or ID 0.
 */
export function readSurfaceId(handle: OsHandle): number {
  const fd = handleFd(handle, 'an iosurface-pipe.v1 handle');
  try {
    return idPipes().readIdPipe(fd);
  } catch (error) {
    throw SurfaceLinkError.fromNative(error);
  }
}

/**
 * Whether the surface behind an already-read pipe is gone (every write end closed). A consumer asks
 * before it looks the ID up again (IOSurface IDs are reused). E_MALFORMED if bytes follow the ID.
 */
export function surfaceIdStale(handle: OsHandle): boolean {
  const fd = handleFd(handle, 'an iosurface-pipe.v1 handle');
  try {
    return idPipes().idPipeStale(fd);
  } catch (error) {
    throw SurfaceLinkError.fromNative(error);
  }
}
