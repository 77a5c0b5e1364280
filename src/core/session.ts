/**
 * ServerSession: one client of a SurfaceServer, from accept to close. It owns the channel,
 * runs the core messages (HELLO → WELCOME, ERROR), checks who may send which message with how
 * many handles, and hands every other message to the session feature that owns its type.
 */
import { ErrorCode, SurfaceLinkError, errorCodeName, type ErrorCodeName } from '../errors.js';
import type { FormatSet } from '../format-set.js';
import { closeHandles, type OsHandle } from '../handles.js';
import { hostIdentity, peerInfo } from '../host.js';
import { TokenBucket, peerText, type Logger, type PeerLog } from '../log.js';
import type { CourierServer, Mechanism } from '../mechanisms/types.js';
import {
  messageType,
  readError,
  readHello,
  writeError,
  writeWelcome,
  wrongMessage,
  type MechanismOffer,
  type WelcomeInfo,
} from '../protocol/codec.js';
import { MessageType, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN } from '../protocol/constants.js';
import { ServerStages, type ServerFrameTelemetry } from '../telemetry.js';
import type { MessageChannel, MessageHandler, SendResult } from '../transport/types.js';
import type { ServerFeature } from './features/types.js';
import {
  chooseFeatures,
  chooseMechanism,
  chooseVersion,
  otherHostReason,
  type MechanismChoice,
  type ServerOffer,
} from './negotiate.js';

/** What the server knows about a connected client; also what 'client' events carry. */
export interface ClientInfo {
  /** Unique per server; what the client's `Negotiation.clientId` says. */
  readonly id: number;
  /** The client's process id, as the OS reports it (-1 when it does not say). */
  readonly pid: number;
  /** The client's user id, as the OS reports it (-1 where users are not numbers). */
  readonly uid: number;
  /** The name it gave in HELLO ('?' before then). */
  readonly name: string;
  /** The mechanism it uses (null before negotiation). */
  readonly mechanism: string | null;
  /** Why that mechanism (or why it fell back). */
  readonly reason: string;
  /** Session features it negotiated ('frames.v1', …). */
  readonly features: readonly string[];
  /** Frames sent to it (each one it received and held). */
  readonly framesDelivered: number;
  /** Frames it never saw because it still held an older one (latest wins). */
  readonly framesSkipped: number;
  /**
   * How long its frames took, stage by stage, as this server sees them (present → FRAME handed to
   * the socket → RELEASE read), over the frames it released: counts, and p50/p99/mean/max of its
   * most recent ones. A snapshot taken when this object was made.
   */
  readonly telemetry: ServerFrameTelemetry;
}

/** What a session needs from its server. */
export interface SessionHost {
  readonly name: string;
  readonly logger: Logger;
  /** Rate-limits the log lines clients cause (docs/protocol.md §6.2). */
  readonly peerLog: PeerLog;
  readonly limits: WelcomeInfo['limits'];
  readonly offer: ServerOffer;
  /** Features this server runs, by name. */
  readonly features: ReadonlyMap<string, ServerFeature>;
  /** A session finished negotiation. */
  sessionActive(session: ServerSession): void;
  /** A session ended; `wasActive`: it had finished negotiation. */
  sessionEnded(session: ServerSession, code: ErrorCodeName, message: string, wasActive: boolean): void;
}

/** Non-fatal ERRORs a client may send per second, in bursts of as many; more is E_LIMIT (docs/protocol.md §6.2). */
export const CLIENT_ERROR_RATE = 10;
/**
 * Messages of any type a client may send per second, in bursts of twice as many; more is E_LIMIT
 * (docs/protocol.md §6.5). Far above what a viewer needs (a RELEASE per frame, input at a
 * 1000 Hz mouse's rate), far below what makes the producer's loop late.
 */
export const CLIENT_MESSAGE_RATE = 4000;

export class ServerSession implements MessageHandler {
  readonly pid: number;
  readonly uid: number;
  name = '?';
  /** The negotiated mechanism. */
  mechanism: Mechanism | null = null;
  /** Its handle courier, for a mechanism whose handles the transport cannot carry (Mechanism.courier). */
  courier: CourierServer | null = null;
  reason = '';
  offers: MechanismOffer[] = [];
  /** Formats × modifiers the client declared and the server shares (mechanisms that negotiate formats). */
  formats: FormatSet | null = null;
  /** Why handle mechanisms are refused (the client is on another host), or null. */
  otherHost: string | null = null;
  state: 'hello' | 'active' | 'closed' = 'hello';
  features: readonly ServerFeature[] = [];
  framesDelivered = 0;
  framesSkipped = 0;
  /** Per-stage durations of its released frames (frames.v1 records them; preallocated). */
  readonly stages = new ServerStages();
  helloTimer: NodeJS.Timeout | null = null;
  private readonly handlers = new Map<number, ServerFeature>();
  /** Log lines this client causes, within its budget (PeerLog): use this, not the server's logger. */
  readonly log: Logger;
  /** Whom its log lines count against (PeerLog): its process, so a client reconnecting in a loop stays one peer. */
  readonly logPeer: string;
  private readonly errorBudget = new TokenBucket(CLIENT_ERROR_RATE);
  private readonly messageBudget = new TokenBucket(CLIENT_MESSAGE_RATE, 2 * CLIENT_MESSAGE_RATE);

