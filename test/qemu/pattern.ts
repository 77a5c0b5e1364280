/**
 * The test guest's picture (test/qemu/guest/testkern.c, "PICTURE CONTRACT"), computed here so a
 * test can check a screendump, or the pixels a viewer shows, exactly: read the state the guest
 * drew from the bar at the top (frame number, mode, input), then compare every pixel with
 * {@link expectedPixel}. Keep this file and the guest's contract comment in step.
 */

/** Height of the bar that carries the guest's state as bit blocks. */
export const BAR = 32;
/** Size of the moving box (mode box). */
export const BOX = 64;
/** Size of the mouse square. */
export const SQUARE = 16;
/** First row of the animated area in mode full. */
export const FULL_TOP = 40;
/** Colour of a set bit block. */
export const BIT_ON = 0xffffff;
/** Colour of a clear bit block. */
export const BIT_OFF = 0x404040;
/** The bar's background (mode all: XOR the frame number's low byte). */
export const BAR_BG = 0x202020;
/** The box's colour. */
export const BOX_COLOUR = 0xffff00;
/** What QEMU shows of a colour when the guest runs at 16 bits per pixel (5:6:5, no bit replication). */
export const RGB565_MASK = 0xf8fcf8;

/** The guest's animation modes, in the order of their 2-bit code in the bar. */
export const MODES = ['static', 'box', 'full', 'all'] as const;
/** One of the guest's animation modes. */
export type GuestMode = (typeof MODES)[number];

/** Everything the guest's picture depends on; the bar encodes all of it but the size. */
export interface GuestState {
  /** Mode size. */
  width: number;
  /** Mode size. */
  height: number;
  /** Frame number drawn (in mode static: the frame tick of the last redraw). */
  frame: number;
  /** Animation mode. */
  mode: GuestMode;
  /** The guest runs at 16 bits per pixel (colours appear masked with {@link RGB565_MASK}). */
  bpp16: boolean;
  /** Last PS/2 keyboard byte (make or break code). */
  key: number;
  /** Keyboard bytes received, mod 256. */
  keys: number;
  /** Mouse square's top-left corner. */
  mouseX: number;
  /** Mouse square's top-left corner. */
  mouseY: number;
  /** Mouse buttons: bit 0 left, bit 1 right, bit 2 middle. */
  buttons: number;
}

/** The background at (x, y): a function of the position only. 0xRRGGBB. */
export function background(x: number, y: number): number {
  return (((x >> 8) & 15) << 20) | (((y >> 8) & 15) << 16) | ((y & 255) << 8) | (x & 255);
}

/** The box's top-left corner in mode box at frame `frame`. */
export function boxPosition(width: number, height: number, frame: number): { x: number; y: number } {
  const sx = width - BOX;
  const sy = height - BAR - BOX;
  // The guest computes 4N and 3N in 32 bits.
  const t = ((4 * frame) >>> 0) % (2 * sx);
  const u = ((3 * frame) >>> 0) % (2 * sy);
  return { x: t < sx ? t : 2 * sx - t, y: BAR + (u < sy ? u : 2 * sy - u) };
}

/** The mouse square's colour for a button mask. */
export function mouseColour(buttons: number): number {
  return 0xff0000 | (buttons & 1 ? 0x0000ff : 0) | (buttons & 2 ? 0x00c000 : 0) | (buttons & 4 ? 0x003000 : 0);
}

/** The guest's initial mouse square position for a mode size. */
export function initialMouse(width: number, height: number): { x: number; y: number } {
  return { x: Math.floor(width / 2) - SQUARE / 2, y: Math.floor(height / 2) - SQUARE / 2 };
}

interface BitField {
  row: 'A' | 'B';
  slot: number;
  bits: number;
  get: (s: GuestState) => number;
}

