/**
 * The two steps every client of QEMU's D-Bus display takes (docs/qemu.md): reaching the display
 * (peer-to-peer through QMP, or on a bus) and registering a Listener on a console. QemuBridge
 * builds on them; so does the bare draining listener the bridge is benchmarked against
 * (bench/qemu-drain.ts).
 */
import { SurfaceLinkError } from '../../errors.js';
import { socketPair, streamFromFd } from '../stream-socket.js';
import { DBusConnection } from './dbus/index.js';
import { QmpClient } from './qmp.js';

/** QEMU's display objects live under this path (`${ROOT}/VM`, `${ROOT}/Console_N`). */
export const ROOT = '/org/qemu/Display1';
/** Where a listener exports its object on its own connection. */
export const LISTENER_PATH = `${ROOT}/Listener`;
/** The listener interface QEMU calls (Scanout, Update, CursorDefine, …). */
export const LISTENER = 'org.qemu.Display1.Listener';
/** The optional shared-memory listener interface (ScanoutMap, UpdateMap; QEMU ≥ 9.2). */
export const LISTENER_MAP = 'org.qemu.Display1.Listener.Unix.Map';
/** org.freedesktop.DBus.Properties. */
export const PROPERTIES = 'org.freedesktop.DBus.Properties';

/** Where QEMU's display is: its QMP socket (p2p), or a bus address and QEMU's name there. */
export interface DisplayAddress {
  /** QEMU's QMP socket (`-display dbus,p2p=yes`). */
  qmp?: string;
  /** A D-Bus address (`unix:path=…`) of the bus QEMU's display is on (`-display dbus,addr=…`). */
  dbus?: string;
  /** QEMU's name on that bus (default `org.qemu`). */
  busName?: string;
}

/** An open connection to QEMU's display objects. */
export interface DisplayConnection {
  control: DBusConnection;
  /** QEMU's bus name on a bus; undefined peer-to-peer. */
  destination: string | undefined;
  /** QEMU's version, as QMP tells it ('' on a bus). */
  qemu: string;
}

/**
 * Opens QEMU's display. Over QMP: a socket pair, one end handed to QEMU with `getfd` and
 * `add_client protocol=@dbus-display` (as libvirt does), the other a peer D-Bus connection on
 * which this side is the auth client and sends no Hello; QMP is closed again at once (it serves
 * one client at a time). On a bus: Hello, and QEMU's objects at its bus name.
 */
export async function connectDisplay(address: DisplayAddress, timeoutMs: number): Promise<DisplayConnection> {
  if ((address.qmp === undefined) === (address.dbus === undefined))
    throw new SurfaceLinkError(
      'E_INVALID_ARGUMENT',
      'give the VM as exactly one of qmp (a QMP socket) or dbus (a bus address)',
    );
  if (address.dbus !== undefined) {
    const control = await DBusConnection.connectAddress(address.dbus, { role: 'client', hello: true, timeoutMs });
    return { control, destination: address.busName ?? 'org.qemu', qemu: '' };
  }
  const qmp = await QmpClient.connect(address.qmp!, timeoutMs);
  try {
    const [ours, theirs] = socketPair();
    const fdname = `surfacelink-${process.pid}-${Date.now()}`;
    try {
      await qmp.execute('getfd', { fdname }, { fds: [theirs], timeoutMs });
    } finally {
      theirs.close();
    }
    const opening = DBusConnection.open(streamFromFd(ours), { role: 'client', hello: false, timeoutMs });
    ours.close();
    await qmp.execute('add_client', { protocol: '@dbus-display', fdname }, { timeoutMs });
    return { control: await opening, destination: undefined, qemu: qmp.version };
  } finally {
    qmp.close();
  }
}

/**
 * Registers a display listener on the console at `consolePath`: a socket pair, one end passed
 * with `Console.RegisterListener(h)`; on the other QEMU is the D-Bus server. `setup` exports the
 * Listener object before authentication ends, because QEMU calls `Properties.GetAll` on it right
 * away and waits (synchronously) for the answer.
 */
export async function registerListener(
  display: DBusConnection,
  destination: string | undefined,
  consolePath: string,
  timeoutMs: number,
  setup: (listener: DBusConnection) => void,
): Promise<DBusConnection> {
  const [ours, theirs] = socketPair();
  const opening = DBusConnection.open(streamFromFd(ours), { role: 'client', hello: false, timeoutMs }, setup);
  ours.close();
  try {
    await display.call({
      destination,
      path: consolePath,
      interface: 'org.qemu.Display1.Console',
      member: 'RegisterListener',
      signature: 'h',
      body: [theirs],
    });
  } finally {
    theirs.close();
  }
  return opening;
}
