/**
 * The browser viewer's input and cursor (docs/remote.md §3.1, §8): keyboard, mouse, wheel and
 * touch on the canvas become the stream's input messages, in the picture's pixels; the
 * producer's cursor is drawn on a layer of its own over the canvas (never into the frame).
 *
 * - Keyboard: captured while the canvas has focus (click it, or Tab to it). Keys in the evdev
 *   table (keymap.js) are sent and their default action prevented; others are left to the page.
 *   Autorepeat is not sent (the producer repeats, as a Wayland client does). Ctrl+Alt+G
 *   releases the keyboard (and the mouse), and is not sent. Some shortcuts are the browser's
 *   whatever a page does (Ctrl+W, Ctrl+T, Ctrl+N, Alt+F4 …).
 * - Mouse, absolute mode: the position scaled from the fitted canvas to surface pixels, buttons
 *   as evdev BTN_* codes; a drag that leaves the canvas keeps going (clamped to the edge).
 * - Mouse, relative mode: a click on the canvas asks for pointer lock (that click is not sent);
 *   while locked, movementX/Y (scaled to surface pixels) becomes `motion`. Esc ends the lock
 *   (the browser's rule).
 * - Wheel: whole notches (100 pixels, 3 lines or 1 page each; the remainder is kept).
 * - Touch: each finger gets a slot (0–15) from touchstart to touchend/touchcancel.
 * - Moves (pointer, motion, touch moves) are coalesced: at most one message of each per 16 ms,
 *   and a key, button, wheel or touch down/up first sends what is pending, so order holds.
 * - Leaving (blur, Ctrl+Alt+G, pointer lock lost) releases every key and button still held.
 */
import { EVDEV_BUTTONS, EVDEV_KEYS } from './keymap.js';

/** Moves are sent at most this often (ms); the newest wins (motion adds up). */
const FLUSH_MS = 16;
const PIXELS_PER_NOTCH = 100;
const LINES_PER_NOTCH = 3;
const TOUCH_SLOTS = 16;
/** The key (with Ctrl and Alt held) that releases keyboard and mouse. */
export const RELEASE_KEY = 'KeyG';
export const RELEASE_TEXT = 'Ctrl+Alt+G';

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

export class RemoteInput {
  /**
   * @param viewer what input needs of the viewer: `canvas`, `width`, `height`, `send(message)`.
   * @param dom `stage` (events), `layer` + `cursor` (the cursor overlay), `status` (the hint line).
   */
  constructor(viewer, dom) {
    this.viewer = viewer;
    this.dom = dom;
    this.connected = false;
    this.allowed = false;
    this.refused = null;
    this.lastWarning = null;
    this.mode = 'absolute';
    this.captured = false;
    this.locked = false;
    this.lockRequests = 0;
    this.lockError = null;
    this.heldKeys = new Set();
    this.heldButtons = new Set();
    /** Touch.identifier → slot. */
    this.touchSlots = new Map();
    /** Slot → its last position sent (for a cancel). */
    this.lastTouch = new Map();
    this.pendingPointer = null;
    /** The last pointer message queued, so a move within the same pixel is not sent again. */
    this.lastPointer = null;
    this.motion = [0, 0];
    this.pendingTouch = new Map();
    this.flushTimer = 0;
    this.lastFlushAt = -Infinity;
    this.scroll = [0, 0];
    this.sent = { key: 0, pointer: 0, motion: 0, button: 0, scroll: 0, touch: 0 };
    this.cursor = { image: null, serial: null, x: 0, y: 0, visible: false };
  }