const FIELDS: Record<string, BitField> = {
  frame: { row: 'A', slot: 0, bits: 32, get: (s) => s.frame },
  mode: { row: 'A', slot: 33, bits: 2, get: (s) => MODES.indexOf(s.mode) },
  bpp16: { row: 'A', slot: 36, bits: 1, get: (s) => (s.bpp16 ? 1 : 0) },
  key: { row: 'B', slot: 0, bits: 8, get: (s) => s.key },
  keys: { row: 'B', slot: 9, bits: 8, get: (s) => s.keys },
  mouseX: { row: 'B', slot: 18, bits: 12, get: (s) => s.mouseX },
  mouseY: { row: 'B', slot: 31, bits: 12, get: (s) => s.mouseY },
  left: { row: 'B', slot: 44, bits: 1, get: (s) => s.buttons & 1 },
  right: { row: 'B', slot: 45, bits: 1, get: (s) => (s.buttons >> 1) & 1 },
  middle: { row: 'B', slot: 46, bits: 1, get: (s) => (s.buttons >> 2) & 1 },
};
const ROW_Y = { A: 4, B: 18 };

/** Which bit block covers (x, y) in the bar, and the bit's value in `state`; null for the bar's background. */
function barBit(x: number, y: number, state: GuestState): number | null {
  const slotX = x - 8;
  if (slotX < 0 || slotX % 8 >= 6) return null;
  const slot = slotX >> 3;
  const row = y >= ROW_Y.A && y < ROW_Y.A + 10 ? 'A' : y >= ROW_Y.B && y < ROW_Y.B + 10 ? 'B' : null;
  if (!row) return null;
  for (const f of Object.values(FIELDS)) {
    if (f.row === row && slot >= f.slot && slot < f.slot + f.bits) {
      const value = f.get(state);
      // Bit numbers reach 31: `>>>` keeps the frame number unsigned.
      return (value >>> (f.bits - 1 - (slot - f.slot))) & 1;
    }
  }
  return null;
}

/** The colour (0xRRGGBB) the guest draws at (x, y) in `state`, as QEMU shows it. */
export function expectedPixel(x: number, y: number, state: GuestState): number {
  const c = unmaskedPixel(x, y, state);
  return state.bpp16 ? c & RGB565_MASK : c;
}

function unmaskedPixel(x: number, y: number, s: GuestState): number {
  if (y < BAR) {
    const bit = barBit(x, y, s);
    if (bit !== null) return bit ? BIT_ON : BIT_OFF;
    return s.mode === 'all' ? BAR_BG ^ (s.frame & 255) : BAR_BG;
  }
  if (x >= s.mouseX && x < s.mouseX + SQUARE && y >= s.mouseY && y < s.mouseY + SQUARE) return mouseColour(s.buttons);
  if (s.mode === 'box') {
    const b = boxPosition(s.width, s.height, s.frame);
    if (x >= b.x && x < b.x + BOX && y >= b.y && y < b.y + BOX) return BOX_COLOUR;
  }
  const anim = (s.mode === 'full' && y >= FULL_TOP) || s.mode === 'all' ? (s.frame & 255) * 0x010101 : 0;
  return background(x, y) ^ anim;
}

/** A picture to check: `pixel(x, y)` returns 0xRRGGBB. */
export interface Picture {
  width: number;
  height: number;
  pixel(x: number, y: number): number;
}

/** A picture over B,G,R,X bytes (QEMU's PIXMAN_x8r8g8b8 in memory, as D-Bus Scanout/Update carry it). */
export function bgrxPicture(data: Uint8Array, width: number, height: number, stride = width * 4): Picture {
  return {
    width,
    height,
    pixel: (x, y) => {
      const o = y * stride + x * 4;
      return (data[o + 2] << 16) | (data[o + 1] << 8) | data[o];
    },
  };
}

/** A picture over R,G,B bytes (a PPM's pixels). */
export function rgbPicture(data: Uint8Array, width: number, height: number): Picture {
  return {
    width,
    height,
    pixel: (x, y) => {
      const o = (y * width + x) * 3;
      return (data[o] << 16) | (data[o + 1] << 8) | data[o + 2];
    },
  };
}

/** Parses a binary PPM (P6, maxval 255), as QMP `screendump` writes it. */
export function parsePpm(buf: Buffer): { width: number; height: number; rgb: Uint8Array } {
  const header = /^P6\s+(\d+)\s+(\d+)\s+(\d+)\s/.exec(buf.subarray(0, 64).toString('latin1'));
  if (!header || header[3] !== '255') throw new Error('not a binary PPM with maxval 255');
  const width = Number(header[1]);
  const height = Number(header[2]);
  const rgb = buf.subarray(header[0].length, header[0].length + width * height * 3);
  if (rgb.length !== width * height * 3) throw new Error(`PPM truncated: ${rgb.length} of ${width * height * 3} bytes`);
  return { width, height, rgb };
}

