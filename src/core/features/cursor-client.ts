/**
 * cursor.v1, the client's half: each surface's cursor image (CURSOR_SHAPE, a sealed memfd checked
 * like a shm.v1 buffer, copied out, then closed) and position (CURSOR_MOVE), as CursorState.
 * docs/protocol.md §3.18, §3.19; who owns what: docs/ownership.md §2.11.
 */
import { SurfaceLinkError } from '../../errors.js';
import { formatByName } from '../../formats.js';
import { closeHandles, type OsHandle } from '../../handles.js';
import { MAX_CURSOR_SIDE, type CursorImage, type CursorState } from '../../input.js';
import { shmMechanism } from '../../mechanisms/shm.js';
import { winshmMechanism } from '../../mechanisms/winshm.js';
import { ImportRefused } from '../../mechanisms/types.js';
import { readCursorMove, readCursorShape, type CursorShapeBody } from '../../protocol/codec.js';
import { MessageType } from '../../protocol/constants.js';
import type { ClientFeature } from './types.js';

/** What cursor.v1 needs from its client. */
export interface CursorClientHost {
  emitCursor(surfaceId: number, state: CursorState, shapeChanged: boolean): void;
  /** A valid image could not be mapped here (a local failure, not the server's): reported, not fatal. */
  emitWarning(error: SurfaceLinkError): void;
}

const ARGB8888 = formatByName('ARGB8888');

export class CursorClient implements ClientFeature<CursorClientHost> {
  readonly name = 'cursor.v1';
  readonly serverMessages: ReadonlyMap<number, number> = new Map([
    [MessageType.CURSOR_SHAPE, 1], // readCursorShape checks the count against the size
    [MessageType.CURSOR_MOVE, 0],
  ]);
  /** Each surface's cursor as the server last described it. */
  readonly states = new Map<number, CursorState>();

  constructor(private readonly host: CursorClientHost) {}

  onMessage(
    _host: CursorClientHost,
    type: number,
    view: DataView,
    start: number,
    length: number,
    handles: OsHandle[] | undefined,
  ): void {
    if (type === MessageType.CURSOR_MOVE) {
      const m = readCursorMove(view, start, length);
      const old = this.state(m.surfaceId);
      const state: CursorState = { image: old.image, x: m.x, y: m.y, visible: m.visible, serial: old.serial };
      this.states.set(m.surfaceId, state);
      this.host.emitCursor(m.surfaceId, state, false);
      return;
    }
    let image: CursorImage | null;
    let shape: CursorShapeBody;
    try {
      shape = readCursorShape(view, start, length);
      image = shape.width === 0 && shape.height === 0 ? null : this.importImage(shape, handles![0]);
    } finally {
      closeHandles(handles); // the pixels were copied out: nothing of the memfd is kept
    }
    const old = this.state(shape.surfaceId);
    const state: CursorState = { image, x: old.x, y: old.y, visible: old.visible, serial: shape.serial };
    this.states.set(shape.surfaceId, state);
    this.host.emitCursor(shape.surfaceId, state, true);
  }

  private state(surfaceId: number): CursorState {
    return this.states.get(surfaceId) ?? { image: null, x: 0, y: 0, visible: false, serial: 0 };
  }

  /**
   * Validates the memfd as shm.v1 validates a buffer (a memfd, sealed against shrinking, at least
   * width × height × 4 bytes) — on Windows the section as winshm.v1 does — maps it, copies the
   * pixels out and unmaps it.
   */
  private importImage(s: CursorShapeBody, handle: OsHandle): CursorImage | null {
    const { width, height, hotspotX, hotspotY } = s;
    if (width < 1 || height < 1 || width > MAX_CURSOR_SIDE || height > MAX_CURSOR_SIDE)
      throw new SurfaceLinkError(
        'E_BAD_GEOMETRY',
        `CURSOR_SHAPE: ${width}x${height} is outside 1..${MAX_CURSOR_SIDE} on a side`,
      );
    if (hotspotX >= width || hotspotY >= height)
      throw new SurfaceLinkError(
        'E_BAD_GEOMETRY',
        `CURSOR_SHAPE: hotspot ${hotspotX},${hotspotY} is not inside the ${width}x${height} image`,
      );
    const size = width * height * 4;
    let pixels: Uint8Array;
    try {
      // A memfd checked as shm.v1 checks one; on Windows a section checked as winshm.v1 does.
      const mechanism = handle.kind === 'nt' ? winshmMechanism : shmMechanism;
      const mapped = mechanism.importBuffer!(
        {
          surfaceId: s.surfaceId,
          bufferId: 0,
          generation: 0,
          width,
          height,
          format: ARGB8888.fourcc,
          modifier: 0n,
          orientation: 0,
          visible: { x: 0, y: 0, width, height },
          planes: [{ handleIndex: 0, stride: width * 4, offset: 0, size }],
        },
        ARGB8888,
        [handle],
        {},
      );
      try {
        pixels = mapped.views[0].slice(0, size);
      } finally {
        mapped.close();
      }
    } catch (error) {
      const e = SurfaceLinkError.fromNative(error);
      // A valid memfd the system would not map is our problem, not a protocol violation.
      if (e.code !== 'E_SYSTEM' && !(e instanceof ImportRefused)) throw e;
      this.host.emitWarning(new SurfaceLinkError(e.code, `the cursor image of surface ${s.surfaceId}: ${e.message}`));
      return null;
    }
    return Object.freeze({ width, height, hotspotX, hotspotY, pixels });
  }

  /** The surface went away. */
  surfaceGone(surfaceId: number): void {
    this.states.delete(surfaceId);
  }

  end(): void {
    this.states.clear();
  }
}
