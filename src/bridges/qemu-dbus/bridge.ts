/**
 * QemuBridge: attaches a running QEMU's `-display dbus` to a SurfaceServer. Each graphic console
 * becomes a surface of the server (./console.ts); viewers' input goes back to the guest through
 * QEMU's Keyboard / Mouse / MultiTouch interfaces; the hardware cursor becomes the surface's
 * cursor (cursor.v1), never drawn into the frames.
 *
 * Two ways in, as QEMU and libvirt provide them:
 *  - QMP (`-display dbus,p2p=yes`): a socket pair, one end handed to QEMU with `getfd` and
 *    `add_client protocol=@dbus-display`; the other end is a peer D-Bus connection on which this
 *    side is the auth client and sends no Hello;
 *  - a D-Bus bus (`-display dbus,addr=…`, libvirt's `<graphics type='dbus'/>`): Hello, and QEMU's
 *    objects at its bus name (default `org.qemu`).
 * Either way each console gets a display listener on a socket pair of its own
 * (`Console.RegisterListener(h)`), where QEMU is the D-Bus server and this side answers its
 * `Properties.GetAll` at once (an unanswered one freezes QEMU's main loop for 25 s) and drains
 * every message: QEMU has no flow control, so nothing here ever waits for a viewer.
 */
import { EventEmitter } from 'eventemitter3';
import { SurfaceLinkError } from '../../errors.js';
import type { InputEvent } from '../../input.js';
import { stderrLogger, type Logger } from '../../log.js';
import type { NativeFd } from '../../native/index.js';
import type { SurfaceServer } from '../../server.js';
import type { SharedSurface } from '../../surface.js';
import { ConsoleSurface, type ConsolePath } from './console.js';
import { DBusConnection, Variant, type DBusMessage } from './dbus/index.js';
import { QEMU_WHEEL_DOWN, QEMU_WHEEL_UP, evdevToQemuButton, evdevToQnum } from './keymap.js';
import { connectDisplay, registerListener, type DisplayAddress } from './display.js';

/** How to reach the VM (its QMP socket for a p2p display, or the D-Bus bus it is on), and limits. */
export interface QemuBridgeOptions extends DisplayAddress {
  /** How long attaching may take (default 10000 ms). */
  timeoutMs?: number;
  /** Where the bridge's warnings go (what QEMU sends wrong, once per kind); default stderr. */
  logger?: Logger;
}

/** One console as the bridge serves it. */
export interface QemuConsoleInfo {
  /** QEMU's console index (`Console_N`). */
  index: number;
  /** QEMU's label for it ("VGA", "virtio-vga"). */
  label: string;
  /** The surface showing it, or null while QEMU shows nothing on it. */
  surfaceId: number | null;
  /** Its width in pixels (0 while there is no surface). */
  width: number;
  /** Its height in pixels (0 while there is no surface). */
  height: number;
  /** How pixels travel: in messages (one copy), from QEMU's memfd (a copy, or shared), or not yet. */
  path: ConsolePath;
  /** Why that path. */
  reason: string;
  /** Whether QEMU wants absolute positions (a tablet) or relative motion. */
  inputMode: 'absolute' | 'relative';
}

/** Events of a QemuBridge. */
export interface QemuBridgeEvents {
  /** A console's surface appeared, changed or went away. */
  console: [QemuConsoleInfo];
  /** The bridge stopped: QEMU went away, or close() was called (E_CLOSED). */
  close: [SurfaceLinkError];
}

import { LISTENER, LISTENER_MAP, LISTENER_PATH, PROPERTIES, ROOT } from './display.js';

interface Console {
  index: number;
  path: string;
  label: string;
  surface: ConsoleSurface;
  listener: DBusConnection | null;
  absolute: boolean;
  multiTouch: boolean;
}

/** Reads a `a{sv}` reply into a plain object of values. */
function props(value: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (value instanceof Map) for (const [k, v] of value) out[String(k)] = v instanceof Variant ? v.value : v;
  return out;
}

/**
 * A running QEMU's display attached to a SurfaceServer: create with {@link QemuBridge.attach}, stop
 * with close(). 'console' tells when a console's surface appears, changes or goes; 'close' when
 * the bridge stops. docs/qemu.md has the whole story.
 */
