/**
 * The baseline bench/qemu-bridge.ts measures the bridge against: a bare QEMU display listener in
 * its own process that registers on console 0 exactly as the bridge does (the same D-Bus code,
 * the same Listener.Unix.Map offer) and only drains: every message is answered and dropped, no
 * pixel is touched (each message's buffer is handed back for the next, as the bridge does).
 * Whatever the bridge costs beyond this is its own work (pixels into pool buffers, presents,
 * serving viewers).
 *
 *   node --import tsx bench/qemu-drain.ts QMP-SOCKET   (a forked child: IPC 'counts' → message counts)
 */
import type { NativeFd } from '../src/native/index.js';
import { Variant, type DBusConnection, type DBusMessage } from '../src/bridges/qemu-dbus/dbus/index.js';
import {
  LISTENER,
  LISTENER_MAP,
  LISTENER_PATH,
  ROOT,
  connectDisplay,
  registerListener,
} from '../src/bridges/qemu-dbus/display.js';

const counts: Record<string, number> = {};

let listener: DBusConnection | null = null;

function drain(member: string) {
  return (m: DBusMessage): undefined => {
    counts[member] = (counts[member] ?? 0) + 1;
    for (const fd of m.fds as NativeFd[]) fd.close();
    listener?.release(m); // the message's buffer takes the next one, as in the bridge
    return undefined;
  };
}

async function main(): Promise<void> {
  const { control } = await connectDisplay({ qmp: process.argv[2] }, 10000);
  listener = await registerListener(control, undefined, `${ROOT}/Console_0`, 10000, (conn) => {
    listener = conn;
    const names = ['Scanout', 'Update', 'ScanoutDMABUF', 'UpdateDMABUF', 'Disable', 'MouseSet', 'CursorDefine'];
    conn.export(LISTENER_PATH, LISTENER, Object.fromEntries(names.map((n) => [n, drain(n)])), {
      Interfaces: new Variant('as', [LISTENER_MAP]),
    });
    conn.export(LISTENER_PATH, LISTENER_MAP, { ScanoutMap: drain('ScanoutMap'), UpdateMap: drain('UpdateMap') });
  });
  listener.on('close', () => process.exit(0));
  process.on('message', () => process.send!({ ...counts }));
  process.send!({ ready: true });
}

main().catch((error) => {
  process.stderr.write(`qemu-drain: ${(error as Error).message}\n`);
  process.exit(1);
});
