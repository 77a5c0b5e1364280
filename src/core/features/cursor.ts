/**
 * cursor.v1, the server's half: the cursor as a plane of its own, never drawn into frames. Its
 * image goes to each client once per shape change as a small sealed memfd (CURSOR_SHAPE), its
 * position as often as it changes (CURSOR_MOVE). docs/protocol.md §3.18, §3.19.
 *
 * Moves are coalesced: the newest position of each surface is sent once per event-loop turn, and
 * to a client that has fallen behind (its messages queue up unread) at most once per
 * MOVE_RETRY_MS, the newest — it skips the stale ones instead of receiving every one late.
 */
import { fdHandle, closeHandle, type OsHandle } from '../../handles.js';
import type { Logger } from '../../log.js';
import { readOnlySectionOf } from '../../mechanisms/winshm.js';
import { shmBacking } from '../../mechanisms/shm.js';
import { linuxNative, loadNative, type DarwinAddon, type LinuxAddon } from '../../native/index.js';
import { writeCursorMove, writeCursorShape } from '../../protocol/codec.js';
import type { SharedSurface } from '../../surface.js';
import type { ServerSession } from '../session.js';
import type { ServerFeature } from './types.js';

/** What cursor.v1 needs from its server. */
export interface CursorHost {
  readonly surfaces: ReadonlyMap<number, SharedSurface>;
  readonly logger: Logger;
}

/** A client behind on its reading gets at most one CURSOR_MOVE per surface this often (the newest). */
export const MOVE_RETRY_MS = 50;

/** One session's cursor bookkeeping. */
interface SessionCursor {
  /** Its last message was queued behind unread ones: moves wait for the retry timer. */
  behind: boolean;
  /** Surfaces whose newest position this client has not been sent yet. */
  readonly pending: Set<SharedSurface>;
}

export class CursorServer implements ServerFeature {
  readonly name = 'cursor.v1';
  /** Clients send no cursor.v1 messages. */
  readonly clientMessages: ReadonlyMap<number, number> = new Map();
  readonly handleRule = '';
  private readonly sessions = new Map<ServerSession, SessionCursor>();
  /** The memfd of each surface's current image, made when a client first needs it. */
  private readonly images = new Map<SharedSurface, { serial: number; handle: OsHandle }>();
  /** Surfaces moved since the last flush. */
  private readonly moved = new Set<SharedSurface>();
  private flushQueued = false;
  private retryTimer: NodeJS.Timeout | null = null;
  /** Reused for the one handle of a CURSOR_SHAPE. */
  private readonly handleList: OsHandle[] = [];
  private closed = false;

  constructor(private readonly host: CursorHost) {}

  start(session: ServerSession): void {
    const st: SessionCursor = { behind: false, pending: new Set() };
    this.sessions.set(session, st);
    for (const surface of this.host.surfaces.values()) {
      if (!surface.cursorSet || session.state !== 'active') continue;
      if (surface.cursor.image) this.sendShape(session, surface);
      this.sendMove(session, surface, st);
    }
  }

  end(session: ServerSession): void {
    this.sessions.delete(session);
  }

  onMessage(): void {
    // No client messages belong to cursor.v1: the session never dispatches one here.
  }

  /** The image changed: CURSOR_SHAPE to every client now (shapes are rare; each is sent). */
  shapeChanged(surface: SharedSurface): void {
    if (this.sessions.size === 0) {
      this.dropImage(surface); // made again when a client needs it
      return;
    }
    for (const session of this.sessions.keys()) if (session.state === 'active') this.sendShape(session, surface);
  }

