/**
 * Remote input and the remote cursor (docs/remote.md §3.1). A viewer's input messages become
 * the core's InputEvents for `SurfaceServer.dispatchInput`; what a viewer holds down is tracked
 * so it can be released when the viewer leaves; a token bucket caps how many messages a viewer
 * may send; the cursor's shape is encoded once per change for all viewers of a surface.
 *
 * Coordinates need no conversion: the stream shows the surface's *picture* (its visible
 * rectangle, top row first: ./mirror.ts), and the core's input and cursor positions are pixels
 * of that same picture, (0, 0) its top-left pixel, whatever the buffer's orientation or the
 * rectangle's place in it (SharedSurface.moveCursor, SurfaceClient.sendPointer). A producer
 * gets the same numbers from a remote viewer as from a local one.
 */
import { SurfaceLinkError, type ErrorCodeName } from '../errors.js';
import type { CursorState, InputEvent, InputMode } from '../input.js';
import type { SharedSurface } from '../surface.js';
import { clockMs, type InputMessage } from './protocol.js';

/** After a resize is announced, positions outside the new picture are dropped without a warning for this long. */
export const RESIZE_GRACE_MS = 1000;
/** At most one non-fatal `warning` per viewer per this many milliseconds (E_PERMISSION: once in all). */
export const WARNING_INTERVAL_MS = 1000;

/** What a dropped event says, if anything: a non-fatal warning for the viewer. */
export interface InputWarning {
  code: ErrorCodeName;
  message: string;
}

/** One viewer's input: what it holds down, so that leaving (or being disconnected) releases it. */
export class ViewerInput {
  /** Input events dispatched to the producer. */
  events = 0;
  /** The view-only refusal was sent. */
  refused = false;
  /** When the last other warning went out (server clock). */
  lastWarningMs = -Infinity;
  private readonly keys = new Set<number>();
  private readonly buttons = new Set<number>();
  /** Active touch slots and where they are. */
  private readonly touches = new Map<number, { x: number; y: number }>();

  /**
   * The event for `m`, or a warning, or null when it is dropped without a word: pointer input of
   * the other mode (`pointer` in relative mode, `motion` in absolute mode), a press of a key
   * or button already held, a release of one not held, a touch `down` on an active slot or
   * another phase on an inactive one, a position outside the picture within RESIZE_GRACE_MS of
   * a resize (the viewer may not know yet). A position outside the `picture` (the size the
   * viewer was last told) is an E_OUT_OF_BOUNDS warning. Nothing is recorded until commit().
   */
  toEvent(
    m: InputMessage,
    surface: SharedSurface,
    picture: { width: number; height: number; resizedAtMs: number },
    clientId: number,
  ): InputEvent | InputWarning | null {
    const base = { surfaceId: surface.id, source: 'remote' as const, clientId };
    switch (m.type) {
      case 'key':
        return this.keys.has(m.code) === m.pressed ? null : { ...base, kind: 'key', code: m.code, pressed: m.pressed };
      case 'button':
        return this.buttons.has(m.button) === m.pressed
          ? null
          : { ...base, kind: 'button', button: m.button, pressed: m.pressed };
      case 'scroll':
        return { ...base, kind: 'scroll', dx: m.dx, dy: m.dy };
      case 'motion':
        // Pointer input of the other mode is dropped (as the core would): it may predate the inputMode message.
        return surface.inputMode === 'relative' ? { ...base, kind: 'motion', dx: m.dx, dy: m.dy } : null;
      case 'pointer': {
        if (surface.inputMode !== 'absolute') return null;
        const problem = this.outside(m.x, m.y, surface, picture, 'pointer');
        return problem === undefined ? { ...base, kind: 'pointer', x: m.x, y: m.y } : problem;
      }
      case 'touch': {
        if (this.touches.has(m.slot) === (m.phase === 'down')) return null;
        const problem = this.outside(m.x, m.y, surface, picture, 'touch');
        return problem === undefined
          ? { ...base, kind: 'touch', phase: m.phase, slot: m.slot, x: m.x, y: m.y }
          : problem;
      }
    }
  }

