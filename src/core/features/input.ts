/**
 * input.v1, the server's half: viewers send keys, pointer positions or motion, buttons, wheel
 * steps and touches for a surface (KEY, POINTER, MOTION, BUTTON, SCROLL, TOUCH); the server
 * validates each one and hands it to the producer as an InputEvent. The producer says per surface
 * whether it wants absolute positions or relative motion (INPUT_MODE). docs/protocol.md §3.11–§3.17.
 *
 * Reading an event allocates nothing but the event object the 'input' listener receives: fields
 * are read straight from the receive buffer, and the answers a client can provoke are bounded (one
 * E_PERMISSION per session, at most one E_OUT_OF_BOUNDS warning a second).
 */
import { performance } from 'node:perf_hooks';
import { ErrorCode, SurfaceLinkError, type ErrorCodeName } from '../../errors.js';
import type { OsHandle } from '../../handles.js';
import type { InputEvent, InputMode, InputSource } from '../../input.js';
import { peerText, type Logger } from '../../log.js';
import { bodyI32, bodyU32, checkBody, writeError, writeInputMode } from '../../protocol/codec.js';
import {
  BUTTON_MAX,
  BUTTON_MIN,
  BodySize,
  INPUT_MODES,
  KEY_CODE_MAX,
  MAX_MOTION,
  MAX_SCROLL,
  MAX_TOUCH_SLOTS,
  MessageType,
  TOUCH_PHASES,
} from '../../protocol/constants.js';
import type { SharedSurface } from '../../surface.js';
import type { ServerSession } from '../session.js';
import type { ServerFeature } from './types.js';

/** What input.v1 needs from its server. */
export interface InputHost {
  readonly surfaces: ReadonlyMap<number, SharedSurface>;
  /** The highest surface id this server ever made (input naming a higher one is bogus). */
  readonly highestSurfaceId: number;
  readonly logger: Logger;
  /** Whether this client's input is taken (ServerOptions.input); asked once, when its session starts. */
  allowed(session: ServerSession): boolean;
  /** A validated event, for the producer. */
  input(event: InputEvent): void;
}

/** One session's input bookkeeping. */
interface SessionInput {
  allowed: boolean;
  /** The refused client was told (once). */
  refusedTold: boolean;
  /** When the last non-fatal warning went out (performance.now()), -Infinity if none. */
  lastWarningMs: number;
}

/** At most one non-fatal warning per session per this many milliseconds; the rest are dropped unsaid. */
export const INPUT_WARNING_INTERVAL_MS = 1000;

const malformed = (message: string): SurfaceLinkError => new SurfaceLinkError('E_MALFORMED', message);

/** `pressed` of KEY and BUTTON: 0 or 1. */
function checkPressed(value: number, what: string): void {
  if (value !== 0 && value !== 1) throw malformed(`${what}: pressed must be 0 or 1, not ${value}`);
}

function checkKeyCode(code: number): void {
  if (!Number.isInteger(code) || code < 1 || code > KEY_CODE_MAX)
    throw malformed(`KEY: evdev code ${code} is outside 1..0x${KEY_CODE_MAX.toString(16)}`);
}

function checkButton(button: number): void {
  if (!Number.isInteger(button) || button < BUTTON_MIN || button > BUTTON_MAX)
    throw malformed(
      `BUTTON: ${button} is not an evdev mouse button (0x${BUTTON_MIN.toString(16)}..0x${BUTTON_MAX.toString(16)})`,
    );
}

function checkDelta(dx: number, dy: number, limit: number, what: string): void {
  if (!Number.isInteger(dx) || !Number.isInteger(dy) || Math.abs(dx) > limit || Math.abs(dy) > limit)
    throw malformed(`${what}: ${dx},${dy} is outside ±${limit}`);
}

function checkTouch(phase: number, slot: number): void {
  if (!Number.isInteger(phase) || phase < 0 || phase >= TOUCH_PHASES.length)
    throw malformed(`TOUCH: phase ${phase} is none of 0 down, 1 move, 2 up, 3 cancel`);
  if (!Number.isInteger(slot) || slot < 0 || slot >= MAX_TOUCH_SLOTS)
    throw malformed(`TOUCH: slot ${slot} is outside 0..${MAX_TOUCH_SLOTS - 1}`);
}