  constructor(
    private readonly host: SessionHost,
    readonly channel: MessageChannel,
    readonly id: number,
  ) {
    this.pid = channel.peer.pid;
    this.uid = channel.peer.uid;
    this.logPeer = this.pid >= 0 ? `client pid ${this.pid}` : `client ${id}`;
    this.log = host.peerLog.for(this.logPeer);
  }

  info(): ClientInfo {
    const { id, pid, uid, name, reason, framesDelivered, framesSkipped } = this;
    return {
      id,
      pid,
      uid,
      name,
      mechanism: this.mechanism?.name ?? null,
      reason,
      features: this.features.map((f) => f.name),
      framesDelivered,
      framesSkipped,
      telemetry: this.stages.summary(),
    };
  }

  onMessage(view: DataView, start: number, length: number, handles: OsHandle[] | undefined): void {
    if (this.state === 'closed') return closeHandles(handles);
    try {
      if (!this.messageBudget.take())
        throw new SurfaceLinkError('E_LIMIT', `more than ${CLIENT_MESSAGE_RATE} messages per second`);
      const type = messageType(view, start);
      if (handles) this.checkHandles(type, handles.length);
      if (this.state === 'hello' && type !== MessageType.HELLO)
        throw new SurfaceLinkError('E_UNEXPECTED', `the first message must be HELLO, not type 0x${type.toString(16)}`);
      switch (type) {
        case MessageType.HELLO:
          if (this.state !== 'hello') throw new SurfaceLinkError('E_UNEXPECTED', 'HELLO may be sent only once');
          return this.welcome(readHello(view, start, length));
        case MessageType.ERROR: {
          const e = readError(view, start, length);
          if (e.fatal) return this.disconnect(errorCodeName(e.code), `client reported: ${peerText(e.message)}`, false);
          if (!this.errorBudget.take())
            throw new SurfaceLinkError('E_LIMIT', `more than ${CLIENT_ERROR_RATE} non-fatal ERROR messages per second`);
          this.log(
            'warn',
            `client ${this.id} (${peerText(this.name)}) reported ${errorCodeName(e.code)}: ${peerText(e.message)}`,
          );
          return;
        }
        default: {
          const feature = this.handlers.get(type);
          if (feature) return feature.onMessage(this, type, view, start, length, handles);
          const owner = [...this.host.features.values()].find((f) => f.clientMessages.has(type));
          if (owner)
            throw new SurfaceLinkError(
              'E_UNEXPECTED',
              `message type 0x${type.toString(16)} belongs to ${owner.name}, which this session did not negotiate`,
            );
          throw wrongMessage(type, 'server');
        }
      }
    } catch (error) {
      const e = SurfaceLinkError.fromNative(error);
      this.disconnect(e.code, e.message, true);
    } finally {
      closeHandles(handles);
    }
  }

  onChannelError(error: SurfaceLinkError): void {
    // The peer broke framing (we tell it why) or went away (nobody left to tell).
    this.disconnect(error.code, error.message, error.code !== 'E_PEER_CLOSED');
  }

  /** Clients send handles only where a feature allows them: E_HANDLE_COUNT otherwise. */
  private checkHandles(type: number, count: number): void {
    let allowed = 0;
    for (const f of this.host.features.values()) allowed = Math.max(allowed, f.clientMessages.get(type) ?? 0);
    if (count <= allowed) return;
    const rules = [...this.host.features.values()]
      .map((f) => f.handleRule)
      .filter((rule) => rule.length > 0)
      .join('; ');
    throw new SurfaceLinkError(
      'E_HANDLE_COUNT',
      `${count} handle(s) came with a message of type 0x${type.toString(16)}; ${rules}`,
    );
  }

  /**
   * Sends the message just encoded into `channel.writer`. False if it could not be sent: the
   * peer is gone (its channel reports that) or stopped reading (the session is then ended).
   */
  send(length: number, handles?: readonly OsHandle[]): boolean {
    return this.trySend(length, handles) >= 0;
  }