  /** Records what a dispatched event holds down or lets go. */
  commit(e: InputEvent): void {
    this.events++;
    if (e.kind === 'key') {
      if (e.pressed) this.keys.add(e.code);
      else this.keys.delete(e.code);
    } else if (e.kind === 'button') {
      if (e.pressed) this.buttons.add(e.button);
      else this.buttons.delete(e.button);
    } else if (e.kind === 'touch') {
      if (e.phase === 'down' || e.phase === 'move') this.touches.set(e.slot, { x: e.x, y: e.y });
      else this.touches.delete(e.slot);
    }
  }

  /** Events that let go of everything held (touches cancelled, buttons and keys up); forgets it all. */
  releaseAll(surfaceId: number, clientId: number): InputEvent[] {
    const base = { surfaceId, source: 'remote' as const, clientId };
    const out: InputEvent[] = [];
    for (const [slot, t] of this.touches) out.push({ ...base, kind: 'touch', phase: 'cancel', slot, x: t.x, y: t.y });
    for (const button of this.buttons) out.push({ ...base, kind: 'button', button, pressed: false });
    for (const code of this.keys) out.push({ ...base, kind: 'key', code, pressed: false });
    this.touches.clear();
    this.buttons.clear();
    this.keys.clear();
    return out;
  }

  /** undefined when (x, y) lies in the picture; otherwise null (drop it silently) or the warning to give. */
  private outside(
    x: number,
    y: number,
    surface: SharedSurface,
    picture: { width: number; height: number; resizedAtMs: number },
    what: string,
  ): InputWarning | null | undefined {
    const v = surface.visible;
    if (x < picture.width && y < picture.height && x < v.width && y < v.height) return undefined;
    // A resize the viewer may not have seen yet (or one not yet announced): not its fault.
    if (clockMs() - picture.resizedAtMs < RESIZE_GRACE_MS || v.width !== picture.width || v.height !== picture.height)
      return null;
    return {
      code: 'E_OUT_OF_BOUNDS',
      message: `${what} at ${x},${y} is outside the ${picture.width}x${picture.height} picture; the event was dropped`,
    };
  }
}

/** Whether toEvent() gave an event (rather than a warning). */
export function isEvent(v: InputEvent | InputWarning): v is InputEvent {
  return 'kind' in v;
}

/** A token bucket: `rate` messages per second, bursts of up to `rate`. */
export class RateLimit {
  private tokens: number;
  private lastMs = clockMs();

  constructor(private readonly rate: number) {
    this.tokens = rate;
  }

  /** Takes one token; false when there is none (the caller refuses with E_LIMIT). */
  take(): boolean {
    const now = clockMs();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.lastMs) * this.rate) / 1000);
    this.lastMs = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** A surface's cursor and input mode as its stream viewers get them; the shape encoded once per change. */
export class MirrorCursor {
  /** The newest state (from the frame tap, or read from the surface), null until the producer set one. */
  state: Readonly<CursorState> | null;
  /** The surface's input mode. */
  mode: InputMode;
  private encoded: { image: unknown; serial: number; json: string } | null = null;

  constructor(surface: SharedSurface) {
    this.state = surface.cursorSet ? surface.cursor : null;
    this.mode = surface.inputMode;
  }

  /** The `cursor` message for the current image (base64 of its ARGB8888 bytes), encoded once per image. */
  shapeMessage(): string {
    const serial = this.state?.serial ?? 0;
    const image = this.state?.image ?? null;
    if (this.encoded && this.encoded.image === image && this.encoded.serial === serial) return this.encoded.json;
    const json = JSON.stringify({
      type: 'cursor',
      serial,
      image: image && {
        width: image.width,
        height: image.height,
        hotspotX: image.hotspotX,
        hotspotY: image.hotspotY,
        pixels: Buffer.from(
          image.pixels.buffer,
          image.pixels.byteOffset,
          Math.min(image.pixels.byteLength, image.width * image.height * 4),
        ).toString('base64'),
      },
    });
    this.encoded = { image, serial, json };
    return json;
  }
}

/** The error for a flood of messages. */
export function rateExceeded(rate: number): SurfaceLinkError {
  return new SurfaceLinkError('E_LIMIT', `more than ${rate} messages per second`);
}
