/**
 * What the fuzz server (test/fixtures/fuzz-server.ts) serves, known to the generators and to the
 * spec model (unix-model.ts), so that a message's expected answer can be computed from
 * docs/protocol.md alone.
 */
export const FUZZ_SURFACES = {
  /** Presented every producer tick, absolute input mode: what the bystander watches. */
  live: { id: 1, width: 64, height: 48 },
  /** Created, never presented (no client has state for it), relative input mode. */
  idle: { id: 2, width: 32, height: 32 },
  /** Created, presented once, then closed: a surface that existed. */
  gone: { id: 3, width: 16, height: 16 },
} as const;

/** The highest surface id the fuzz server ever creates. */
export const FUZZ_HIGHEST_SURFACE = 3;

/** HELLO names starting with this are refused input (a non-fatal E_PERMISSION, once). */
export const NO_INPUT_PREFIX = 'noinput';

/** Server options of the fuzz server, shared with the model. */
export const FUZZ_SERVER_OPTIONS = {
  releaseTimeoutMs: 1000,
  helloTimeoutMs: 1500,
  maxClients: 96,
} as const;

/** The bystander's HELLO name: the fuzz server paces its presents by this client's releases. */
export const BYSTANDER_NAME = 'bystander';

/** Codes a server may end a client's session with because of what the client sent or did. */
export const CLIENT_CAUSED_CODES = [
  'E_PROTOCOL_VERSION',
  'E_MALFORMED',
  'E_UNKNOWN_TYPE',
  'E_TOO_LARGE',
  'E_TRUNCATED',
  'E_HANDLE_COUNT',
  'E_HANDLE_TYPE',
  'E_NO_MECHANISM',
  'E_RELEASE_TIMEOUT',
  'E_UNEXPECTED',
  'E_UNKNOWN_BUFFER',
  'E_BACKPRESSURE',
  'E_POOL_EXHAUSTED',
  'E_LIMIT',
  'E_TIMEOUT',
  'E_PEER_CLOSED',
] as const;
