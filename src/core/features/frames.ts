/**
 * frames.v1, the server's half: buffers announced once (SCANOUT), frames delivered latest-wins
 * (FRAME), held until released (RELEASE), RETIRE on resize, SURFACE_GONE, and the per-client
 * mechanism fallback (IMPORT_FAILED → MECHANISM). A client that is slow only skips frames; one
 * that holds a frame past its own deadline is dropped, and only then; nothing here ever waits for
 * a client.
 *
 * The deadline runs on CLOCK_MONOTONIC from when the FRAME was handed to the socket (a FRAME
 * still in our send queue has not reached the client) until its RELEASE is read, and before a
 * client is judged, whatever it sent that waits unread is read first: a RELEASE that arrived while
 * this process's loop was busy never counts against it.
 */
import type { SurfaceBuffer } from '../../buffer.js';
import { SurfaceLinkError, errorCodeName, type ErrorCodeName } from '../../errors.js';
import type { OsHandle } from '../../handles.js';
import { peerText, type Logger } from '../../log.js';
import { isRefusal, type BufferExport } from '../../mechanisms/types.js';
import {
  checkRelease,
  readImportFailed,
  releaseBufferId,
  releaseSequence,
  releaseSurfaceId,
  writeFrame,
  writeMechanism,
  writeRetire,
  writeScanout,
  writeSurfaceGone,
  type Rect,
} from '../../protocol/codec.js';
import { MAX_DAMAGE_RECTS, MessageType, Orientation } from '../../protocol/constants.js';
import type { SharedSurface } from '../../surface.js';
import { monotonicMs } from '../../telemetry.js';
import { assertFence, waitFence } from '../fences.js';
import { chooseMechanism, type ServerOffer } from '../negotiate.js';
import type { ServerSession } from '../session.js';
import type { ServerFeature } from './types.js';

/** What frames.v1 needs from its server. */
export interface FramesHost {
  readonly surfaces: ReadonlyMap<number, SharedSurface>;
  /** The highest surface id this server ever made (a RELEASE naming a higher one is bogus). */
  readonly highestSurfaceId: number;
  readonly releaseTimeoutMs: number;
  readonly logger: Logger;
  readonly offer: ServerOffer;
  /** A client released a frame (presentation feedback). */
  released(surfaceId: number, bufferId: number, sequence: number, clientId: number): void;
  /** A client's mechanism changed after an import failure. */
  mechanismChanged(session: ServerSession): void;
}

/** One client's view of one surface. */
interface SurfaceState {
  held: SurfaceBuffer | null;
  heldSequence: number;
  /** When the held frame's FRAME was handed to the socket (monotonic ms); NaN while it waits in our queue. */
  sentAtMs: number;
  /** While sentAtMs is NaN: the channel's sendMark() after that FRAME (it is handed over once sentBytes reaches it). */
  sendMark: number;
  /** When the held frame was presented (monotonic ms). */
  presentMs: number;
  pending: boolean;
  /** Damage accumulated over frames this client skipped; `accumFull` wins over the list. */
  accum: Rect[];
  accumFull: boolean;
  /** The next frame must carry full damage (the client has not seen this surface yet). */
  needsFull: boolean;
}

const ORIENTATION = { 'top-down': Orientation.TOP_DOWN, 'bottom-up': Orientation.BOTTOM_UP } as const;

export class FramesServer implements ServerFeature {
  readonly name = 'frames.v1';
  readonly clientMessages: ReadonlyMap<number, number> = new Map([
    [MessageType.RELEASE, 1],
    [MessageType.IMPORT_FAILED, 0],
  ]);
  readonly handleRule = 'clients send handles only as one release fence with RELEASE';
  /** Active frames.v1 sessions and their per-surface state. */
  private readonly clients = new Map<ServerSession, Map<number, SurfaceState>>();
  /** The acquire fence of a fenced FRAME, in a reused list: no allocation per frame. */
  private readonly fenceList: OsHandle[] = [];

  constructor(private readonly host: FramesHost) {}

  start(session: ServerSession): void {
    this.clients.set(session, new Map());
    for (const surface of this.host.surfaces.values())
      if (surface.front) this.deliver(session, this.state(session, surface), surface, surface.front, [], 0);
  }

  end(session: ServerSession): void {
    const states = this.clients.get(session);
    if (!states) return;
    this.clients.delete(session);
    for (const [surfaceId, st] of states) {
      if (!st.held) continue;
      st.held.holders--;
      this.host.surfaces.get(surfaceId)?.collect(st.held);
      st.held = null;
    }
    this.forgetBuffers(session);
  }