/** Whether (x, y) lies outside the picture of `surface` (its visible rectangle); the reason if so. */
function outside(surface: SharedSurface, x: number, y: number, what: string): string | null {
  const v = surface.visible;
  if (Number.isInteger(x) && Number.isInteger(y) && x >= 0 && y >= 0 && x < v.width && y < v.height) return null;
  return `${what} at ${x},${y} is outside surface ${surface.id}'s ${v.width}x${v.height} picture`;
}

export class InputServer implements ServerFeature {
  readonly name = 'input.v1';
  readonly clientMessages: ReadonlyMap<number, number> = new Map([
    [MessageType.KEY, 0],
    [MessageType.POINTER, 0],
    [MessageType.MOTION, 0],
    [MessageType.BUTTON, 0],
    [MessageType.SCROLL, 0],
    [MessageType.TOUCH, 0],
  ]);
  /** Its messages carry no handles: nothing to add to the E_HANDLE_COUNT text. */
  readonly handleRule = '';
  private readonly sessions = new Map<ServerSession, SessionInput>();

  constructor(private readonly host: InputHost) {}

  start(session: ServerSession): void {
    let allowed = false;
    try {
      allowed = this.host.allowed(session) === true;
    } catch (error) {
      this.host.logger('error', `the input policy threw for client ${session.id}; its input is refused: ${error}`);
    }
    this.sessions.set(session, { allowed, refusedTold: false, lastWarningMs: -Infinity });
    for (const surface of this.host.surfaces.values())
      if (surface.sequence > 0 && session.state === 'active') this.sendMode(session, surface);
  }

  end(session: ServerSession): void {
    this.sessions.delete(session);
  }

  /** A surface's first present: its input mode goes to every input.v1 client. */
  surfaceAppeared(surface: SharedSurface): void {
    for (const session of this.sessions.keys()) if (session.state === 'active') this.sendMode(session, surface);
  }

  /** The producer changed a surface's mode: told to every input.v1 client once the surface has been presented. */
  modeChanged(surface: SharedSurface): void {
    if (surface.sequence > 0) this.surfaceAppeared(surface);
  }

  private sendMode(session: ServerSession, surface: SharedSurface): void {
    session.send(writeInputMode(session.channel.writer, surface.id, inputModeValue(surface.inputMode)));
  }