  start() {
    const s = this.dom.stage;
    s.addEventListener('mousedown', (e) => this.onMouseDown(e));
    addEventListener('mousemove', (e) => this.onMouseMove(e));
    addEventListener('mouseup', (e) => this.onMouseUp(e));
    s.addEventListener('contextmenu', (e) => {
      if (this.active && e.target === this.viewer.canvas) e.preventDefault();
    });
    s.addEventListener('wheel', (e) => this.onWheel(e), { passive: false });
    for (const type of ['touchstart', 'touchmove', 'touchend', 'touchcancel'])
      s.addEventListener(type, (e) => this.onTouch(e), { passive: false });
    s.addEventListener('keydown', (e) => this.onKeyDown(e));
    s.addEventListener('keyup', (e) => this.onKeyUp(e));
    s.addEventListener('focusin', () => this.focusChanged());
    s.addEventListener('focusout', () => this.focusChanged());
    addEventListener('blur', () => this.releaseHeld());
    document.addEventListener('pointerlockchange', () => this.lockChanged());
    document.addEventListener('pointerlockerror', () => {
      this.lockError = 'the browser refused pointer lock';
      this.render();
    });
  }

  /** The server's welcome: whether input is taken, and the mode. */
  welcome(m) {
    this.connected = true;
    this.allowed = m.input === true;
    this.mode = m.inputMode === 'relative' ? 'relative' : 'absolute';
    this.render();
  }

  closed() {
    this.connected = false;
    this.releaseHeld(false);
    this.touchSlots.clear();
    this.lastTouch.clear();
    this.pendingTouch.clear();
    if (this.locked) document.exitPointerLock();
    this.render();
  }

  /** A non-fatal `warning`: E_PERMISSION means no input from us is taken (view only); others are noted. */
  warning(m) {
    this.lastWarning = `${m.code}: ${m.message}`;
    if (m.code !== 'E_PERMISSION') return;
    this.refused = this.lastWarning;
    this.allowed = false;
    this.releaseHeld(false);
    this.render();
  }

  setMode(mode) {
    if (mode !== 'absolute' && mode !== 'relative') return;
    this.mode = mode;
    this.flush();
    if (mode === 'absolute' && this.locked) document.exitPointerLock();
    this.render();
  }

  get active() {
    return this.connected && this.allowed;
  }

  /** The canvas was replaced (a new size): keep the keyboard on it; touches on the old one are cancelled. */
  canvasReplaced(old, canvas) {
    canvas.tabIndex = 0;
    this.cancelTouches();
    if (document.activeElement === old || this.captured) canvas.focus({ preventScroll: true });
    this.layout();
  }

  // ---- sending ----

  send(message) {
    this.sent[message.type]++;
    this.viewer.send(message);
  }

  /** Sends the coalesced moves now. */
  flush() {
    clearTimeout(this.flushTimer);
    this.flushTimer = 0;
    this.lastFlushAt = performance.now();
    if (this.pendingPointer) {
      this.send(this.pendingPointer);
      this.pendingPointer = null;
    }
    const dx = Math.trunc(this.motion[0]);
    const dy = Math.trunc(this.motion[1]);
    if (dx !== 0 || dy !== 0) {
      this.motion[0] -= dx;
      this.motion[1] -= dy;
      this.send({ type: 'motion', dx, dy });
    }
    for (const m of this.pendingTouch.values()) this.send(m);
    this.pendingTouch.clear();
  }

  /** A move was queued: sent at once if nothing went out in the last FLUSH_MS, else when that has passed. */
  scheduleFlush() {
    if (this.flushTimer) return;
    const wait = this.lastFlushAt + FLUSH_MS - performance.now();
    if (wait <= 0) this.flush();
    else this.flushTimer = setTimeout(() => this.flush(), wait);
  }

  /** Sends a discrete event after whatever moves are pending. */
  sendNow(message) {
    this.flush();
    this.send(message);
  }

  /** Lets go of every key and button held (sending the releases while connected). */
  releaseHeld(send = true) {
    if (send && this.active) {
      this.flush();
      for (const button of this.heldButtons) this.send({ type: 'button', button, pressed: false });
      for (const code of this.heldKeys) this.send({ type: 'key', code, pressed: false });
    }
    this.heldButtons.clear();
    this.heldKeys.clear();
  }