  onMessage(
    session: ServerSession,
    type: number,
    view: DataView,
    start: number,
    length: number,
    handles: OsHandle[] | undefined,
  ): void {
    if (type === MessageType.RELEASE) {
      checkRelease(view, start, length);
      const fence = handles?.[0];
      if (fence) assertFence(fence, 'a release fence');
      return this.release(
        session,
        releaseSurfaceId(view, start),
        releaseBufferId(view, start),
        releaseSequence(view, start),
        fence,
      );
    }
    const report = readImportFailed(view, start, length);
    // A session without handles (stream.v1) was sent no SCANOUT to fail on, and is never moved (§4.4).
    if (!session.mechanism?.caps.handles)
      throw new SurfaceLinkError(
        'E_UNEXPECTED',
        `IMPORT_FAILED in a ${session.mechanism?.name} session, which is sent no buffers to import`,
      );
    const code = errorCodeName(report.code);
    session.log(
      'warn',
      `client ${session.id} could not import buffer ${report.bufferId} of surface ${report.surfaceId} ` +
        `via ${session.mechanism?.name} (${code}): ${peerText(report.reason)}`,
    );
    this.fallBack(session, code, peerText(report.reason));
  }

  private state(session: ServerSession, surface: SharedSurface): SurfaceState {
    const states = this.clients.get(session)!;
    let st = states.get(surface.id);
    if (!st) {
      st = {
        held: null,
        heldSequence: 0,
        sentAtMs: 0,
        sendMark: 0,
        presentMs: 0,
        pending: false,
        accum: [],
        accumFull: false,
        needsFull: true,
      };
      states.set(surface.id, st);
    }
    return st;
  }

  /** A presented frame: to every client that holds nothing of this surface now, else remembered (latest wins). */
  present(surface: SharedSurface, buffer: SurfaceBuffer, damage: readonly Rect[], count: number): void {
    for (const session of this.clients.keys()) {
      if (session.state !== 'active') continue;
      const st = this.state(session, surface);
      if (st.held === null) {
        this.deliver(session, st, surface, buffer, damage, count);
      } else {
        if (st.pending) session.framesSkipped++;
        st.pending = true;
        accumulate(st, damage, count);
      }
    }
  }

  /** A fenced front buffer became readable: clients that could not wait on its fence get it now. */
  fenceSignalled(surface: SharedSurface, buffer: SurfaceBuffer): void {
    for (const [session, states] of this.clients) {
      const st = states.get(surface.id);
      if (session.state === 'active' && st && st.pending && st.held === null)
        this.deliver(session, st, surface, buffer, st.accum, st.accum.length);
    }
  }

  /**
   * Moves a client to the next mechanism in its offers (after the current one) that this
   * server can serve; tells it why (MECHANISM). With nothing left, the session ends with
   * E_NO_MECHANISM. Returns true if the session goes on.
   */
  private fallBack(session: ServerSession, code: ErrorCodeName, reason: string): boolean {
    const current = session.offers.findIndex((o) => o.name === session.mechanism?.name);
    const next = chooseMechanism(session.offers, current + 1, this.host.offer, session.otherHost, []);
    if (!next) {
      session.disconnect(
        'E_NO_MECHANISM',
        `client cannot use ${session.mechanism?.name} (${code}: ${reason}) and there is nothing to fall back to`,
        true,
      );
      return false;
    }
    session.adopt(next, `fell back from ${session.offers[current]?.name} after ${code}: ${reason}`);
    this.forgetBuffers(session);
    for (const st of this.clients.get(session)?.values() ?? []) st.needsFull = true;
    session.log('info', `client ${session.id}: ${next.mechanism.name} — ${session.reason}`);
    if (!session.send(writeMechanism(session.channel.writer, next.mechanism.name, session.reason))) return false;
    this.host.mechanismChanged(session);
    return true;
  }