  /**
   * send(), saying how it went: 0 written at once, 1 queued behind what the client has not read
   * yet (it is behind), -1 the peer is gone, -2 the client stopped reading (the session is ended).
   */
  trySend(length: number, handles?: readonly OsHandle[]): SendResult {
    const result = this.channel.send(length, handles);
    if (result === -2)
      this.disconnect('E_BACKPRESSURE', 'the client stopped reading and its send queue is full', false);
    return result;
  }

  private welcome(hello: ReturnType<typeof readHello>): void {
    const version = chooseVersion(hello, { min: PROTOCOL_VERSION_MIN, max: PROTOCOL_VERSION_MAX });
    if (version === null)
      throw new SurfaceLinkError(
        'E_PROTOCOL_VERSION',
        `client speaks versions ${hello.minVersion}..${hello.maxVersion}; ` +
          `this server ${PROTOCOL_VERSION_MIN}..${PROTOCOL_VERSION_MAX}`,
      );
    this.name = hello.info.name;
    this.offers = hello.info.mechanisms;
    this.otherHost = otherHostReason(hostIdentity().bootId, hello.info.host.bootId);
    const rejected: { name: string; reason: string }[] = [];
    let choice = chooseMechanism(this.offers, 0, this.host.offer, this.otherHost, rejected);
    // A courier mechanism whose courier cannot start is passed over like any refused offer (still at HELLO).
    while (choice && !this.startCourier(choice, rejected))
      choice = chooseMechanism(this.offers, choice.index + 1, this.host.offer, this.otherHost, rejected, true);
    if (!choice)
      throw new SurfaceLinkError(
        'E_NO_MECHANISM',
        `no common mechanism: ${rejected.map((r) => `${r.name}: ${r.reason}`).join('; ')}`,
      );
    this.adopt(choice);
    const granted = chooseFeatures(hello.info.features, [...this.host.features.keys()]);
    this.features = granted.features.map((name) => this.host.features.get(name)!);
    for (const f of this.features) for (const type of f.clientMessages.keys()) this.handlers.set(type, f);
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    this.state = 'active';
    const welcome: WelcomeInfo = {
      server: peerInfo(this.host.name),
      clientId: this.id,
      mechanism: choice.mechanism.name,
      reason: this.reason,
      rejected,
      limits: this.host.limits,
      ...choice.welcome,
      ...this.courier?.welcome,
      ...(granted.announce ? { features: granted.features } : {}),
    };
    if (!this.send(writeWelcome(this.channel.writer, version, welcome))) return;
    this.log(
      'info',
      `client ${this.id} "${peerText(this.name)}" (pid ${this.pid}): ${choice.mechanism.name} — ${this.reason}`,
    );
    this.host.sessionActive(this);
    for (const f of this.features) if (this.state === 'active') f.start(this);
  }

  /**
   * For a mechanism whose handles travel by courier (iosurface.v1): starts this session's courier.
   * If it cannot start, the offer joins `rejected` with why and the next one is tried.
   */
  private startCourier(choice: MechanismChoice, rejected: { name: string; reason: string }[]): boolean {
    const factory = choice.mechanism.courier;
    if (!factory) return true;
    try {
      this.courier = factory.server(this.channel.peer);
      return true;
    } catch (error) {
      rejected.push({ name: choice.mechanism.name, reason: `its handle courier failed: ${(error as Error).message}` });
      return false;
    }
  }

  /** Takes a negotiated (or fallback) mechanism choice. */
  adopt(choice: MechanismChoice, reason = choice.reason): void {
    // A fallback never goes to a courier mechanism (they are HELLO-only): the old courier ends here.
    if (this.courier && this.mechanism !== null && choice.mechanism !== this.mechanism) {
      this.courier.close();
      this.courier = null;
    }
    this.mechanism = choice.mechanism;
    this.formats = choice.formats;
    this.reason = reason;
  }

  /** Ends the session once: tells the client why (if asked and possible), lets each feature free what it held. */
  disconnect(code: ErrorCodeName, message: string, tell: boolean): void {
    if (this.state === 'closed') return;
    const wasActive = this.state === 'active';
    this.state = 'closed';
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    if (tell && !this.channel.closed)
      this.channel.send(writeError(this.channel.writer, ErrorCode[code], true, message));
    this.channel.close();
    this.courier?.close();
    this.courier = null;
    for (const f of this.features) f.end(this);
    this.host.sessionEnded(this, code, message, wasActive);
  }
}
