/**
 * The demo's answer to input (input.v1, or a browser through the stream server): the loop a
 * person can see close. In absolute mode the box follows the pointer (or a finger); in relative
 * mode it moves by the motion; a left click or a wheel step changes its colour; a right click
 * switches between absolute and relative; the keys held show as their evdev codes in a panel at
 * the bottom. The cursor is an arrow on its own plane (cursor.v1), moved with the pointer and
 * never drawn into the frames.
 *
 * Until the first event the demo shows the plain pattern, frame for frame (tests compare it).
 */
import type { CursorImage, InputEvent, SharedSurface } from '../index.js';
import { boxX, boxY, type PatternLayout, type Scene } from './pattern.js';

const BTN_LEFT = 0x110;
const BTN_RIGHT = 0x111;

/*
 * The arrow, one string per row: '#' black outline, 'o' white fill, '.' transparent. Its
 * hotspot is the tip, the top-left pixel.
 */
const ARROW = [
  '#...........',
  '##..........',
  '#o#.........',
  '#oo#........',
  '#ooo#.......',
  '#oooo#......',
  '#ooooo#.....',
  '#oooooo#....',
  '#ooooooo#...',
  '#oooooooo#..',
  '#ooooooooo#.',
  '#oooooo#####',
  '#ooo#oo#....',
  '#oo##oo#....',
  '#o#..#oo#...',
  '##...#oo#...',
  '#.....#oo#..',
  '......#oo#..',
  '.......##...',
];

/** A 12×19 arrow cursor, ARGB8888 (bytes B, G, R, A), hotspot at its tip (0, 0). */
export function arrowCursor(): CursorImage {
  const width = ARROW[0].length;
  const height = ARROW.length;
  const pixels = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const c = ARROW[y][x];
      if (c === '.') continue;
      const v = c === 'o' ? 0xff : 0x00;
      pixels.set([v, v, v, 0xff], (y * width + x) * 4);
    }
  return { width, height, hotspotX: 0, hotspotY: 0, pixels };
}

/** What input did to the demo: where the pointer is, the box colour, the keys held. */
export class DemoInput {
  /** Events taken (validated by the server). */
  events = 0;
  /** Where the pointer is, picture pixels; null until the first pointer, motion or touch event. */
  private pointer: { x: number; y: number } | null = null;
  private colour = 0;
  private readonly keys: number[] = [];

  constructor(
    private readonly layout: PatternLayout,
    private readonly surface: SharedSurface,
  ) {}

  /** Puts the arrow on the surface (hidden until the pointer moves). */
  installCursor(): void {
    this.surface.setCursor(arrowCursor());
  }

  /** One validated event for this surface (others are ignored). */
  handle(event: InputEvent, frame: number): void {
    if (event.surfaceId !== this.surface.id) return;
    this.events++;
    const { width, height } = this.layout;
    switch (event.kind) {
      case 'pointer':
        this.pointTo(event.x, event.y);
        break;
      case 'touch':
        if (event.phase === 'down' || event.phase === 'move') this.pointTo(event.x, event.y);
        break;
      case 'motion': {
        // Relative mode starts from where the box is.
        const from = this.pointer ?? {
          x: boxX(this.layout, frame) + (this.layout.box >> 1),
          y: boxY(this.layout, frame) + (this.layout.box >> 1),
        };
        this.pointTo(clamp(from.x + event.dx, 0, width - 1), clamp(from.y + event.dy, 0, height - 1));
        break;
      }
      case 'button':
        if (!event.pressed) break;
        if (event.button === BTN_RIGHT)
          this.surface.setInputMode(this.surface.inputMode === 'absolute' ? 'relative' : 'absolute');
        else if (event.button === BTN_LEFT) this.colour++;
        break;
      case 'scroll':
        if (event.dy !== 0 || event.dx !== 0) this.colour = Math.max(1, this.colour + Math.sign(event.dy || event.dx));
        break;
      case 'key': {
        const i = this.keys.indexOf(event.code);
        if (event.pressed && i < 0) this.keys.push(event.code);
        else if (!event.pressed && i >= 0) this.keys.splice(i, 1);
        break;
      }
    }
  }

  private pointTo(x: number, y: number): void {
    this.pointer = { x, y };
    this.surface.moveCursor(x, y, true);
  }

  /** Whether anything has happened yet (before that, frames are the plain pattern). */
  get touched(): boolean {
    return this.events > 0;
  }

  /** Frame `frame` as the scene input made it, written into `out`. */
  scene(frame: number, out: Scene): Scene {
    const { layout } = this;
    out.frame = frame;
    if (this.pointer) {
      // The box is centred on the pointer, kept inside the surface.
      out.boxX = clamp(this.pointer.x - (layout.box >> 1), 0, layout.width - layout.box);
      out.boxY = clamp(this.pointer.y - (layout.box >> 1), 0, layout.height - layout.box);
    } else {
      out.boxX = boxX(layout, frame);
      out.boxY = boxY(layout, frame);
    }
    out.colour = this.colour;
    out.keys.length = 0;
    for (let i = 0; i < this.keys.length; i++) out.keys.push(this.keys[i]);
    return out;
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