  private deliver(
    session: ServerSession,
    st: SurfaceState,
    surface: SharedSurface,
    buffer: SurfaceBuffer,
    damage: readonly Rect[],
    count: number,
  ): void {
    const mechanism = session.mechanism!;
    if (!mechanism.caps.handles) return; // e.g. stream.v1: its frames go out another way
    const withFence = buffer.fence !== null && mechanism.caps.sync === 'sync_file';
    if (buffer.fence !== null && !buffer.fenceReady && !withFence) {
      // This client cannot wait on the fence: hold the frame back until it signals.
      st.pending = true;
      if (damage !== st.accum) accumulate(st, damage, count);
      return;
    }
    // Every frame: a copy for this client's mechanism is brought up to date (a no-op where the memory is shared).
    const exp = buffer.exportAs(mechanism, session);
    if (isRefusal(exp)) {
      if (this.fallBack(session, 'E_UNSUPPORTED_FORMAT', `surface ${surface.id}: ${exp.refused}`))
        this.deliver(session, st, surface, buffer, damage, count);
      return;
    }
    const ch = session.channel;
    if (!buffer.knownBy.has(session)) {
      if (!this.sendScanout(session, surface, buffer, exp)) return;
      buffer.knownBy.add(session);
    }
    // Damage is relative to the last frame this client saw: everything it skipped is included.
    if (st.pending && damage !== st.accum) accumulate(st, damage, count);
    if (st.needsFull || st.accumFull) count = 0;
    else if (st.pending) {
      damage = st.accum;
      count = damage.length;
    }
    const length = writeFrame(
      ch.writer,
      surface.id,
      buffer.id,
      surface.sequence,
      surface.lastPresentNs,
      damage,
      count,
      withFence,
    );
    let sent: number;
    if (withFence) {
      this.fenceList[0] = buffer.fence as OsHandle;
      sent = session.trySend(length, this.fenceList);
      this.fenceList.length = 0;
    } else sent = session.trySend(length);
    st.accum.length = 0; // reused: no allocation per frame
    st.accumFull = false;
    st.needsFull = false;
    st.pending = false;
    if (sent < 0) return;
    st.held = buffer;
    st.heldSequence = surface.sequence;
    st.presentMs = surface.lastPresentMs;
    // The deadline starts once the FRAME is handed to the socket: now, or when our queue drains that far.
    const mark = sent === 0 ? undefined : ch.sendMark?.();
    if (mark === undefined) st.sentAtMs = monotonicMs();
    else {
      st.sentAtMs = NaN;
      st.sendMark = mark;
    }
    buffer.holders++;
    session.framesDelivered++;
  }

  /**
   * When the held frame's FRAME was handed to the socket (monotonic ms), NaN while it still waits in
   * our send queue. A queued FRAME is taken as handed over when it is first seen to have left the
   * queue (`now`): never earlier than it was.
   */
  private sentAt(session: ServerSession, st: SurfaceState, now: number): number {
    if (Number.isNaN(st.sentAtMs)) {
      const sentBytes = session.channel.sentBytes;
      if (sentBytes === undefined || sentBytes >= st.sendMark) st.sentAtMs = now;
    }
    return st.sentAtMs;
  }

  /**
   * The SCANOUT with its handles on the channel; for a mechanism whose handles travel by courier
   * (iosurface.v1), the courier gets them first and the SCANOUT declares none.
   */
  private sendScanout(session: ServerSession, surface: SharedSurface, buffer: SurfaceBuffer, exp: BufferExport) {
    const courier = session.courier;
    if (courier === null)
      return session.send(this.scanout(session, surface, buffer, exp, exp.handles.length), exp.handles);
    try {
      courier.deliver(exp.handles);
    } catch (error) {
      const e = SurfaceLinkError.fromNative(error);
      session.disconnect(
        e.code,
        `surface ${surface.id}: its buffer's handles could not be delivered: ${e.message}`,
        true,
      );
      return false;
    }
    return session.send(this.scanout(session, surface, buffer, exp, 0));
  }

  private scanout(
    session: ServerSession,
    surface: SharedSurface,
    buffer: SurfaceBuffer,
    exp: BufferExport,
    handles: number,
  ): number {
    return writeScanout(
      session.channel.writer,
      {
        surfaceId: surface.id,
        bufferId: buffer.id,
        generation: buffer.generation,
        width: buffer.width,
        height: buffer.height,
        format: surface.format.fourcc,
        modifier: exp.modifier,
        orientation: ORIENTATION[surface.orientation],
        visible: surface.visible,
        planes: exp.planes.map((p) => ({
          handleIndex: p.handleIndex,
          stride: p.layout.stride,
          offset: p.layout.offset,
          size: p.layout.size,
        })),
      },
      handles,
    );
  }

