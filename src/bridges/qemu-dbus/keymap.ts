/**
 * Linux evdev codes (what viewers send, as Wayland does) → what QEMU's D-Bus display takes:
 * keyboard "qnum" (XT set-1 scancodes; an E0-prefixed key is 0x80 | its second byte) and mouse
 * button numbers. The values are the XT/AT set-1 scancodes of the PC keyboard (the same data as
 * QEMU's keycodemapdb); evdev codes 1–83 are the scancodes themselves.
 */

/** evdev codes above 83 → qnum. Codes 1..83 map to themselves. */
const EXTENDED: ReadonlyMap<number, number> = new Map([
  [85, 0x76], // KEY_ZENKAKUHANKAKU
  [86, 0x56], // KEY_102ND
  [87, 0x57], // KEY_F11
  [88, 0x58], // KEY_F12
  [89, 0x73], // KEY_RO
  [90, 0x78], // KEY_KATAKANA
  [91, 0x77], // KEY_HIRAGANA
  [92, 0x79], // KEY_HENKAN
  [93, 0x70], // KEY_KATAKANAHIRAGANA
  [94, 0x7b], // KEY_MUHENKAN
  [95, 0x5c], // KEY_KPJPCOMMA
  [96, 0x9c], // KEY_KPENTER (E0 1C)
  [97, 0x9d], // KEY_RIGHTCTRL (E0 1D)
  [98, 0xb5], // KEY_KPSLASH (E0 35)
  [99, 0x54], // KEY_SYSRQ
  [100, 0xb8], // KEY_RIGHTALT (E0 38)
  [102, 0xc7], // KEY_HOME (E0 47)
  [103, 0xc8], // KEY_UP
  [104, 0xc9], // KEY_PAGEUP
  [105, 0xcb], // KEY_LEFT
  [106, 0xcd], // KEY_RIGHT
  [107, 0xcf], // KEY_END
  [108, 0xd0], // KEY_DOWN
  [109, 0xd1], // KEY_PAGEDOWN
  [110, 0xd2], // KEY_INSERT
  [111, 0xd3], // KEY_DELETE
  [113, 0xa0], // KEY_MUTE (E0 20)
  [114, 0xae], // KEY_VOLUMEDOWN (E0 2E)
  [115, 0xb0], // KEY_VOLUMEUP (E0 30)
  [116, 0xde], // KEY_POWER (E0 5E)
  [117, 0x59], // KEY_KPEQUAL
  [119, 0xc6], // KEY_PAUSE (E0 46 in QEMU's numbering)
  [121, 0x7e], // KEY_KPCOMMA
  [124, 0x7d], // KEY_YEN
  [125, 0xdb], // KEY_LEFTMETA (E0 5B)
  [126, 0xdc], // KEY_RIGHTMETA (E0 5C)
  [127, 0xdd], // KEY_COMPOSE (E0 5D)
  [183, 0x5d], // KEY_F13
  [184, 0x5e], // KEY_F14
  [185, 0x5f], // KEY_F15
]);

/** The qnum QEMU's Keyboard.Press/Release takes for an evdev key code, or null if it has none. */
export function evdevToQnum(code: number): number | null {
  if (Number.isInteger(code) && code >= 1 && code <= 83) return code;
  return EXTENDED.get(code) ?? null;
}

/** evdev BTN_* → QEMU's Mouse button numbers (0 left, 1 middle, 2 right, 5 side, 6 extra); wheel is 3/4. */
const BUTTONS: ReadonlyMap<number, number> = new Map([
  [0x110, 0], // BTN_LEFT
  [0x112, 1], // BTN_MIDDLE
  [0x111, 2], // BTN_RIGHT
  [0x113, 5], // BTN_SIDE
  [0x114, 6], // BTN_EXTRA
]);

/** QEMU's wheel "buttons": a press and a release per notch. */
export const QEMU_WHEEL_UP = 3;
export const QEMU_WHEEL_DOWN = 4;

/** QEMU's Mouse button for an evdev BTN_* code, or null if it has none. */
export function evdevToQemuButton(button: number): number | null {
  return BUTTONS.get(button) ?? null;
}