  /** The position or visibility changed: sent at the end of this event-loop turn, newest only. */
  positionChanged(surface: SharedSurface): void {
    if (this.sessions.size === 0 || this.closed) return;
    this.moved.add(surface);
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.closed) return;
    for (const [session, st] of this.sessions) {
      if (session.state !== 'active') continue;
      for (const surface of this.moved) {
        if (surface.closed) continue;
        if (st.behind) st.pending.add(surface);
        else this.sendMove(session, surface, st);
      }
    }
    this.moved.clear();
    this.armRetry();
  }

  /** While a client is behind, its newest positions are offered at most every MOVE_RETRY_MS. */
  private armRetry(): void {
    if (this.retryTimer || this.closed) return;
    let waiting = false;
    for (const st of this.sessions.values()) if (st.pending.size > 0) waiting = true;
    if (!waiting) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      for (const [session, st] of this.sessions) {
        if (st.pending.size === 0 || session.state !== 'active') continue;
        // The first send says whether the client has caught up (written at once) or is still behind (queued).
        st.behind = false;
        for (const surface of st.pending) if (!surface.closed) this.sendMove(session, surface, st);
        st.pending.clear();
      }
      this.armRetry();
    }, MOVE_RETRY_MS);
    this.retryTimer.unref();
  }

  private sendMove(session: ServerSession, surface: SharedSurface, st?: SessionCursor): void {
    const c = surface.cursor;
    const result = session.trySend(writeCursorMove(session.channel.writer, surface.id, c.x, c.y, c.visible));
    if (st && result === 1) st.behind = true;
  }

  private sendShape(session: ServerSession, surface: SharedSurface): void {
    const c = surface.cursor;
    const image = c.image;
    const length = writeCursorShape(session.channel.writer, {
      surfaceId: surface.id,
      serial: c.serial,
      width: image?.width ?? 0,
      height: image?.height ?? 0,
      hotspotX: image?.hotspotX ?? 0,
      hotspotY: image?.hotspotY ?? 0,
    });
    if (!image) {
      this.dropImage(surface);
      session.send(length);
      return;
    }
    this.handleList[0] = this.imageHandle(surface);
    try {
      const result = session.trySend(length, this.handleList);
      const st = this.sessions.get(session);
      if (st && result === 1) st.behind = true;
    } finally {
      this.handleList.length = 0;
    }
  }

  /** The memfd holding the surface's current image: made once per shape, kept until the next one. */
  private imageHandle(surface: SharedSurface): OsHandle {
    const c = surface.cursor;
    const have = this.images.get(surface);
    if (have && have.serial === c.serial) return have.handle;
    this.dropImage(surface);
    const image = c.image!;
    const size = image.width * image.height * 4;
    // Rows of width × 4 bytes, no padding; on Windows a section clients can only map for reading.
    if (process.platform === 'win32') {
      const handle = readOnlySectionOf(image.pixels.subarray(0, size), `the cursor image of surface ${surface.id}`);
      this.images.set(surface, { serial: c.serial, handle });
      return handle;
    }
    // shm.v1's backing, exactly `size` bytes: a sealed memfd on Linux, a shm_open object on macOS (clients
    // check either as shm.v1 checks a buffer).
    const posix = loadNative() as LinuxAddon | DarwinAddon;
    const label = `surfacelink-cursor-${surface.id}`;
    const fd = shmBacking() === 'memfd' ? linuxNative().createMemfd(label, size) : posix.createShm(label, size);
    try {
      const memory = fd.map(0, size, 'shared');
      new Uint8Array(memory).set(image.pixels.subarray(0, size));
      posix.unmap(memory);
    } catch (error) {
      fd.close();
      throw error;
    }
    const handle = fdHandle(fd);
    this.images.set(surface, { serial: c.serial, handle });
    return handle;
  }

  private dropImage(surface: SharedSurface): void {
    const have = this.images.get(surface);
    if (!have) return;
    this.images.delete(surface);
    closeHandle(have.handle);
  }

  /** The surface closed: its image memfd is closed (clients keep their copies). */
  surfaceClosed(surface: SharedSurface): void {
    this.dropImage(surface);
    this.moved.delete(surface);
    for (const st of this.sessions.values()) st.pending.delete(surface);
  }

  /** The server closed. */
  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    for (const surface of [...this.images.keys()]) this.dropImage(surface);
    this.moved.clear();
  }
}