  private release(
    session: ServerSession,
    surfaceId: number,
    bufferId: number,
    sequence: number,
    fence?: OsHandle,
  ): void {
    const surface = this.host.surfaces.get(surfaceId);
    const st = this.clients.get(session)?.get(surfaceId);
    if (!surface || !st) {
      // A release racing a SURFACE_GONE is normal; a surface that never existed is not.
      if (surfaceId > this.host.highestSurfaceId || surfaceId === 0)
        throw new SurfaceLinkError('E_UNKNOWN_BUFFER', `RELEASE names surface ${surfaceId}, which does not exist`);
      return;
    }
    const held = st.held;
    if (!held || held.id !== bufferId || st.heldSequence !== sequence)
      throw new SurfaceLinkError(
        'E_UNEXPECTED',
        `RELEASE of buffer ${bufferId} frame ${sequence}, which this client does not hold`,
      );
    const releasedMs = monotonicMs();
    const sentMs = this.sentAt(session, st, releasedMs);
    // A RELEASE of a FRAME still in our queue (only a client guessing could send one): sent = released.
    session.stages.record(st.presentMs, Number.isNaN(sentMs) ? releasedMs : sentMs, releasedMs);
    st.held = null;
    held.holders--;
    if (fence) {
      // The client's reads finish when this fence signals; until then the buffer stays busy.
      held.pendingFences++;
      waitFence(fence, () => {
        held.pendingFences--;
        surface.collect(held);
      });
    }
    surface.collect(held);
    this.host.released(surfaceId, bufferId, sequence, session.id);
    if (st.pending && surface.front) this.deliver(session, st, surface, surface.front, st.accum, st.accum.length);
  }

  /**
   * RETIRE to every client that knows the buffer. After a new generation (`newGeneration`), its next
   * frame of the surface is a full one; a buffer the pool gave back (shrinking) changes nothing else.
   */
  retire(surface: SharedSurface, buffer: SurfaceBuffer, newGeneration = true): void {
    for (const session of this.clients.keys()) {
      if (!buffer.knownBy.has(session)) continue;
      if (!session.send(writeRetire(session.channel.writer, surface.id, buffer.id))) continue;
      const st = this.clients.get(session)?.get(surface.id);
      if (st && newGeneration) {
        st.needsFull = true;
        st.pending = false;
      }
    }
    buffer.knownBy.clear();
  }

  /** SURFACE_GONE to every client; what they held of it is no longer theirs. */
  surfaceClosed(surface: SharedSurface): void {
    for (const [session, states] of this.clients) {
      const st = states.get(surface.id);
      if (st) {
        if (st.held) st.held.holders--;
        states.delete(surface.id);
      }
      if (session.state === 'active') session.send(writeSurfaceGone(session.channel.writer, surface.id));
    }
  }

  /**
   * Drops the clients that hold a frame past the release deadline: from when its FRAME was handed to
   * the socket until now, with whatever the client sent meanwhile read first (a RELEASE that waits
   * unread because this process was busy is the server's delay, not the client's).
   */
  sweep(): void {
    const limit = this.host.releaseTimeoutMs;
    let now = monotonicMs();
    for (const [session, states] of [...this.clients]) {
      if (!this.overdue(session, states, now, limit)) continue;
      session.channel.readPending?.();
      if (session.state !== 'active' || this.clients.get(session) !== states) continue;
      now = monotonicMs();
      for (const [surfaceId, st] of states) {
        if (!st.held) continue;
        const heldMs = now - this.sentAt(session, st, now);
        if (heldMs > limit) {
          session.disconnect(
            'E_RELEASE_TIMEOUT',
            `held frame ${st.heldSequence} of surface ${surfaceId} for ${Math.round(heldMs)} ms ` +
              `(limit ${limit} ms, from when its FRAME was handed to the socket)`,
            true,
          );
          break;
        }
      }
    }
  }

  /** Whether `session` holds a frame whose FRAME was handed to the socket more than `limit` ms before `now`. */
  private overdue(session: ServerSession, states: Map<number, SurfaceState>, now: number, limit: number): boolean {
    for (const st of states.values()) if (st.held && now - this.sentAt(session, st, now) > limit) return true;
    return false;
  }

  /** The client no longer has any buffer's handles: each is announced (SCANOUT) again before use. */
  private forgetBuffers(session: ServerSession): void {
    for (const surface of this.host.surfaces.values()) for (const b of surface.buffers()) b.knownBy.delete(session);
  }
}

function accumulate(st: SurfaceState, damage: readonly Rect[], count: number): void {
  if (st.accumFull) return;
  if (count === 0 || st.accum.length + count > MAX_DAMAGE_RECTS) {
    st.accumFull = true;
    st.accum = [];
    return;
  }
  for (let i = 0; i < count; i++) {
    const r = damage[i];
    st.accum.push({ x: r.x, y: r.y, width: r.width, height: r.height });
  }
}