export class QemuBridge extends EventEmitter<QemuBridgeEvents> {
  /** The VM, as QEMU describes it. */
  readonly vm: {
    /** QEMU's `-name` (QEMU's default when none was given). */
    name: string;
    /** The VM's UUID (`-uuid`; all zeros by default). */
    uuid: string;
    /** QEMU's version, where QMP told it ('' on a bus). */
    qemu: string;
  } = { name: '', uuid: '', qemu: '' };
  private readonly consoles = new Map<number, Console>();
  private readonly bySurface = new Map<number, Console>();
  private closedValue = false;
  private readonly onInput = (event: InputEvent): void => this.input(event);
  private readonly onRelease = (surfaceId: number): void => this.bySurface.get(surfaceId)?.surface.retry();
  /** Input calls QEMU has not answered yet: bounded, so a flood of input is dropped, not queued. */
  private inFlight = 0;

  private constructor(
    private readonly server: SurfaceServer,
    private readonly control: DBusConnection,
    /** QEMU's bus name when on a bus; none on a peer connection. */
    private readonly destination: string | undefined,
    private readonly logger: Logger,
  ) {
    super();
    control.on('signal', (m) => this.signal(m));
    control.on('close', (error) => this.end(error));
    server.on('input', this.onInput);
    server.on('release', this.onRelease);
  }

  /**
   * Attaches to a running QEMU: over QMP (p2p) or a D-Bus bus. Resolves once a listener is
   * registered on every graphic console; surfaces appear with QEMU's first Scanout.
   */
  static async attach(server: SurfaceServer, options: QemuBridgeOptions): Promise<QemuBridge> {
    const logger = options.logger ?? stderrLogger;
    const timeoutMs = options.timeoutMs ?? 10000;
    const { control, qemu, destination } = await connectDisplay(options, timeoutMs);
    const bridge = new QemuBridge(server, control, destination, logger);
    bridge.vm.qemu = qemu;
    try {
      await bridge.start(timeoutMs);
    } catch (error) {
      bridge.close();
      throw error;
    }
    return bridge;
  }

  /** True once the bridge stopped (close(), or QEMU went away). */
  get closed(): boolean {
    return this.closedValue;
  }

  /** Every console the bridge serves. */
  get consoleList(): QemuConsoleInfo[] {
    return [...this.consoles.values()].map((c) => this.info(c));
  }

  /** Detaches: the listeners close (QEMU drops them), the consoles' surfaces close. Idempotent. */
  close(): void {
    this.end(new SurfaceLinkError('E_CLOSED', 'the bridge was closed'));
  }

  private async call(
    path: string,
    iface: string,
    member: string,
    signature = '',
    body: unknown[] = [],
    fds?: NativeFd[],
  ) {
    return this.control.call({ destination: this.destination, path, interface: iface, member, signature, body, fds });
  }

  private async getAll(path: string, iface: string): Promise<Record<string, unknown>> {
    const reply = await this.call(path, PROPERTIES, 'GetAll', 's', [iface]);
    return props(reply.body[0]);
  }

  private async start(timeoutMs: number): Promise<void> {
    const vm = await this.getAll(`${ROOT}/VM`, 'org.qemu.Display1.VM');
    this.vm.name = String(vm.Name ?? '');
    this.vm.uuid = String(vm.UUID ?? '');
    const ids = Array.isArray(vm.ConsoleIDs) ? (vm.ConsoleIDs as number[]) : [];
    for (const index of ids) {
      const path = `${ROOT}/Console_${index}`;
      const info = await this.getAll(path, 'org.qemu.Display1.Console');
      if (info.Type !== undefined && info.Type !== 'Graphic') continue;
      let absolute = false;
      try {
        absolute = (await this.getAll(path, 'org.qemu.Display1.Mouse')).IsAbsolute === true;
      } catch {
        /* a console without a mouse */
      }
      let multiTouch = false;
      try {
        await this.getAll(path, 'org.qemu.Display1.MultiTouch');
        multiTouch = true;
      } catch {
        /* QEMU before MultiTouch */
      }
      const label = String(info.Label ?? `console ${index}`);
      const c: Console = { index, path, label, absolute, multiTouch, listener: null, surface: null as never };
      c.surface = new ConsoleSurface(this.server, index, `${index}`, this.logger, (surface) =>
        this.surfaceChanged(c, surface),
      );
      this.consoles.set(index, c);
      await this.register(c, timeoutMs);
    }
    if (this.consoles.size === 0)
      throw new SurfaceLinkError('E_NO_MECHANISM', `QEMU has no graphic console (ConsoleIDs ${JSON.stringify(ids)})`);
  }