  /** Ctrl+Alt+G: keyboard and mouse go back to the page. */
  release() {
    this.releaseHeld();
    if (this.locked) document.exitPointerLock();
    this.viewer.canvas.blur();
    this.render();
  }

  // ---- keyboard ----

  focusChanged() {
    const captured = document.activeElement === this.viewer.canvas;
    if (captured === this.captured) return;
    this.captured = captured;
    if (!captured) this.releaseHeld();
    this.render();
  }

  onKeyDown(e) {
    if (!this.active || !this.captured) return;
    if (e.code === RELEASE_KEY && e.ctrlKey && e.altKey) {
      e.preventDefault();
      this.release();
      return;
    }
    const code = EVDEV_KEYS[e.code];
    if (code === undefined) return;
    e.preventDefault();
    if (e.repeat || this.heldKeys.has(code)) return;
    this.heldKeys.add(code);
    this.sendNow({ type: 'key', code, pressed: true });
  }

  onKeyUp(e) {
    const code = EVDEV_KEYS[e.code];
    if (code === undefined || !this.heldKeys.has(code)) return;
    e.preventDefault();
    this.heldKeys.delete(code);
    if (this.active) this.sendNow({ type: 'key', code, pressed: false });
  }

  // ---- mouse ----

  /** The surface pixel under a client position (clamped to the picture), or null before the first frame. */
  position(clientX, clientY) {
    const { canvas, width, height } = this.viewer;
    const r = canvas.getBoundingClientRect();
    if (!width || !height || r.width <= 0 || r.height <= 0) return null;
    return [
      clamp(Math.floor(((clientX - r.left) * width) / r.width), 0, width - 1),
      clamp(Math.floor(((clientY - r.top) * height) / r.height), 0, height - 1),
    ];
  }

  onMouseDown(e) {
    const canvas = this.viewer.canvas;
    if (e.target !== canvas || !this.active) return;
    canvas.focus({ preventScroll: true });
    if (this.mode === 'relative' && !this.locked) {
      e.preventDefault();
      this.requestLock();
      return;
    }
    const button = EVDEV_BUTTONS[e.button];
    if (button === undefined) return;
    e.preventDefault();
    if (this.mode === 'absolute') this.queuePointer(e);
    if (this.heldButtons.has(button)) return;
    this.heldButtons.add(button);
    this.sendNow({ type: 'button', button, pressed: true });
  }

  onMouseMove(e) {
    if (!this.active) return;
    if (this.locked) {
      const { canvas, width, height } = this.viewer;
      const r = canvas.getBoundingClientRect();
      if (r.width <= 0 || r.height <= 0) return;
      this.motion[0] += (e.movementX * width) / r.width;
      this.motion[1] += (e.movementY * height) / r.height;
      this.scheduleFlush();
      return;
    }
    if (this.mode !== 'absolute') return;
    // Over the canvas, or a drag that started there.
    if (e.target !== this.viewer.canvas && this.heldButtons.size === 0) return;
    this.queuePointer(e);
  }

  queuePointer(e) {
    const p = this.position(e.clientX, e.clientY);
    if (!p) return;
    const last = this.pendingPointer ?? this.lastPointer;
    if (last && last.x === p[0] && last.y === p[1]) return;
    this.pendingPointer = this.lastPointer = { type: 'pointer', x: p[0], y: p[1] };
    this.scheduleFlush();
  }

  onMouseUp(e) {
    const button = EVDEV_BUTTONS[e.button];
    if (button === undefined || !this.heldButtons.has(button)) return;
    e.preventDefault();
    if (this.mode === 'absolute' && !this.locked) this.queuePointer(e);
    this.heldButtons.delete(button);
    if (this.active) this.sendNow({ type: 'button', button, pressed: false });
  }

