/**
 * Input and cursor, as the producer and its viewers see them (the `input.v1` and `cursor.v1`
 * session features; docs/protocol.md). Key codes are Linux evdev codes (`KEY_*` from
 * linux/input-event-codes.h, as Wayland sends them); buttons are evdev `BTN_*` codes
 * (BTN_LEFT 0x110, BTN_RIGHT 0x111, BTN_MIDDLE 0x112, BTN_SIDE 0x113, BTN_EXTRA 0x114).
 * Coordinates are pixels of the surface's picture as the viewer shows it: (0, 0) is the top-left
 * pixel of the visible rectangle, whatever the buffer's orientation (docs/protocol.md §3.11).
 */

/** Whether the producer wants absolute positions (a tablet) or relative motion (a grabbed mouse). */
export type InputMode = 'absolute' | 'relative';

/** Where an input event came from: a local client (frames.v1 socket) or a remote stream viewer. */
export type InputSource = 'local' | 'remote';

interface InputBase {
  /** The surface the viewer was showing. */
  surfaceId: number;
  /** 'local' (an input.v1 client) or 'remote' (a stream viewer). */
  source: InputSource;
  /** The local client's id (ClientInfo.id) or the stream client's id (StreamClientInfo.id). */
  clientId: number;
}

/** A key went down or up (evdev code, e.g. KEY_A = 30). */
export interface KeyEvent extends InputBase {
  /** What happened. */
  kind: 'key';
  /** The evdev key code, 1..0x2ff. */
  code: number;
  /** True: the key went down; false: up. */
  pressed: boolean;
}

/** The pointer is at (x, y), surface pixels (absolute mode). */
export interface PointerEvent extends InputBase {
  /** What happened. */
  kind: 'pointer';
  /** Column, 0 at the picture's left edge. */
  x: number;
  /** Row, 0 at the picture's top edge. */
  y: number;
}

/** The pointer moved by (dx, dy) pixels (relative mode). */
export interface MotionEvent extends InputBase {
  /** What happened. */
  kind: 'motion';
  /** Pixels right (negative: left). */
  dx: number;
  /** Pixels down (negative: up). */
  dy: number;
}

/** A button went down or up (evdev BTN_* code). */
export interface ButtonEvent extends InputBase {
  /** What happened. */
  kind: 'button';
  /** The evdev button code, BTN_LEFT (0x110) .. 0x117. */
  button: number;
  /** True: the button went down; false: up. */
  pressed: boolean;
}

/** Wheel steps: dy > 0 scrolls down (towards the user), dx > 0 scrolls right; one notch = 1. */
export interface ScrollEvent extends InputBase {
  /** What happened. */
  kind: 'scroll';
  /** Notches right (negative: left). */
  dx: number;
  /** Notches down (negative: up). */
  dy: number;
}

/** One touch point (multi-touch slot) began, moved, ended or was cancelled, at surface pixels. */
export interface TouchEvent extends InputBase {
  /** What happened. */
  kind: 'touch';
  /** The touch point began, moved, ended or was cancelled. */
  phase: 'down' | 'move' | 'up' | 'cancel';
  /** Which touch point (multi-touch slot), 0..15. */
  slot: number;
  /** Column, as PointerEvent.x. */
  x: number;
  /** Row, as PointerEvent.y. */
  y: number;
}

/** An input event a viewer sent, validated by the server (`SurfaceServer` 'input' event). */
export type InputEvent = KeyEvent | PointerEvent | MotionEvent | ButtonEvent | ScrollEvent | TouchEvent;

/** A cursor image: ARGB8888 (bytes B, G, R, A in memory), rows of width × 4 bytes, with its hotspot. */
export interface CursorImage {
  /** Width in pixels, 1..MAX_CURSOR_SIDE. */
  width: number;
  /** Height in pixels, 1..MAX_CURSOR_SIDE. */
  height: number;
  /** The hotspot's column: the image pixel that sits at the cursor position. */
  hotspotX: number;
  /** The hotspot's row. */
  hotspotY: number;
  /** width × height × 4 bytes, rows top to bottom. */
  pixels: Uint8Array;
}

/** The cursor of a surface: its image (null: none defined), position (surface pixels) and visibility. */
export interface CursorState {
  /** The image, or null for none. */
  image: CursorImage | null;
  /** Where the hotspot is: column of the picture (may lie outside it). */
  x: number;
  /** Row of the picture. */
  y: number;
  /** Whether the cursor is shown. */
  visible: boolean;
  /** Bumped each time the image changes (position changes do not bump it). */
  serial: number;
}

/** Most pixels on a cursor side (larger images are refused with E_BAD_GEOMETRY). */
export const MAX_CURSOR_SIDE = 256;