  /** A display listener for one console, on a socket pair of its own. */
  private async register(c: Console, timeoutMs: number): Promise<void> {
    c.listener = await registerListener(this.control, this.destination, c.path, timeoutMs, (conn) =>
      this.exportListener(conn, c),
    );
    c.listener.on('close', (error) => {
      if (!this.closedValue)
        this.end(new SurfaceLinkError('E_PEER_CLOSED', `QEMU closed console ${c.index}'s listener: ${error.message}`));
    });
  }

  /** The Listener object QEMU calls: pixels, cursor, and the optional interfaces we take. */
  private exportListener(conn: DBusConnection, c: Console): void {
    const s = c.surface;
    const guard =
      (fn: (body: unknown[], fds: NativeFd[]) => void) =>
      (m: DBusMessage): undefined => {
        try {
          fn(m.body, m.fds);
        } catch (error) {
          this.warnOnce(`console ${c.index}: ${m.member}: ${(error as Error).message}`);
        }
        // The pixels were copied out: the message's buffer may take the next one (no fresh pages).
        conn.release(m);
        return undefined;
      };
    conn.export(
      LISTENER_PATH,
      LISTENER,
      {
        Scanout: guard((b) =>
          s.scanout(b[0] as number, b[1] as number, b[2] as number, b[3] as number, b[4] as Uint8Array),
        ),
        Update: guard((b) =>
          s.update(
            b[0] as number,
            b[1] as number,
            b[2] as number,
            b[3] as number,
            b[4] as number,
            b[5] as number,
            b[6] as Uint8Array,
          ),
        ),
        ScanoutDMABUF: guard((b) =>
          s.scanoutDmabuf(
            b[0] as NativeFd,
            b[1] as number,
            b[2] as number,
            b[3] as number,
            b[4] as number,
            BigInt(b[5] as bigint),
            b[6] as boolean,
          ),
        ),
        UpdateDMABUF: guard((b) => s.updateDmabuf(b[0] as number, b[1] as number, b[2] as number, b[3] as number)),
        Disable: guard(() => s.disable()),
        MouseSet: guard((b) => s.mouseSet(b[0] as number, b[1] as number, (b[2] as number) !== 0)),
        CursorDefine: guard((b) =>
          s.cursorDefine(b[0] as number, b[1] as number, b[2] as number, b[3] as number, b[4] as Uint8Array),
        ),
      },
      // QEMU reads these at registration (GetAll, synchronously): answer at once. Interfaces tells
      // QEMU ≥ 9.2 it may hand us its display memfd (ScanoutMap) instead of pixels in messages.
      { Interfaces: new Variant('as', [LISTENER_MAP]) },
    );
    conn.export(LISTENER_PATH, LISTENER_MAP, {
      ScanoutMap: guard((b) =>
        s.scanoutMap(b[0] as NativeFd, b[1] as number, b[2] as number, b[3] as number, b[4] as number, b[5] as number),
      ),
      UpdateMap: guard((b) => s.updateMap(b[0] as number, b[1] as number, b[2] as number, b[3] as number)),
    });
  }

  private readonly warned = new Set<string>();
  /** Logs a message once per kind (QEMU-triggered logging stays bounded). */
  private warnOnce(message: string): void {
    const key = message.slice(0, 60);
    if (this.warned.has(key) || this.warned.size > 100) return;
    this.warned.add(key);
    this.logger('warn', message);
  }

  private surfaceChanged(c: Console, surface: SharedSurface | null): void {
    for (const [id, console] of this.bySurface) if (console === c) this.bySurface.delete(id);
    if (surface) {
      this.bySurface.set(surface.id, c);
      surface.setInputMode(c.absolute ? 'absolute' : 'relative');
    }
    this.emit('console', this.info(c));
  }