  onWheel(e) {
    if (e.target !== this.viewer.canvas || !this.active) return;
    e.preventDefault();
    const per = e.deltaMode === 1 ? LINES_PER_NOTCH : e.deltaMode === 2 ? 1 : PIXELS_PER_NOTCH;
    this.scroll[0] += e.deltaX / per;
    this.scroll[1] += e.deltaY / per;
    const dx = Math.trunc(this.scroll[0]);
    const dy = Math.trunc(this.scroll[1]);
    if (dx === 0 && dy === 0) return;
    this.scroll[0] -= dx;
    this.scroll[1] -= dy;
    if (this.mode === 'absolute' && !this.locked) this.queuePointer(e);
    this.sendNow({ type: 'scroll', dx, dy });
  }

  requestLock() {
    this.lockRequests++;
    this.lockError = null;
    try {
      const p = this.viewer.canvas.requestPointerLock();
      if (p && typeof p.catch === 'function')
        p.catch((error) => {
          this.lockError = `pointer lock refused: ${error && error.message ? error.message : error}`;
          this.render();
        });
    } catch (error) {
      this.lockError = `pointer lock refused: ${error.message}`;
    }
    this.render();
  }

  lockChanged() {
    const locked = document.pointerLockElement === this.viewer.canvas && this.viewer.canvas !== null;
    if (locked === this.locked) return;
    this.locked = locked;
    if (!locked) {
      this.flush();
      // Buttons held under the lock cannot be seen going up any more.
      for (const button of this.heldButtons) if (this.active) this.send({ type: 'button', button, pressed: false });
      this.heldButtons.clear();
      this.motion = [0, 0];
    }
    this.render();
  }

  // ---- touch ----

  onTouch(e) {
    if (e.target !== this.viewer.canvas || !this.active) return;
    e.preventDefault(); // no emulated mouse events, no scrolling or zooming the page
    for (const t of e.changedTouches) {
      const p = this.position(t.clientX, t.clientY);
      if (!p) continue;
      if (e.type === 'touchstart') {
        let slot = 0;
        const used = new Set(this.touchSlots.values());
        while (slot < TOUCH_SLOTS && used.has(slot)) slot++;
        if (slot === TOUCH_SLOTS || this.touchSlots.has(t.identifier)) continue; // more fingers than slots
        this.touchSlots.set(t.identifier, slot);
        this.lastTouch.set(slot, p);
        this.sendNow({ type: 'touch', phase: 'down', slot, x: p[0], y: p[1] });
        continue;
      }
      const slot = this.touchSlots.get(t.identifier);
      if (slot === undefined) continue;
      this.lastTouch.set(slot, p);
      if (e.type === 'touchmove') {
        this.pendingTouch.set(slot, { type: 'touch', phase: 'move', slot, x: p[0], y: p[1] });
        this.scheduleFlush();
      } else {
        this.touchSlots.delete(t.identifier);
        this.lastTouch.delete(slot);
        const phase = e.type === 'touchend' ? 'up' : 'cancel';
        this.sendNow({ type: 'touch', phase, slot, x: p[0], y: p[1] });
      }
    }
  }

  /** Ends every touch in progress (its events would go to a canvas that is gone). */
  cancelTouches() {
    this.pendingTouch.clear();
    const last = this.lastTouch;
    for (const slot of this.touchSlots.values()) {
      const p = last.get(slot) ?? [0, 0];
      if (this.active) this.sendNow({ type: 'touch', phase: 'cancel', slot, x: p[0], y: p[1] });
    }
    this.touchSlots.clear();
    last.clear();
  }

  // ---- the cursor overlay ----

  /** `cursor` message: a new image (ARGB8888 as base64: bytes B, G, R, A), or none. */
  setCursor(m) {
    this.cursor.serial = m.serial;
    const img = m.image;
    if (!img) {
      this.cursor.image = null;
      this.layout();
      return;
    }
    const bytes = Uint8Array.from(globalThis.atob(img.pixels), (ch) => ch.charCodeAt(0));
    if (bytes.length !== img.width * img.height * 4) return;
    const data = new ImageData(img.width, img.height);
    for (let i = 0; i < bytes.length; i += 4) {
      data.data[i] = bytes[i + 2];
      data.data[i + 1] = bytes[i + 1];
      data.data[i + 2] = bytes[i];
      data.data[i + 3] = bytes[i + 3];
    }
    const c = this.dom.cursor;
    c.width = img.width;
    c.height = img.height;
    c.getContext('2d').putImageData(data, 0, 0);
    this.cursor.image = { width: img.width, height: img.height, hotspotX: img.hotspotX, hotspotY: img.hotspotY };
    this.layout();
  }

