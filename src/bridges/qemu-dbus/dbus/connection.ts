/**
 * DBusConnection: one D-Bus connection over a ByteStream — to a bus (client role, Hello) or
 * peer-to-peer (QEMU's listener socket: client role, no Hello; our own tests: server role).
 * Method calls with replies, timeouts and a bound on pending calls; exported objects (objects.ts:
 * method handlers, org.freedesktop.DBus.Properties and org.freedesktop.DBus.Peer); signals.
 * A malformed message from the peer closes the connection with a SurfaceLinkError (the 'close'
 * event); nothing the peer sends can throw past it.
 */
import { EventEmitter } from 'eventemitter3';
import { SurfaceLinkError, invalidArgument, type ErrorCodeName } from '../../../errors.js';
import type { NativeFd } from '../../../native/index.js';
import { connectStream, type ByteStream } from '../../stream-socket.js';
import { parseAddress, unixPathOf } from './address.js';
import { AuthClient, AuthServer } from './auth.js';
import {
  MAX_MESSAGE_SIZE,
  MessageFlags,
  MessageFramer,
  MessageType,
  closeAll,
  encodeMessage,
  type DBusMessage,
  type OutgoingMessage,
} from './message.js';
import {
  DBusError,
  DBusErrorName,
  ObjectRegistry,
  type MethodHandler,
  type MethodReply,
  type PropertySource,
} from './objects.js';

/** Options of DBusConnection.open / start / connectAddress. */
export interface DBusConnectionOptions {
  /** Authentication role: 'client' (to a bus, or to QEMU) or 'server' (accepts EXTERNAL from our own uid). */
  role: 'client' | 'server';
  /** Client on a bus: send org.freedesktop.DBus.Hello and record the unique name (default false). */
  hello?: boolean;
  /** Authentication (and Hello) must finish within this (default 10000 ms): E_TIMEOUT. */
  timeoutMs?: number;
  /** Client: ask for fd passing (default true). */
  negotiateUnixFds?: boolean;
  /** Client: send the uid with AUTH EXTERNAL (default true); false: AUTH EXTERNAL, then an empty DATA. */
  authInitialResponse?: boolean;
  /** Client: the server GUID to insist on (an address's guid=). */
  expectedGuid?: string;
  /** Server: agree to fd passing when asked (default true). */
  allowUnixFds?: boolean;
  /** Default timeout of call() (default 25000 ms, as libdbus). */
  callTimeoutMs?: number;
  /** Most calls waiting for a reply (default 1024): call() rejects with E_LIMIT beyond. */
  maxPendingCalls?: number;
  /** Largest message sent or received (default and maximum 128 MiB). */
  maxMessageBytes?: number;
}

/** What call() takes. */
export interface CallOptions {
  /** Destination bus name (needed on a bus, absent peer-to-peer). */
  destination?: string;
  /** Object path. */
  path: string;
  /** Interface (optional for the protocol, but give it). */
  interface?: string;
  /** Method name. */
  member: string;
  /** Body signature (default ''). */
  signature?: string;
  /** Body values (see marshal.ts for the JS mapping; `h` values are NativeFds, borrowed). */
  body?: readonly unknown[];
  /** Fds in index order (borrowed); `h` values not listed are appended. */
  fds?: readonly NativeFd[];
  /** Set NO_REPLY_EXPECTED: the promise resolves once the call is sent, with an empty result. */
  noReply?: boolean;
  /** Set NO_AUTO_START. */
  noAutoStart?: boolean;
  /** Reply timeout (default: the connection's callTimeoutMs): E_TIMEOUT. */
  timeoutMs?: number;
}

/** A METHOD_RETURN: its body and the fds it carried (yours: close what you do not keep). */
export interface CallResult {
  /** Body signature. */
  signature: string;
  /** Body values. */
  body: unknown[];
  /** Fds the reply carried, owned by the caller. */
  fds: NativeFd[];
}

/** What signal() sends. */
export interface SignalOptions {
  /** Emitting object's path. */
  path: string;
  /** Interface. */
  interface: string;
  /** Signal name. */
  member: string;
  /** Body signature (default ''). */
  signature?: string;
  /** Body values. */
  body?: readonly unknown[];
  /** Fds in index order (borrowed). */
  fds?: readonly NativeFd[];
  /** Unicast destination (default: broadcast). */
  destination?: string;
}

