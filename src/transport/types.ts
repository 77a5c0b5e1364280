/**
 * The transport contract: a channel carries whole messages with OS handles attached, between
 * this process and one peer whose identity the OS vouches for. The core (sessions, features)
 * only ever talks to these interfaces; which transport is used is decided in one place
 * (./index.ts). Handle passing — SCM_RIGHTS on a unix socket, DuplicateHandle into the peer
 * on a named pipe — is the transport's business: a sent handle stays the sender's, a received
 * one belongs to the receiver (docs/ownership.md).
 */
import type { SurfaceLinkError } from '../errors.js';
import type { OsHandle } from '../handles.js';
import type { ChannelLimits, SendResult } from '../native/index.js';
import type { MessageWriter } from '../protocol/codec.js';

export type { ChannelLimits, SendResult };

/** Who is at the other end, as the OS reports it (never as the peer claims). */
export interface PeerIdentity {
  /** Process id, or -1 when the OS does not say. */
  readonly pid: number;
  /** POSIX user id, or -1 where users are not numbers (Windows: see `user`). */
  readonly uid: number;
  /** The user in the transport's own terms: `uid 1000`, or a Windows SID. */
  readonly user: string;
  /**
   * macOS: the peer's audit token (LOCAL_PEERTOKEN, 32 bytes), which names one process for its
   * whole life (unlike a pid); what iosurface.v1's courier compares a mach message's sender with.
   */
  readonly auditToken?: Uint8Array;
}

/** Who may connect, and who may be connected to. Both sides always allow their own user. */
export interface AccessPolicy {
  /**
   * Other users allowed (POSIX uids). Server: clients it admits; client: servers it trusts (root is
   * always trusted).
   */
  readonly allowUids?: readonly number[];
  /** Server: permission bits of the address where it has any (a unix socket file; default 0o600). */
  readonly mode?: number;
}

/** Receives what a channel reads. Called from the event loop, never re-entrantly from send(). */
export interface MessageHandler {
  /**
   * One whole message at view[start, start+length); valid only during the call. `handles` are the
   * handler's to close.
   */
  onMessage(view: DataView, start: number, length: number, handles: OsHandle[] | undefined): void;
  /** The channel failed or the peer went away; reading has stopped. */
  onChannelError(error: SurfaceLinkError): void;
}

/** A connected, message-framed channel to one peer. */
export interface MessageChannel {
  /** The peer's identity, as the OS reported it at connect/accept. */
  readonly peer: PeerIdentity;
  /** The encode buffer: encode a message into it, then send() its length. */
  readonly writer: MessageWriter;
  /** True once closed, by close() or because the channel failed. */
  readonly closed: boolean;
  /** Starts reading. Call once. */
  start(handler: MessageHandler, limits?: ChannelLimits): void;
  /** Sends the message just encoded into `writer`; the handles stay the caller's (the peer gets its own). */
  send(length: number, handles?: readonly OsHandle[]): SendResult;
  /** Closes the channel. Idempotent; nothing is called back afterwards. */
  close(): void;
  /**
   * Where a message just sent ends in this channel's outgoing byte stream: once `sentBytes` reaches
   * it, the message has been handed to the OS. Undefined where the channel cannot tell (then treat a
   * sent message as handed over at once).
   */
  sendMark?(): number | undefined;
  /** Bytes handed to the OS so far (see sendMark); undefined where the channel cannot tell. */
  readonly sentBytes?: number;
  /**
   * Reads what the peer has sent that waits unread and delivers it to the handler now, from within
   * this call. The server calls it before judging a client's deadline, so that what the client sent
   * while this process was busy counts. A no-op where the channel cannot do it.
   */
  readPending?(): void;
}

/** A listening address. */
export interface Listener {
  /** Where it listens (a socket path), as clients pass it to connect. */
  readonly address: string;
  /**
   * Starts accepting. `onChannel` gets each new (unstarted) channel and, when the access policy
   * refuses its peer, why (the core tells the peer and closes it). `onError` reports accept
   * failures the listener recovers from by itself.
   */
  start(onChannel: (channel: MessageChannel, refusal: string | null) => void, onError: (message: string) => void): void;
  /** Stops accepting and removes the address (a socket file). Idempotent. */
  close(): void;
}

/** How to listen: an explicit address, or the default one for `name`. */
export interface ListenOptions {
  /** Where to listen (a socket path); default: `defaultAddress(name)`. */
  address?: string;
  /** The server's name, for the default address. */
  name?: string;
  /** Who may connect. */
  policy: AccessPolicy;
  /**
   * How many connections may wait to be accepted (the listen backlog). Unix sockets: default
   * 4096; the kernel caps it at net.core.somaxconn (4096 since Linux 5.4, 128 before). A connect
   * beyond it fails with EAGAIN, which SurfaceClient retries (ClientOptions.retryConnect).
   */
  backlog?: number;
}

/** How to connect: the server's address (default: the default server's) and whom to trust. */
export interface ConnectOptions {
  /** The server's address (a socket path); default: `defaultAddress()`. */
  address?: string;
  /** Which server users to trust besides our own (and root). */
  policy: AccessPolicy;
}

/**
 * A way to reach peers on this host: listens, connects and pairs message channels that carry OS
 * handles. Implement it to add a transport (a named pipe, …) and pass it as
 * `ServerOptions.transport` / `ClientOptions.transport`.
 */
export interface Transport {
  /** 'unix', 'pipe', … */
  readonly name: string;
  /** Whether it works in this process, and why (not). */
  probe(): {
    /** True when it can be used here. */
    available: boolean;
    /** Why (not), in words a person can act on. */
    reason: string;
  };
  /** Where a server named `name` listens by default. */
  defaultAddress(name?: string): string;
  /** Listens; E_ADDRESS_IN_USE if another server is there, E_PERMISSION / E_SYSTEM with the fix otherwise. */
  listen(options: ListenOptions): Listener;
  /** Connects and checks the server's identity (E_CONNECT, E_PERMISSION). */
  connect(options: ConnectOptions): MessageChannel;
  /** Two connected channels in this process (tests and tools). */
  pair(): [MessageChannel, MessageChannel];
}