  onMessage(
    session: ServerSession,
    type: number,
    view: DataView,
    start: number,
    length: number,
    _handles: OsHandle[] | undefined,
  ): void {
    const st = this.sessions.get(session);
    if (!st) return;
    // 1. The message's shape and its fields' ranges: a violation ends the session (E_MALFORMED).
    let x = 0;
    let y = 0;
    switch (type) {
      case MessageType.KEY:
        checkBody(view, start, length, BodySize.KEY, 'KEY');
        checkKeyCode(bodyU32(view, start, 1));
        checkPressed(bodyU32(view, start, 2), 'KEY');
        break;
      case MessageType.POINTER:
        checkBody(view, start, length, BodySize.POINTER, 'POINTER');
        x = bodyU32(view, start, 1);
        y = bodyU32(view, start, 2);
        break;
      case MessageType.MOTION:
        checkBody(view, start, length, BodySize.MOTION, 'MOTION');
        checkDelta(bodyI32(view, start, 1), bodyI32(view, start, 2), MAX_MOTION, 'MOTION');
        break;
      case MessageType.BUTTON:
        checkBody(view, start, length, BodySize.BUTTON, 'BUTTON');
        checkButton(bodyU32(view, start, 1));
        checkPressed(bodyU32(view, start, 2), 'BUTTON');
        break;
      case MessageType.SCROLL:
        checkBody(view, start, length, BodySize.SCROLL, 'SCROLL');
        checkDelta(bodyI32(view, start, 1), bodyI32(view, start, 2), MAX_SCROLL, 'SCROLL');
        break;
      case MessageType.TOUCH:
        checkBody(view, start, length, BodySize.TOUCH, 'TOUCH');
        checkTouch(bodyU32(view, start, 1), bodyU32(view, start, 2));
        x = bodyU32(view, start, 3);
        y = bodyU32(view, start, 4);
        break;
      default:
        return;
    }
    // 2. A client the policy refuses is told once; its input is dropped.
    if (!st.allowed) {
      if (st.refusedTold) return;
      st.refusedTold = true;
      session.log('warn', `client ${session.id} (${peerText(session.name)}) may not send input; its input is dropped`);
      session.send(
        writeError(
          session.channel.writer,
          ErrorCode.E_PERMISSION,
          false,
          'this server does not take input from this client; its input is dropped',
        ),
      );
      return;
    }
    // 3. The surface: one that never existed ends the session; one closed since is a race (dropped).
    const surface = this.surface(bodyU32(view, start, 0));
    if (!surface) return;
    // 4. Pointer input of the other mode is dropped (it may have been sent before INPUT_MODE arrived).
    if (type === MessageType.POINTER && surface.inputMode !== 'absolute') return;
    if (type === MessageType.MOTION && surface.inputMode !== 'relative') return;
    // 5. Positions outside the picture: a warning (bounded), and the event is dropped.
    if (type === MessageType.POINTER || type === MessageType.TOUCH) {
      const problem = outside(surface, x, y, type === MessageType.POINTER ? 'POINTER' : 'TOUCH');
      if (problem !== null) return this.warn(session, st, 'E_OUT_OF_BOUNDS', problem);
    }
    this.host.input(this.event(type, view, start, surface.id, session.id));
  }

  /** The event object for a validated message: the one allocation per event. */
  private event(type: number, view: DataView, start: number, surfaceId: number, clientId: number): InputEvent {
    const source: InputSource = 'local';
    switch (type) {
      case MessageType.KEY:
        return {
          kind: 'key',
          surfaceId,
          source,
          clientId,
          code: bodyU32(view, start, 1),
          pressed: bodyU32(view, start, 2) === 1,
        };
      case MessageType.POINTER:
        return { kind: 'pointer', surfaceId, source, clientId, x: bodyU32(view, start, 1), y: bodyU32(view, start, 2) };
      case MessageType.MOTION:
        return {
          kind: 'motion',
          surfaceId,
          source,
          clientId,
          dx: bodyI32(view, start, 1),
          dy: bodyI32(view, start, 2),
        };
      case MessageType.BUTTON:
        return {
          kind: 'button',
          surfaceId,
          source,
          clientId,
          button: bodyU32(view, start, 1),
          pressed: bodyU32(view, start, 2) === 1,
        };
      case MessageType.SCROLL:
        return {
          kind: 'scroll',
          surfaceId,
          source,
          clientId,
          dx: bodyI32(view, start, 1),
          dy: bodyI32(view, start, 2),
        };
      default:
        return {
          kind: 'touch',
          surfaceId,
          source,
          clientId,
          phase: TOUCH_PHASES[bodyU32(view, start, 1)],
          slot: bodyU32(view, start, 2),
          x: bodyU32(view, start, 3),
          y: bodyU32(view, start, 4),
        };
    }
  }

  /** A non-fatal ERROR, at most one per session per INPUT_WARNING_INTERVAL_MS. */
  private warn(session: ServerSession, st: SessionInput, code: ErrorCodeName, message: string): void {
    const now = performance.now();
    if (now - st.lastWarningMs < INPUT_WARNING_INTERVAL_MS) return;
    st.lastWarningMs = now;
    session.send(writeError(session.channel.writer, ErrorCode[code], false, `${message}; the event was dropped`));
  }

  /** The open surface `id`; null if it closed since; E_UNKNOWN_BUFFER if no such surface ever existed. */
  private surface(id: number): SharedSurface | null {
    const surface = this.host.surfaces.get(id);
    if (surface && !surface.closed) return surface;
    if (id === 0 || id > this.host.highestSurfaceId)
      throw new SurfaceLinkError('E_UNKNOWN_BUFFER', `input names surface ${id}, which does not exist`);
    return null;
  }

