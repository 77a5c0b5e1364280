/**
 * Stable error codes. The numbers travel in ERROR and IMPORT_FAILED messages
 * (docs/protocol.md §6); the names are what `SurfaceLinkError.code` holds. Never renumber.
 */
export const ErrorCode = {
  E_PROTOCOL_VERSION: 1,
  E_MALFORMED: 2,
  E_UNKNOWN_TYPE: 3,
  E_TOO_LARGE: 4,
  E_TRUNCATED: 5,
  E_HANDLE_COUNT: 6,
  E_HANDLE_TYPE: 7,
  E_UNSEALED: 8,
  E_BAD_GEOMETRY: 9,
  E_OUT_OF_BOUNDS: 10,
  E_UNSUPPORTED_FORMAT: 11,
  E_NO_MECHANISM: 12,
  E_RELEASE_TIMEOUT: 13,
  E_PERMISSION: 14,
  E_UNEXPECTED: 15,
  E_UNKNOWN_BUFFER: 16,
  E_BACKPRESSURE: 17,
  E_IMPORT_FAILED: 18,
  E_POOL_EXHAUSTED: 19,
  E_SHUTDOWN: 20,
  E_LIMIT: 21,
  E_TIMEOUT: 22,
  E_PEER_CLOSED: 23,
  E_SYSTEM: 24,
  E_INVALID_ARGUMENT: 25,
  E_CLOSED: 26,
  E_ADDRESS_IN_USE: 27,
  E_CONNECT: 28,
  E_NATIVE_UNAVAILABLE: 29,
  E_UNSUPPORTED: 30,
  E_CANCELLED: 31,
  /** Remote stream: missing or wrong token, or a refused Origin. */
  E_AUTH: 32,
  /** Remote stream: the video encoder/decoder pipeline failed or is unavailable. */
  E_ENCODER: 33,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;

const namesByNumber = new Map<number, ErrorCodeName>(
  Object.entries(ErrorCode).map(([name, n]) => [n, name as ErrorCodeName]),
);

/** The name for a wire error number; unknown numbers (from a newer peer) map to E_UNEXPECTED. */
export function errorCodeName(code: number): ErrorCodeName {
  return namesByNumber.get(code) ?? 'E_UNEXPECTED';
}

export function isErrorCodeName(value: unknown): value is ErrorCodeName {
  return typeof value === 'string' && value in ErrorCode;
}

/** Every error surfacelink raises or reports. `code` is stable; `message` is for people. */
export class SurfaceLinkError extends Error {
  readonly code: ErrorCodeName;
  declare readonly syscall?: string;
  declare readonly errno?: number;

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