/** Events of a DBusConnection. */
export interface DBusConnectionEvents {
  /** A signal arrived (on a bus: one matching a rule added with addMatch). Listeners own its fds. */
  signal: [message: DBusMessage];
  /** The connection ended: closed here (E_CLOSED), by the peer (E_PEER_CLOSED), or for a protocol error. */
  close: [reason: SurfaceLinkError];
}

interface Pending {
  resolve(result: CallResult): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
  what: string;
}

const BUS = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };

/** A D-Bus connection. Create with open(), start() or connectAddress(); close() once done. */
export class DBusConnection extends EventEmitter<DBusConnectionEvents> {
  /** The unique name the bus gave (Hello), or null (peer-to-peer, or before Hello answered). */
  uniqueName: string | null = null;
  /** The server's GUID (after authentication; '' before). */
  guid = '';
  /** Whether fds can be passed (both sides agreed to NEGOTIATE_UNIX_FD). */
  unixFds = false;
  /** Resolves once authentication (and Hello) finished; rejects with why it failed. */
  readonly ready: Promise<void>;
  /** Why the connection ended, or null while it is open. */
  closeReason: SurfaceLinkError | null = null;

  private state: 'auth' | 'open' | 'closed' = 'auth';
  private auth: AuthClient | AuthServer | null;
  private readonly framer: MessageFramer;
  private serial = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly objects = new ObjectRegistry();
  private readonly callTimeoutMs: number;
  private readonly maxPendingCalls: number;
  private readonly maxMessageBytes: number;
  private readyTimer: NodeJS.Timeout | null = null;
  private settleReady: ((error?: SurfaceLinkError) => void) | null = null;

  /**
   * Starts authenticating on `stream` (taken over: closed with the connection) and returns the
   * connection at once, so that objects can be exported before the peer's first call arrives
   * (QEMU calls Properties.GetAll right after authenticating). Await `ready` before calling.
   */
  static start(stream: ByteStream, options: DBusConnectionOptions): DBusConnection {
    return DBusConnection.create(stream, options);
  }

  /**
   * start(), then waits for `ready`: resolves with the connection, or rejects (and closes it).
   * `setup` runs before authentication starts, so that what it exports (and the listeners it
   * adds) are in place before the peer can send anything.
   */
  static async open(
    stream: ByteStream,
    options: DBusConnectionOptions,
    setup?: (connection: DBusConnection) => void,
  ): Promise<DBusConnection> {
    const connection = DBusConnection.create(stream, options, setup);
    await connection.ready;
    return connection;
  }

  /** The constructor, closing the stream when the options are refused (it is taken over either way). */
  private static create(
    stream: ByteStream,
    options: DBusConnectionOptions,
    setup?: (connection: DBusConnection) => void,
  ): DBusConnection {
    try {
      return new DBusConnection(stream, options, setup);
    } catch (error) {
      stream.close();
      throw error;
    }
  }

  /**
   * Connects to a D-Bus address (`unix:path=…`, or a `;`-separated list tried in order) and opens
   * the connection: role 'client', and Hello unless `hello: false`. E_UNSUPPORTED for transports
   * other than unix:path= (abstract sockets, tcp); the last failure when no entry works.
   */
  static async connectAddress(address: string, options: Partial<DBusConnectionOptions> = {}): Promise<DBusConnection> {
    const entries = parseAddress(address);
    const failures: SurfaceLinkError[] = [];
    for (const entry of entries) {
      try {
        const path = unixPathOf(entry);
        const stream = connectStream(path);
        return await DBusConnection.open(stream, {
          ...options,
          role: 'client',
          hello: options.hello ?? true,
          expectedGuid: options.expectedGuid ?? entry.params.get('guid'),
        });
      } catch (error) {
        failures.push(SurfaceLinkError.fromNative(error));
      }
    }
    const last = failures[failures.length - 1];
    if (failures.length === 1) throw last;
    throw new SurfaceLinkError(
      last.code,
      `no entry of the D-Bus address ${address} worked: ` + failures.map((f, i) => `${i + 1}. ${f.message}`).join('; '),
      { cause: last },
    );
  }

