/**
 * KeyboardEvent.code → Linux evdev key code (KEY_* in linux/input-event-codes.h), what the
 * stream's `key` message carries (docs/remote.md §3.1). `code` names the physical key whatever
 * the layout, so the producer applies its own keymap, as a Wayland compositor does.
 *
 * Complete for a standard 105-key (ISO) keyboard and its 104-key (ANSI) variant, plus the
 * Japanese and Korean keys, F13–F24 and the common media keys. A key not listed is not sent
 * (and left to the page).
 */
export const EVDEV_KEYS = Object.freeze({
  // Function row.
  Escape: 1, // KEY_ESC
  F1: 59,
  F2: 60,
  F3: 61,
  F4: 62,
  F5: 63,
  F6: 64,
  F7: 65,
  F8: 66,
  F9: 67,
  F10: 68,
  F11: 87,
  F12: 88,
  PrintScreen: 99, // KEY_SYSRQ
  ScrollLock: 70,
  Pause: 119,
  // Number row.
  Backquote: 41, // KEY_GRAVE
  Digit1: 2,
  Digit2: 3,
  Digit3: 4,
  Digit4: 5,
  Digit5: 6,
  Digit6: 7,
  Digit7: 8,
  Digit8: 9,
  Digit9: 10,
  Digit0: 11,
  Minus: 12,
  Equal: 13,
  Backspace: 14,
  // Top letter row.
  Tab: 15,
  KeyQ: 16,
  KeyW: 17,
  KeyE: 18,
  KeyR: 19,
  KeyT: 20,
  KeyY: 21,
  KeyU: 22,
  KeyI: 23,
  KeyO: 24,
  KeyP: 25,
  BracketLeft: 26, // KEY_LEFTBRACE
  BracketRight: 27, // KEY_RIGHTBRACE
  Enter: 28,
  // Home row.
  CapsLock: 58,
  KeyA: 30,
  KeyS: 31,
  KeyD: 32,
  KeyF: 33,
  KeyG: 34,
  KeyH: 35,
  KeyJ: 36,
  KeyK: 37,
  KeyL: 38,
  Semicolon: 39,
  Quote: 40, // KEY_APOSTROPHE
  Backslash: 43, // ANSI \ above Enter; ISO # left of Enter (same key position)
  // Bottom row.
  ShiftLeft: 42,
  IntlBackslash: 86, // KEY_102ND: the ISO key between left Shift and Z
  KeyZ: 44,
  KeyX: 45,
  KeyC: 46,
  KeyV: 47,
  KeyB: 48,
  KeyN: 49,
  KeyM: 50,
  Comma: 51,
  Period: 52, // KEY_DOT
  Slash: 53,
  ShiftRight: 54,
  // Space row.
  ControlLeft: 29,
  MetaLeft: 125,
  AltLeft: 56,
  Space: 57,
  AltRight: 100, // AltGr
  MetaRight: 126,
  ContextMenu: 127, // KEY_COMPOSE (the Menu key)
  ControlRight: 97,
  // Navigation block.
  Insert: 110,
  Home: 102,
  PageUp: 104,
  Delete: 111,
  End: 107,
  PageDown: 109,
  ArrowUp: 103,
  ArrowLeft: 105,
  ArrowDown: 108,
  ArrowRight: 106,
  // Numeric keypad.
  NumLock: 69,
  NumpadDivide: 98,
  NumpadMultiply: 55, // KEY_KPASTERISK
  NumpadSubtract: 74,
  Numpad7: 71,
  Numpad8: 72,
  Numpad9: 73,
  NumpadAdd: 78,
  Numpad4: 75,
  Numpad5: 76,
  Numpad6: 77,
  Numpad1: 79,
  Numpad2: 80,
  Numpad3: 81,
  NumpadEnter: 96,
  Numpad0: 82,
  NumpadDecimal: 83, // KEY_KPDOT
  NumpadEqual: 117,
  NumpadComma: 121,
  // Japanese and Korean keyboards.
  IntlRo: 89, // KEY_RO
  IntlYen: 124, // KEY_YEN
  Convert: 92, // KEY_HENKAN
  NonConvert: 94, // KEY_MUHENKAN
  KanaMode: 93, // KEY_KATAKANAHIRAGANA
  Lang1: 122, // KEY_HANGEUL
  Lang2: 123, // KEY_HANJA
  // F13–F24.
  F13: 183,
  F14: 184,
  F15: 185,
  F16: 186,
  F17: 187,
  F18: 188,
  F19: 189,
  F20: 190,
  F21: 191,
  F22: 192,
  F23: 193,
  F24: 194,
  // Media and system keys.
  AudioVolumeMute: 113, // KEY_MUTE
  AudioVolumeDown: 114,
  AudioVolumeUp: 115,
  MediaTrackNext: 163, // KEY_NEXTSONG
  MediaPlayPause: 164,
  MediaTrackPrevious: 165, // KEY_PREVIOUSSONG
  MediaStop: 166, // KEY_STOPCD
  BrowserBack: 158, // KEY_BACK
  BrowserForward: 159, // KEY_FORWARD
  BrowserRefresh: 173, // KEY_REFRESH
  BrowserHome: 172, // KEY_HOMEPAGE
  BrowserSearch: 217, // KEY_SEARCH
  Power: 116,
  Sleep: 142,
  WakeUp: 143,
  // Older names some browsers still send.
  OSLeft: 125,
  OSRight: 126,
});

/** MouseEvent.button → evdev button: left, middle, right, back, forward. */
export const EVDEV_BUTTONS = Object.freeze([0x110, 0x112, 0x111, 0x113, 0x114]);