  /**
   * An event from elsewhere (a remote viewer): validated like one from the socket and emitted.
   * Throws SurfaceLinkError: E_MALFORMED (a field out of its range, an unknown kind or source),
   * E_UNKNOWN_BUFFER (a surface that never existed), E_OUT_OF_BOUNDS (a position outside the
   * picture). Dropped without a word, like socket input: a surface closed since, pointer input of
   * the other mode. The policy (ServerOptions.input) is for local clients; the caller applies its own.
   */
  dispatch(event: InputEvent): void {
    if (typeof event !== 'object' || event === null) throw malformed('an input event must be an object');
    const { surfaceId, source, clientId } = event;
    if (source !== 'local' && source !== 'remote') throw malformed(`input source ${String(source)} is unknown`);
    if (!Number.isSafeInteger(clientId)) throw malformed(`input clientId ${String(clientId)} is not an integer`);
    if (!Number.isInteger(surfaceId) || surfaceId < 0) throw malformed(`input surface ${surfaceId} is not an id`);
    const pressed = (p: unknown, what: string): boolean => {
      if (typeof p !== 'boolean') throw malformed(`${what}: pressed must be a boolean`);
      return p;
    };
    // A position must be a whole number of pixels; where it lies is checked against the picture below.
    const position = (x: unknown, y: unknown, what: string): void => {
      if (!Number.isSafeInteger(x) || !Number.isSafeInteger(y))
        throw malformed(`${what}: the position ${String(x)},${String(y)} is not in whole pixels`);
    };
    let out: InputEvent;
    const base = { surfaceId, source, clientId } as const;
    switch (event.kind) {
      case 'key':
        checkKeyCode(event.code);
        out = { kind: 'key', ...base, code: event.code, pressed: pressed(event.pressed, 'KEY') };
        break;
      case 'pointer':
        position(event.x, event.y, 'POINTER');
        out = { kind: 'pointer', ...base, x: event.x, y: event.y };
        break;
      case 'motion':
        checkDelta(event.dx, event.dy, MAX_MOTION, 'MOTION');
        out = { kind: 'motion', ...base, dx: event.dx, dy: event.dy };
        break;
      case 'button':
        checkButton(event.button);
        out = { kind: 'button', ...base, button: event.button, pressed: pressed(event.pressed, 'BUTTON') };
        break;
      case 'scroll':
        checkDelta(event.dx, event.dy, MAX_SCROLL, 'SCROLL');
        out = { kind: 'scroll', ...base, dx: event.dx, dy: event.dy };
        break;
      case 'touch':
        if (!TOUCH_PHASES.includes(event.phase)) throw malformed(`TOUCH: phase ${String(event.phase)} is unknown`);
        checkTouch(TOUCH_PHASES.indexOf(event.phase), event.slot);
        position(event.x, event.y, 'TOUCH');
        out = { kind: 'touch', ...base, phase: event.phase, slot: event.slot, x: event.x, y: event.y };
        break;
      default:
        throw malformed(`input kind ${String((event as { kind?: unknown }).kind)} is unknown`);
    }
    const surface = this.surface(surfaceId);
    if (!surface) return;
    if (out.kind === 'pointer' && surface.inputMode !== 'absolute') return;
    if (out.kind === 'motion' && surface.inputMode !== 'relative') return;
    if (out.kind === 'pointer' || out.kind === 'touch') {
      const problem = outside(surface, out.x, out.y, out.kind === 'pointer' ? 'POINTER' : 'TOUCH');
      if (problem !== null) throw new SurfaceLinkError('E_OUT_OF_BOUNDS', problem);
    }
    this.host.input(out);
  }
}

/** The wire value of a mode (INPUT_MODE): 0 absolute, 1 relative. */
export const inputModeValue = (mode: InputMode): number => INPUT_MODES.indexOf(mode);