  /** `cursorMove` message: where the hotspot is (picture pixels), and whether it shows. */
  moveCursor(m) {
    this.cursor.x = m.x;
    this.cursor.y = m.y;
    this.cursor.visible = m.visible === true;
    this.layout();
  }

  /** Puts the layer over the canvas and the cursor at its place, scaled as the canvas is. */
  layout() {
    const { canvas, width, height } = this.viewer;
    const { layer, cursor } = this.dom;
    const img = this.cursor.image;
    const shown = img !== null && this.cursor.visible && width > 0 && height > 0;
    cursor.hidden = !shown;
    // The producer's cursor replaces the local one over the canvas while it is ours to move.
    canvas.style.cursor = shown && this.active && this.mode === 'absolute' ? 'none' : '';
    if (!shown) return;
    const r = canvas.getBoundingClientRect();
    const sx = r.width / width;
    const sy = r.height / height;
    layer.style.left = `${r.left}px`;
    layer.style.top = `${r.top}px`;
    layer.style.width = `${r.width}px`;
    layer.style.height = `${r.height}px`;
    cursor.style.left = `${(this.cursor.x - img.hotspotX) * sx}px`;
    cursor.style.top = `${(this.cursor.y - img.hotspotY) * sy}px`;
    cursor.style.width = `${img.width * sx}px`;
    cursor.style.height = `${img.height * sy}px`;
  }

  // ---- the hint line ----

  render() {
    const s = this.dom.status;
    let text;
    if (!this.connected) text = '';
    else if (!this.allowed) text = this.refused ? 'view only (input refused)' : 'view only';
    else if (this.locked) text = `mouse captured: Esc releases it, ${RELEASE_TEXT} releases keyboard and mouse`;
    else if (this.mode === 'relative')
      text = this.lockError ? `${this.lockError}; click to try again` : 'click the picture to capture the mouse';
    else if (this.captured) text = `keyboard captured: ${RELEASE_TEXT} releases it`;
    else text = 'click the picture to type into it';
    s.textContent = text;
    s.hidden = text === '';
    s.classList.toggle('view-only', this.connected && !this.allowed);
    this.layout();
  }

  /** What tests see. */
  state() {
    const rect = (el) => {
      const r = el.getBoundingClientRect();
      return { left: r.left, top: r.top, width: r.width, height: r.height };
    };
    return {
      connected: this.connected,
      allowed: this.allowed,
      refused: this.refused,
      lastWarning: this.lastWarning,
      mode: this.mode,
      captured: this.captured,
      locked: this.locked,
      lockRequests: this.lockRequests,
      lockError: this.lockError,
      heldKeys: [...this.heldKeys],
      heldButtons: [...this.heldButtons],
      sent: { ...this.sent },
      status: this.dom.status.hidden ? null : this.dom.status.textContent,
      canvasCursor: this.viewer.canvas.style.cursor,
      cursor: {
        image: this.cursor.image && { ...this.cursor.image },
        serial: this.cursor.serial,
        x: this.cursor.x,
        y: this.cursor.y,
        visible: this.cursor.visible,
        shown: !this.dom.cursor.hidden,
        rect: rect(this.dom.cursor),
        canvasRect: rect(this.viewer.canvas),
      },
    };
  }

  /** The overlay's pixels (RGBA, base64), as drawn. */
  cursorPixels() {
    const c = this.dom.cursor;
    const bytes = new Uint8Array(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.buffer);
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000)
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return { width: c.width, height: c.height, rgba: btoa(binary) };
  }
}
