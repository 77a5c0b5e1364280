/**
 * Stable error codes. The numbers travel in ERROR and IMPORT_FAILED messages
 * (docs/protocol.md §6); the names are what `SurfaceLinkError.code` holds. Never renumber.
 */
export const ErrorCode = {
  /** The peers share no protocol version. */
  E_PROTOCOL_VERSION: 1,
  /** A message is malformed: wrong length, bad magic, bad JSON, counts out of range. */
  E_MALFORMED: 2,
  /** A message type the receiver does not know. */
  E_UNKNOWN_TYPE: 3,
  /** A message over the size limit (64 KiB), received or about to be sent. */
  E_TOO_LARGE: 4,
  /**
   * The connection ended in the middle of a message, or with handles no message claimed; also (local,
   * a client's warning) a shm.v1 buffer whose shm object shrank under the mapping: it read zeros and was dropped.
   */
  E_TRUNCATED: 5,
  /** A message carries the wrong number of handles for its type and mechanism. */
  E_HANDLE_COUNT: 6,
  /** A handle is the wrong kind of object (not a memfd, dma-buf or sync_file where one is needed). */
  E_HANDLE_TYPE: 7,
  /** A memfd lacks F_SEAL_SHRINK, so mapping it could crash the reader. */
  E_UNSEALED: 8,
  /** An invalid size, stride, plane count, visible rectangle, modifier or damage rectangle. */
  E_BAD_GEOMETRY: 9,
  /** A plane lies beyond the end of the object that holds it. */
  E_OUT_OF_BOUNDS: 10,
  /** An unknown DRM format, or a format × modifier the importer did not declare. */
  E_UNSUPPORTED_FORMAT: 11,
  /** No sharing mechanism both sides can use, or none left to fall back to after an import failure. */
  E_NO_MECHANISM: 12,
  /** A client held a frame longer than the server's `releaseTimeoutMs`. */
  E_RELEASE_TIMEOUT: 13,
  /** The peer's user is not allowed by the access policy. */
  E_PERMISSION: 14,
  /** A valid message at the wrong time or from the wrong side; also any error number this version does not know. */
  E_UNEXPECTED: 15,
  /** A message names a surface or buffer that was never announced, or was retired. */
  E_UNKNOWN_BUFFER: 16,
  /** The client stopped reading and the server's send queue for it is full (the client is dropped). */
  E_BACKPRESSURE: 17,
  /** A valid buffer could not be imported here (e.g. the kernel refused to map a dma-buf). */
  E_IMPORT_FAILED: 18,
  /** No buffer of the surface can be freed: the pool is at `maxBuffers` and every buffer is in use. */
  E_POOL_EXHAUSTED: 19,
  /** The server is closing. */
  E_SHUTDOWN: 20,
  /** Too many clients (`maxClients`). */
  E_LIMIT: 21,
  /** Negotiation (HELLO or WELCOME) did not finish in time. */
  E_TIMEOUT: 22,
  /** The peer closed the connection. */
  E_PEER_CLOSED: 23,
  /** A system call failed; `errno` and `syscall` say which. */
  E_SYSTEM: 24,
  /** An API argument is out of range or of the wrong type; the message names it and what was expected. */
  E_INVALID_ARGUMENT: 25,
  /** The object was closed. */
  E_CLOSED: 26,
  /** Another server listens on that address (or the path exists and is not a socket). */
  E_ADDRESS_IN_USE: 27,
  /** Connecting to the server failed (no server there, or refused). */
  E_CONNECT: 28,
  /** The native addon (or the EGL/GL libraries) could not be loaded; the message lists every path tried. */
  E_NATIVE_UNAVAILABLE: 29,
  /** This OS, kernel, driver or build lacks what was asked for (a device node, an ioctl, an extension). */
  E_UNSUPPORTED: 30,
  /** A wait on a fence was cancelled before the fence signalled. */
  E_CANCELLED: 31,
  /** Remote stream: missing or wrong token, or a refused Origin. */
  E_AUTH: 32,
  /** Remote stream: the video encoder/decoder pipeline failed or is unavailable. */
  E_ENCODER: 33,
  /** A handle names an object its producer already destroyed (iosurface-pipe.v1: the ID pipe's writer is closed). */
  E_STALE: 34,
} as const;

/** The name of an error code, e.g. 'E_CLOSED': what `SurfaceLinkError.code` holds. */
export type ErrorCodeName = keyof typeof ErrorCode;

const namesByNumber = new Map<number, ErrorCodeName>(
  Object.entries(ErrorCode).map(([name, n]) => [n, name as ErrorCodeName]),
);

/** The name for a wire error number; unknown numbers (from a newer peer) map to E_UNEXPECTED. */
export function errorCodeName(code: number): ErrorCodeName {
  return namesByNumber.get(code) ?? 'E_UNEXPECTED';
}

/** Whether `value` is the name of a known error code. */
export function isErrorCodeName(value: unknown): value is ErrorCodeName {
  return typeof value === 'string' && value in ErrorCode;
}

/** Every error surfacelink raises or reports. `code` is stable; `message` is for people. */
export class SurfaceLinkError extends Error {
  /** Stable error code: branch on this, never on `message`. */
  readonly code: ErrorCodeName;
  /** The system call that failed (E_SYSTEM and other errors from the native addon), e.g. 'mmap'. */
  declare readonly syscall?: string;
  /** The errno of the failed system call. */
  declare readonly errno?: number;

  /** `extra.cause` becomes the standard `Error.cause`; `syscall` and `errno` are set only when given. */
  constructor(code: ErrorCodeName, message: string, extra?: { syscall?: string; errno?: number; cause?: unknown }) {
    super(message, extra?.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'SurfaceLinkError';
    this.code = code;
    if (extra?.syscall !== undefined)
      Object.defineProperty(this, 'syscall', { value: extra.syscall, enumerable: true });
    if (extra?.errno !== undefined) Object.defineProperty(this, 'errno', { value: extra.errno, enumerable: true });
  }

  /** Wraps an error thrown by the native addon (which sets `code`, `syscall`, `errno`). */
  static fromNative(error: unknown): SurfaceLinkError {
    if (error instanceof SurfaceLinkError) return error;
    const e = error as { code?: unknown; message?: string; syscall?: string; errno?: number };
    const code = isErrorCodeName(e?.code) ? e.code : 'E_SYSTEM';
    return new SurfaceLinkError(code, e?.message ?? String(error), {
      syscall: e?.syscall,
      errno: e?.errno,
      cause: error,
    });
  }
}

/** One factory for bad-argument errors, so they all read the same. */
export function invalidArgument(name: string, expected: string, actual: unknown): SurfaceLinkError {
  const shown = typeof actual === 'string' ? JSON.stringify(actual) : String(actual);
  return new SurfaceLinkError('E_INVALID_ARGUMENT', `${name} must be ${expected}; got ${shown}`);
}
