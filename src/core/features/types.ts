/**
 * Session features: the message handlers a session runs on top of the core (HELLO, WELCOME,
 * ERROR). `frames.v1` (buffers and frames) is the one every v1 peer has; `cursor.v1` and
 * `input.v1` plug in the same way. A feature is advertised in HELLO/WELCOME like a mechanism
 * (docs/protocol.md §4.5), owns its message types, and keeps its own per-session state.
 */
import type { OsHandle } from '../../handles.js';
import type { ServerSession } from '../session.js';

/** The server's half of a feature. */
export interface ServerFeature {
  /** Versioned wire name: 'frames.v1', 'cursor.v1', … */
  readonly name: string;
  /** Message types clients send for it, with how many handles each may carry. */
  readonly clientMessages: ReadonlyMap<number, number>;
  /**
   * Said to a client that attached handles where its messages may carry none: the feature's rule for
   * client handles ('' for a feature whose client messages carry none, which adds nothing to say).
   */
  readonly handleRule: string;
  /** A session finished negotiation with this feature. */
  start(session: ServerSession): void;
  /**
   * One of its messages. Throws SurfaceLinkError for a protocol violation (the session then ends).
   * Handles are borrowed.
   */
  onMessage(
    session: ServerSession,
    type: number,
    view: DataView,
    start: number,
    length: number,
    handles: OsHandle[] | undefined,
  ): void;
  /** The session ended: free what it held. */
  end(session: ServerSession): void;
}

/** The client's half of a feature. */
export interface ClientFeature<Host> {
  readonly name: string;
  /** Message types servers send for it, with how many handles each may carry. */
  readonly serverMessages: ReadonlyMap<number, number>;
  /** One of its messages. Throws SurfaceLinkError for a protocol violation. Handles become the feature's. */
  onMessage(
    host: Host,
    type: number,
    view: DataView,
    start: number,
    length: number,
    handles: OsHandle[] | undefined,
  ): void;
  /** The session ended. */
  end(host: Host): void;
}