  private constructor(
    private readonly stream: ByteStream,
    private readonly options: DBusConnectionOptions,
    setup?: (connection: DBusConnection) => void,
  ) {
    super();
    if (options === null || typeof options !== 'object') throw invalidArgument('options', 'an object', options);
    if (options.role !== 'client' && options.role !== 'server')
      throw invalidArgument('options.role', "'client' or 'server'", options.role);
    if (options.hello && options.role !== 'client') throw invalidArgument('options.hello', 'only for a client', true);
    this.callTimeoutMs = positive(options.callTimeoutMs, 25000, 'options.callTimeoutMs');
    this.maxPendingCalls = positive(options.maxPendingCalls, 1024, 'options.maxPendingCalls');
    this.maxMessageBytes = Math.min(
      positive(options.maxMessageBytes, MAX_MESSAGE_SIZE, 'options.maxMessageBytes'),
      MAX_MESSAGE_SIZE,
    );
    const timeoutMs = positive(options.timeoutMs, 10000, 'options.timeoutMs');
    this.framer = new MessageFramer((m) => this.onMessage(m), { maxMessageBytes: this.maxMessageBytes });
    const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
    this.auth =
      options.role === 'client'
        ? new AuthClient({
            uid,
            initialResponse: options.authInitialResponse,
            negotiateUnixFds: options.negotiateUnixFds,
            expectedGuid: options.expectedGuid,
          })
        : new AuthServer({ peerUid: stream.peer?.uid ?? null, allowedUid: uid, allowUnixFds: options.allowUnixFds });
    this.ready = new Promise<void>((resolve, reject) => {
      this.settleReady = (error) => {
        this.settleReady = null;
        if (this.readyTimer) clearTimeout(this.readyTimer);
        this.readyTimer = null;
        if (error) reject(error);
        else resolve();
      };
    });
    this.ready.catch(() => {}); // the rejection is also the 'close' reason; callers of start() may not await it
    this.readyTimer = setTimeout(() => {
      const what = this.state === 'auth' ? 'authentication' : 'Hello';
      this.shutdown(new SurfaceLinkError('E_TIMEOUT', `D-Bus ${what} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    stream.on('data', (chunk, fds) => this.onData(chunk, fds));
    stream.on('close', (error) => this.shutdown(error));
    if (stream.closed) {
      this.shutdown(new SurfaceLinkError('E_CLOSED', 'the stream was closed before the D-Bus connection started'));
      return;
    }
    if (setup) {
      try {
        setup(this);
      } catch (error) {
        this.shutdown(SurfaceLinkError.fromNative(error));
        return;
      }
    }
    const first = this.auth!.start();
    if (first !== '') this.write(Buffer.from(first, 'latin1'));
  }

  /** Whether the connection has ended. */
  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Calls a method. Rejects with a DBusError for an ERROR reply, E_TIMEOUT, E_LIMIT, or why the connection ended. */
  call(options: CallOptions): Promise<CallResult> {
    return new Promise<CallResult>((resolve, reject) => {
      if (this.state === 'closed') return reject(this.closedError(`${options?.member}`));
      if (this.pending.size >= this.maxPendingCalls)
        return reject(new SurfaceLinkError('E_LIMIT', `${this.maxPendingCalls} D-Bus calls are already waiting`));
      const timeoutMs = positive(options.timeoutMs, this.callTimeoutMs, 'options.timeoutMs');
      let flags = options.noReply ? MessageFlags.NO_REPLY_EXPECTED : 0;
      if (options.noAutoStart) flags |= MessageFlags.NO_AUTO_START;
      const serial = this.send({
        type: MessageType.METHOD_CALL,
        flags,
        path: options.path,
        interface: options.interface,
        member: options.member,
        destination: options.destination,
        signature: options.signature,
        body: options.body,
        fds: options.fds,
      });
      if (options.noReply) return resolve({ signature: '', body: [], fds: [] });
      const what = `${options.interface ? options.interface + '.' : ''}${options.member}`;
      const timer = setTimeout(() => {
        this.pending.delete(serial);
        reject(new SurfaceLinkError('E_TIMEOUT', `no reply to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(serial, { resolve, reject, timer, what });
    });
  }

  /** Emits a signal. Throws E_INVALID_ARGUMENT for bad names or body, E_CLOSED after close. */
  signal(options: SignalOptions): void {
    this.send({ type: MessageType.SIGNAL, ...options });
  }

  /**
   * Exports `methods` (and `properties`, for Properties.Get/GetAll) as `interfaceName` at `path`,
   * replacing what was exported there under that interface.
   */
  export(
    path: string,
    interfaceName: string,
    methods: Readonly<Record<string, MethodHandler>>,
    properties?: PropertySource,
  ): void {
    this.objects.export(path, interfaceName, methods, properties);
  }

  /** Removes one interface (or, without `interfaceName`, every interface) exported at `path`. */
  unexport(path: string, interfaceName?: string): void {
    this.objects.unexport(path, interfaceName);
  }

  /** Bus only: org.freedesktop.DBus.AddMatch, so that matching signals arrive as 'signal' events. */
  async addMatch(rule: string): Promise<void> {
    await this.call({ ...BUS, member: 'AddMatch', signature: 's', body: [rule] });
  }

  /** Bus only: org.freedesktop.DBus.RemoveMatch. */
  async removeMatch(rule: string): Promise<void> {
    await this.call({ ...BUS, member: 'RemoveMatch', signature: 's', body: [rule] });
  }

  /**
   * Hands a received message's buffer back for reuse by a later message (opt-in; saves a fresh
   * allocation — and its page faults — per large message, e.g. QEMU's 1–4 MB pixel arrays). Call it
   * only when nothing will read the message's `ay` views again (they will show later messages'
   * bytes), e.g. once the pixels are copied out. Its fds are not affected. Idempotent.
   */
  release(message: DBusMessage): void {
    this.framer.release(message);
  }

  /**
   * Closes the connection: pending calls reject with E_CLOSED, every fd the connection still owns
   * is closed, 'close' is emitted once. Idempotent.
   */
  close(): void {
    this.shutdown(new SurfaceLinkError('E_CLOSED', 'the D-Bus connection was closed by this side'));
  }

  /** Encodes and writes a message; returns its serial. Throws for bad arguments or a closed/full stream. */
  private send(message: OutgoingMessage): number {
    if (this.state === 'closed') throw this.closedError(message.member ?? message.errorName ?? 'the message');
    if (this.state === 'auth') throw new SurfaceLinkError('E_UNEXPECTED', 'the D-Bus connection is not open yet');
    do this.serial = this.serial >= 0xffffffff ? 1 : this.serial + 1;
    while (this.pending.has(this.serial));
    const { bytes, fds } = encodeMessage(message, this.serial, { maxMessageBytes: this.maxMessageBytes });
    if (fds.length > 0 && !this.unixFds)
      throw new SurfaceLinkError(
        'E_UNSUPPORTED',
        `cannot send ${fds.length} file descriptor(s): fd passing was not negotiated on this D-Bus connection` +
          (this.options.negotiateUnixFds === false ? ' (negotiateUnixFds: false)' : ' (the peer refused it)'),
      );
    this.write(bytes, fds);
    return this.serial;
  }

  private write(bytes: Uint8Array, fds?: NativeFd[]): void {
    this.stream.write(bytes, fds);
  }

  private closedError(what: string): SurfaceLinkError {
    const reason = this.closeReason;
    const code: ErrorCodeName = reason?.code ?? 'E_CLOSED';
    return new SurfaceLinkError(code, `${what}: the D-Bus connection has ended (${reason?.message ?? 'closed'})`, {
      cause: reason ?? undefined,
    });
  }

  private onData(chunk: Uint8Array, fds: NativeFd[] | undefined): void {
    if (this.state === 'closed') return closeAll(fds);
    try {
      if (this.auth) {
        const progress = this.auth.feed(chunk);
        if (progress.send !== '') this.write(Buffer.from(progress.send, 'latin1'));
        if (!progress.done) return closeAll(fds); // no message can claim fds that arrive during authentication
        this.authenticated(this.auth.result!.guid, this.auth.result!.unixFds);
        this.framer.pushFds(fds);
        this.framer.push(progress.rest ?? new Uint8Array(0));
        return;
      }
      this.framer.pushFds(fds);
      this.framer.push(chunk);
    } catch (error) {
      closeAll(fds);
      this.shutdown(SurfaceLinkError.fromNative(error));
    }
  }

  private authenticated(guid: string, unixFds: boolean): void {
    this.auth = null;
    this.guid = guid;
    this.unixFds = unixFds;
    this.state = 'open';
    if (!this.options.hello) return this.settleReady?.();
    this.call({ ...BUS, member: 'Hello' })
      .then((reply) => {
        if (reply.signature !== 's') {
          closeAll(reply.fds);
          throw new SurfaceLinkError('E_MALFORMED', `Hello answered "${reply.signature}", not "s"`);
        }
        this.uniqueName = reply.body[0] as string;
        this.settleReady?.();
      })
      .catch((error) => this.shutdown(SurfaceLinkError.fromNative(error)));
  }

  private onMessage(message: DBusMessage): void {
    switch (message.type) {
      case MessageType.METHOD_RETURN:
      case MessageType.ERROR: {
        const pending = this.pending.get(message.replySerial!);
        if (!pending) return closeAll(message.fds);
        this.pending.delete(message.replySerial!);
        clearTimeout(pending.timer);
        if (message.type === MessageType.METHOD_RETURN) {
          pending.resolve({ signature: message.signature, body: message.body, fds: message.fds });
        } else {
          closeAll(message.fds);
          const text = typeof message.body[0] === 'string' ? message.body[0] : '';
          pending.reject(
            new DBusError(message.errorName!, text || `${pending.what} failed with ${message.errorName}`, {
              signature: message.signature,
              body: message.body,
            }),
          );
        }
        return;
      }
      case MessageType.SIGNAL:
        if (this.listenerCount('signal') === 0) return closeAll(message.fds);
        try {
          this.emit('signal', message);
        } catch (error) {
          // A listener's bug, not the peer's: report it as Node reports a throwing 'data' listener.
          process.nextTick(() => {
            throw error;
          });
        }
        return;
      case MessageType.METHOD_CALL:
        return this.dispatch(message);
    }
  }

  private dispatch(message: DBusMessage): void {
    const noReply = (message.flags & MessageFlags.NO_REPLY_EXPECTED) !== 0;
    const answer = (outcome: { reply?: MethodReply | void; error?: unknown }): void => {
      if (noReply || this.closed) return;
      const base = { replySerial: message.serial, destination: message.sender };
      try {
        if (outcome.error === undefined) {
          const r = outcome.reply;
          if (r !== undefined && (r === null || typeof r !== 'object'))
            throw invalidArgument('a method handler result', '{ signature, body } or undefined', r);
          this.send({ type: MessageType.METHOD_RETURN, ...base, signature: r?.signature, body: r?.body, fds: r?.fds });
          return;
        }
      } catch (error) {
        if (this.closed || !isEncodingError(error)) return;
        outcome = { error: new DBusError(DBusErrorName.FAILED, `the reply could not be sent: ${errorText(error)}`) };
      }
      const e = outcome.error;
      const name = e instanceof DBusError ? e.name : DBusErrorName.FAILED;
      const text = e instanceof DBusError ? e.message : errorText(e);
      try {
        const body =
          e instanceof DBusError ? { signature: e.signature, body: e.body } : { signature: 's', body: [text] };
        this.send({ type: MessageType.ERROR, ...base, errorName: name, ...body });
      } catch {
        try {
          this.send({ type: MessageType.ERROR, ...base, errorName: name, signature: 's', body: [text] });
        } catch {
          // the connection is going away; nothing more to say
        }
      }
    };
    let handler: MethodHandler;
    try {
      handler = this.objects.find(message);
    } catch (error) {
      closeAll(message.fds);
      return answer({ error });
    }
    let result: ReturnType<MethodHandler>;
    try {
      result = handler(message);
    } catch (error) {
      return answer({ error });
    }
    if (isThenable(result))
      result.then(
        (reply) => answer({ reply }),
        (error) => answer({ error: error ?? new Error('rejected') }),
      );
    else answer({ reply: result });
  }

  private shutdown(reason: SurfaceLinkError): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeReason = reason;
    this.auth = null;
    if (this.readyTimer) clearTimeout(this.readyTimer);
    this.readyTimer = null;
    this.framer.dispose();
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(this.closedError(p.what));
    }
    this.stream.close();
    this.settleReady?.(reason);
    try {
      this.emit('close', reason);
    } catch (error) {
      process.nextTick(() => {
        throw error; // a listener's bug: reported as Node reports a throwing listener, not swallowed
      });
    }
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0)) throw invalidArgument(name, 'a positive number', value);
  return value;
}

function isThenable(value: unknown): value is Promise<MethodReply | undefined | void> {
  return typeof (value as Promise<unknown>)?.then === 'function';
}

function isEncodingError(error: unknown): boolean {
  const code = (error as SurfaceLinkError)?.code;
  return code === 'E_INVALID_ARGUMENT' || code === 'E_TOO_LARGE' || code === 'E_UNSUPPORTED';
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
