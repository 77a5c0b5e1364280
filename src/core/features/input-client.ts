/**
 * input.v1, the client's half: sends a viewer's keys, pointer, buttons, wheel and touches (checked
 * here first, so a bad argument throws instead of ending the session) and follows each surface's
 * input mode (INPUT_MODE). docs/protocol.md §3.11–§3.17.
 */
import { SurfaceLinkError, invalidArgument } from '../../errors.js';
import type { OsHandle } from '../../handles.js';
import type { InputMode, TouchEvent } from '../../input.js';
import {
  readInputMode,
  writeButton,
  writeKey,
  writeMotion,
  writePointer,
  writeScroll,
  writeTouch,
} from '../../protocol/codec.js';
import {
  BUTTON_MAX,
  BUTTON_MIN,
  INPUT_MODES,
  KEY_CODE_MAX,
  MAX_MOTION,
  MAX_SCROLL,
  MAX_TOUCH_SLOTS,
  MessageType,
  TOUCH_PHASES,
} from '../../protocol/constants.js';
import type { MessageChannel } from '../../transport/types.js';
import type { ClientFeature } from './types.js';

/** What input.v1 needs from its client. */
export interface InputClientHost {
  readonly channel: MessageChannel;
  emitInputMode(surfaceId: number, mode: InputMode): void;
}

const U32_MAX = 0xffffffff;

function integer(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw invalidArgument(name, `an integer in ${min}..${max}`, value);
  return value;
}

function boolean(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw invalidArgument(name, 'a boolean', value);
  return value;
}

export class InputClient implements ClientFeature<InputClientHost> {
  readonly name = 'input.v1';
  readonly serverMessages: ReadonlyMap<number, number> = new Map([[MessageType.INPUT_MODE, 0]]);
  /** Each surface's mode as the server last said (absent: absolute). */
  readonly modes = new Map<number, InputMode>();

  constructor(private readonly host: InputClientHost) {}

  onMessage(
    _host: InputClientHost,
    _type: number,
    view: DataView,
    start: number,
    length: number,
    _handles: OsHandle[] | undefined,
  ): void {
    const m = readInputMode(view, start, length);
    const mode = INPUT_MODES[m.mode];
    this.modes.set(m.surfaceId, mode);
    this.host.emitInputMode(m.surfaceId, mode);
  }

  end(): void {
    this.modes.clear();
  }

  /** The surface went away. */
  surfaceGone(surfaceId: number): void {
    this.modes.delete(surfaceId);
  }

  private send(length: number): void {
    if (this.host.channel.send(length) === -2)
      throw new SurfaceLinkError('E_BACKPRESSURE', 'the server stopped reading; the input event was dropped');
  }

  key(surfaceId: number, code: number, pressed: boolean): void {
    const w = this.host.channel.writer;
    this.send(
      writeKey(
        w,
        integer(surfaceId, 'surfaceId', 1, U32_MAX),
        integer(code, 'evdevCode', 1, KEY_CODE_MAX),
        boolean(pressed, 'pressed'),
      ),
    );
  }

  pointer(surfaceId: number, x: number, y: number): void {
    const w = this.host.channel.writer;
    this.send(
      writePointer(
        w,
        integer(surfaceId, 'surfaceId', 1, U32_MAX),
        integer(x, 'x', 0, U32_MAX),
        integer(y, 'y', 0, U32_MAX),
      ),
    );
  }

  motion(surfaceId: number, dx: number, dy: number): void {
    const w = this.host.channel.writer;
    this.send(
      writeMotion(
        w,
        integer(surfaceId, 'surfaceId', 1, U32_MAX),
        integer(dx, 'dx', -MAX_MOTION, MAX_MOTION),
        integer(dy, 'dy', -MAX_MOTION, MAX_MOTION),
      ),
    );
  }

  button(surfaceId: number, button: number, pressed: boolean): void {
    const w = this.host.channel.writer;
    this.send(
      writeButton(
        w,
        integer(surfaceId, 'surfaceId', 1, U32_MAX),
        integer(button, 'button', BUTTON_MIN, BUTTON_MAX),
        boolean(pressed, 'pressed'),
      ),
    );
  }

  scroll(surfaceId: number, dx: number, dy: number): void {
    const w = this.host.channel.writer;
    this.send(
      writeScroll(
        w,
        integer(surfaceId, 'surfaceId', 1, U32_MAX),
        integer(dx, 'dx', -MAX_SCROLL, MAX_SCROLL),
        integer(dy, 'dy', -MAX_SCROLL, MAX_SCROLL),
      ),
    );
  }

  touch(surfaceId: number, phase: TouchEvent['phase'], slot: number, x: number, y: number): void {
    const p = TOUCH_PHASES.indexOf(phase);
    if (p < 0) throw invalidArgument('phase', "'down', 'move', 'up' or 'cancel'", phase);
    const w = this.host.channel.writer;
    this.send(
      writeTouch(
        w,
        integer(surfaceId, 'surfaceId', 1, U32_MAX),
        p,
        integer(slot, 'slot', 0, MAX_TOUCH_SLOTS - 1),
        integer(x, 'x', 0, U32_MAX),
        integer(y, 'y', 0, U32_MAX),
      ),
    );
  }
}