/**
 * Reads the guest's state from the bar of `pic`. Throws when a bit block holds neither colour
 * (not the guest's picture, or not fully drawn).
 */
export function readState(pic: Picture): GuestState {
  const read = (f: BitField): number => {
    let v = 0;
    for (let i = 0; i < f.bits; i++) {
      const x = 8 + 8 * (f.slot + i) + 3;
      const y = ROW_Y[f.row] + 5;
      const c = pic.pixel(x, y);
      let bit: number;
      if (c === BIT_ON || c === (BIT_ON & RGB565_MASK)) bit = 1;
      else if (c === BIT_OFF) bit = 0;
      else throw new Error(`no testkern bit block at (${x}, ${y}): ${hex(c)}`);
      v = v * 2 + bit;
    }
    return v;
  };
  return {
    width: pic.width,
    height: pic.height,
    frame: read(FIELDS.frame),
    mode: MODES[read(FIELDS.mode)],
    bpp16: read(FIELDS.bpp16) === 1,
    key: read(FIELDS.key),
    keys: read(FIELDS.keys),
    mouseX: read(FIELDS.mouseX),
    mouseY: read(FIELDS.mouseY),
    buttons: read(FIELDS.left) | (read(FIELDS.right) << 1) | (read(FIELDS.middle) << 2),
  };
}

/** Result of {@link checkPicture}. */
export interface CheckResult {
  /** The state read from the bar. */
  state: GuestState;
  /** Pixels that differ from {@link expectedPixel}. */
  mismatches: number;
  /** The first few differences, for the failure message. */
  examples: { x: number; y: number; got: string; want: string }[];
}

/** Reads the state from the bar, then compares every pixel of `pic` with the picture for that state. */
export function checkPicture(pic: Picture): CheckResult {
  const state = readState(pic);
  const examples: CheckResult['examples'] = [];
  let mismatches = 0;
  for (let y = 0; y < pic.height; y++) {
    for (let x = 0; x < pic.width; x++) {
      const got = pic.pixel(x, y);
      const want = expectedPixel(x, y, state);
      if (got !== want) {
        mismatches++;
        if (examples.length < 8) examples.push({ x, y, got: hex(got), want: hex(want) });
      }
    }
  }
  return { state, mismatches, examples };
}

/** {@link checkPicture} over a B,G,R,X buffer (e.g. a D-Bus listener's copy of the console). */
export function checkBgrx(data: Uint8Array, width: number, height: number, stride = width * 4): CheckResult {
  return checkPicture(bgrxPicture(data, width, height, stride));
}

/** {@link checkPicture} over a PPM screendump. */
export function checkPpm(buf: Buffer): CheckResult {
  const { width, height, rgb } = parsePpm(buf);
  return checkPicture(rgbPicture(rgb, width, height));
}

/** Size of the guest's hardware cursor images (vmware, cursor=1). */
export const CURSOR_SIZE = 32;

/**
 * The guest's hardware cursor image `k` (0 at boot, the C key toggles) as QEMU hands it to a
 * display listener: `CursorDefine(width, height, hot_x, hot_y, data)`, data ARGB32 in host
 * (little-endian) order, i.e. bytes B,G,R,A; alpha 0xFF opaque, fully transparent pixels all zero.
 */
export function cursorImage(k: 0 | 1): { width: number; height: number; hotX: number; hotY: number; data: Buffer } {
  const data = Buffer.alloc(CURSOR_SIZE * CURSOR_SIZE * 4);
  for (let y = 0; y < CURSOR_SIZE; y++) {
    for (let x = 0; x < CURSOR_SIZE; x++) {
      const opaque = k === 0 ? x <= y : x < 4 || x >= 28 || y < 4 || y >= 28;
      const argb = opaque ? (0xff000000 | ((x * 8) << 16) | ((y * 8) << 8) | (k === 0 ? 0x40 : 0xc0)) >>> 0 : 0;
      data.writeUInt32LE(argb, (y * CURSOR_SIZE + x) * 4);
    }
  }
  return { width: CURSOR_SIZE, height: CURSOR_SIZE, hotX: k ? 15 : 0, hotY: k ? 15 : 0, data };
}

function hex(c: number): string {
  return '#' + c.toString(16).padStart(6, '0');
}