  private info(c: Console): QemuConsoleInfo {
    const surface = c.surface.surface;
    return {
      index: c.index,
      label: c.label,
      surfaceId: surface?.id ?? null,
      width: surface?.width ?? 0,
      height: surface?.height ?? 0,
      path: c.surface.path,
      reason: c.surface.reason,
      inputMode: c.absolute ? 'absolute' : 'relative',
    };
  }

  /** PropertiesChanged from QEMU: a console's size, the mouse's absolute mode. */
  private signal(m: DBusMessage): void {
    if (m.interface !== PROPERTIES || m.member !== 'PropertiesChanged') return;
    const c = [...this.consoles.values()].find((x) => x.path === m.path);
    if (!c) return;
    const iface = m.body[0];
    const changed = props(m.body[1]);
    if (iface === 'org.qemu.Display1.Console' && (changed.Width !== undefined || changed.Height !== undefined)) {
      const surface = c.surface.surface;
      if (surface) {
        try {
          c.surface.resize(Number(changed.Width ?? surface.width), Number(changed.Height ?? surface.height));
        } catch (error) {
          this.warnOnce(`console ${c.index}: ${(error as Error).message}`);
        }
      }
    }
    if (iface === 'org.qemu.Display1.Mouse' && typeof changed.IsAbsolute === 'boolean') {
      c.absolute = changed.IsAbsolute;
      c.surface.surface?.setInputMode(c.absolute ? 'absolute' : 'relative');
      this.emit('console', this.info(c));
    }
  }

  /** A viewer's input for one of our surfaces, to QEMU (fire and forget, bounded). */
  private input(event: InputEvent): void {
    const c = this.bySurface.get(event.surfaceId);
    if (!c || this.closedValue) return;
    const send = (iface: string, member: string, signature: string, body: unknown[]): void => {
      if (this.inFlight >= 256) return; // QEMU is not keeping up: drop rather than queue
      this.inFlight++;
      this.call(c.path, `org.qemu.Display1.${iface}`, member, signature, body).then(
        () => this.inFlight--,
        (error: Error) => {
          this.inFlight--;
          this.warnOnce(`console ${c.index}: ${iface}.${member}: ${error.message}`);
        },
      );
    };
    switch (event.kind) {
      case 'key': {
        const qnum = evdevToQnum(event.code);
        if (qnum !== null) send('Keyboard', event.pressed ? 'Press' : 'Release', 'u', [qnum]);
        return;
      }
      case 'pointer':
        if (c.absolute) send('Mouse', 'SetAbsPosition', 'uu', [Math.max(0, event.x), Math.max(0, event.y)]);
        return;
      case 'motion':
        if (!c.absolute) send('Mouse', 'RelMotion', 'ii', [event.dx, event.dy]);
        return;
      case 'button': {
        const button = evdevToQemuButton(event.button);
        if (button !== null) send('Mouse', event.pressed ? 'Press' : 'Release', 'u', [button]);
        return;
      }
      case 'scroll': {
        const notches = Math.min(Math.abs(event.dy), 10);
        const button = event.dy < 0 ? QEMU_WHEEL_UP : QEMU_WHEEL_DOWN;
        for (let i = 0; i < notches; i++) {
          send('Mouse', 'Press', 'u', [button]);
          send('Mouse', 'Release', 'u', [button]);
        }
        return;
      }
      case 'touch': {
        if (!c.multiTouch) return;
        // QEMU's InputMultiTouchType: BEGIN 0, UPDATE 1, END 2, CANCEL 3.
        const kind = { down: 0, move: 1, up: 2, cancel: 3 }[event.phase];
        send('MultiTouch', 'SendEvent', 'utdd', [kind, BigInt(event.slot), event.x, event.y]);
        return;
      }
    }
  }

  private end(error: SurfaceLinkError): void {
    if (this.closedValue) return;
    this.closedValue = true;
    this.server.off('input', this.onInput);
    this.server.off('release', this.onRelease);
    for (const c of this.consoles.values()) {
      c.listener?.close();
      c.surface.close();
    }
    this.control.close();
    this.emit('close', error);
  }
}
