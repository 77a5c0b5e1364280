/**
 * Input and cursor, as the producer and its viewers see them (the `input.v1` and `cursor.v1`
 * session features; docs/protocol.md). Key codes are Linux evdev codes (`KEY_*` from
 * linux/input-event-codes.h, as Wayland sends them); buttons are evdev `BTN_*` codes
 * (BTN_LEFT 0x110, BTN_RIGHT 0x111, BTN_MIDDLE 0x112, BTN_SIDE 0x113, BTN_EXTRA 0x114).
 * Coordinates are surface pixels of the buffer the viewer shows (inside its visible rectangle).
 */

/** Whether the producer wants absolute positions (a tablet) or relative motion (a grabbed mouse). */
export type InputMode = 'absolute' | 'relative';

/** Where an input event came from: a local client (frames.v1 socket) or a remote stream viewer. */
export type InputSource = 'local' | 'remote';

interface InputBase {
  /** The surface the viewer was showing. */
  surfaceId: number;
  source: InputSource;
  /** The local client's id (ClientInfo.id) or the stream client's id (StreamClientInfo.id). */
  clientId: number;
}

/** A key went down or up (evdev code, e.g. KEY_A = 30). */
export interface KeyEvent extends InputBase {
  kind: 'key';
  code: number;
  pressed: boolean;
}

/** The pointer is at (x, y), surface pixels (absolute mode). */
export interface PointerEvent extends InputBase {
  kind: 'pointer';
  x: number;
  y: number;
}

/** The pointer moved by (dx, dy) pixels (relative mode). */
export interface MotionEvent extends InputBase {
  kind: 'motion';
  dx: number;
  dy: number;
}

/** A button went down or up (evdev BTN_* code). */
export interface ButtonEvent extends InputBase {
  kind: 'button';
  button: number;
  pressed: boolean;
}

/** Wheel steps: dy > 0 scrolls down (towards the user), dx > 0 scrolls right; one notch = 1. */
export interface ScrollEvent extends InputBase {
  kind: 'scroll';
  dx: number;
  dy: number;
}

/** One touch point (multi-touch slot) began, moved, ended or was cancelled, at surface pixels. */
export interface TouchEvent extends InputBase {
  kind: 'touch';
  phase: 'down' | 'move' | 'up' | 'cancel';
  slot: number;
  x: number;
  y: number;
}

/** An input event a viewer sent, validated by the server (`SurfaceServer` 'input' event). */
export type InputEvent = KeyEvent | PointerEvent | MotionEvent | ButtonEvent | ScrollEvent | TouchEvent;

/** A cursor image: ARGB8888 (bytes B, G, R, A in memory), rows of width × 4 bytes, with its hotspot. */
export interface CursorImage {
  width: number;
  height: number;
  hotspotX: number;
  hotspotY: number;
  pixels: Uint8Array;
}

/** The cursor of a surface: its image (null: none defined), position (surface pixels) and visibility. */
export interface CursorState {
  image: CursorImage | null;
  x: number;
  y: number;
  visible: boolean;
  /** Bumped each time the image changes (position changes do not bump it). */
  serial: number;
}

/** Most pixels on a cursor side (larger images are refused with E_BAD_GEOMETRY). */
export const MAX_CURSOR_SIDE = 256;
